#!/bin/sh
# Render an ACL rules file (registry.acl, features.acl) into a Redis ACL file: each user line
# gets its password appended as #<sha256>, so the rendered file holds no password in clear.
#   render-acl.sh RULES [PASSWORD_DIR [OUT]]     (OUT: the ACL file to write; default stdout)
# A user's password is the file PASSWORD_DIR/<user> (a mounted Kubernetes Secret or compose
# secret; default /run/lus-redis-passwords), else the variable LUS_REDIS_PASSWORD_<USER>
# (upper case, - as _). The default user is written as it is (it may only PING). Fails, writing
# nothing usable, when a password is missing, shorter than 16 characters, or holds a character
# that would need escaping in a redis:// URL (use e.g. `openssl rand -hex 32`).
# POSIX sh and busybox: it runs in the redis:alpine image's init container.
set -eu
rules="$1"
dir="${2:-/run/lus-redis-passwords}"
if [ -n "${3:-}" ]; then
  exec > "$3"
fi
grep -E '^user ' "$rules" | while read -r _ name rest; do
  if [ "$name" = default ]; then
    printf 'user default %s\n' "$rest"
    continue
  fi
  var="LUS_REDIS_PASSWORD_$(printf %s "$name" | tr 'a-z-' 'A-Z_')"
  if [ -f "$dir/$name" ]; then
    password="$(cat "$dir/$name")"
  else
    password="$(printenv "$var" || true)"
  fi
  case "$password" in
    *[!A-Za-z0-9._~-]*) echo "render-acl: the password of $name has characters other than A-Za-z0-9._~-" >&2; exit 1 ;;
  esac
  if [ "${#password}" -lt 16 ]; then
    echo "render-acl: no password (16+ characters) for Redis user $name: file $dir/$name or \$$var" >&2
    exit 1
  fi
  hash="$(printf %s "$password" | sha256sum | cut -d ' ' -f 1)"
  printf 'user %s %s #%s\n' "$name" "$rest" "$hash"
done
