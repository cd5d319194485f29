#!/usr/bin/env bash
# Local stand-in for the python:3.11.14-slim-bookworm base image, ONLY for machines that cannot
# reach Docker Hub (air-gapped build hosts with a Debian mirror and PyPI). Real builds use the
# official image, or a registry mirror of it, via --build-arg BASE_IMAGE=...
#
# Builds a Debian bookworm rootfs with debootstrap (minbase + Debian's python3 3.11, venv,
# ca-certificates) and puts a venv first on PATH, so `python` and `pip install` behave as in the
# official image (Debian's system pip refuses installs under PEP 668). Extra CAs the host trusts in
# /usr/local/share/ca-certificates (e.g. a TLS-intercepting egress proxy) are trusted in the image.
# Needs root, debootstrap and docker. Then, from the repository root:
#   docker build --network=host --build-arg BASE_IMAGE=lus-local/python:3.11-bookworm \
#     -f deploy/docker/expert.Dockerfile -t lus-expert .
# Usage: deploy/docker/standin-base.sh [TAG]   (MIRROR=... picks the Debian mirror)
set -euo pipefail
tag="${1:-lus-local/python:3.11-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
venv=/usr/local/python
root="$(mktemp -d)"
# debootstrap mounts /proc and /sys inside the rootfs; unmount before deleting, never cross into them.
cleanup() {
  umount -R "$root/proc" "$root/sys" 2>/dev/null || true
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$mirror"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$root" update-ca-certificates
chroot "$root" python3 -m venv "$venv"
# pip's bundled certifi does not know the system's extra CAs.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log

tar -C "$root" --numeric-owner -c . | docker import \
  --change "ENV PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python"]' \
  - "$tag"
docker run --rm "$tag" python -c 'import ssl, sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)'
