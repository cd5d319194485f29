#!/usr/bin/env bash
# Development passwords for the compose stack's Redis users (deploy/redis/*.acl), appended to
# deploy/.env (compose reads it; git ignores it) as LUS_REDIS_PASSWORD_<USER>=<48 hex digits>.
# Keeps any already there, so running it again changes nothing. For Kubernetes, create Secret
# lus-redis-passwords instead (deploy/README.md, "Redis").
set -euo pipefail
env_file="$(cd "$(dirname "$0")/.." && pwd)/.env"
touch "$env_file"
chmod 0600 "$env_file"
for user in expert-admin expert biomarker audit-reader fs-admin; do
  var="LUS_REDIS_PASSWORD_$(tr 'a-z-' 'A-Z_' <<< "$user")"
  if ! grep -q "^$var=" "$env_file"; then
    echo "$var=$(openssl rand -hex 24)" >> "$env_file"
    echo "added $var to $env_file"
  fi
done
