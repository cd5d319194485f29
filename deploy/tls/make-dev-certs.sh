#!/usr/bin/env bash
# Development certificates for the compose stack (and a laptop cluster), in this folder:
#   ca.crt / ca.key          a throwaway CA (the servers' client CA and the clients' trust root)
#   tls.crt / tls.key        the servers' certificate: both tiers and both Redis instances, every
#                            name compose and the Kubernetes Services use, 127.0.0.1 and
#                            localhost. It carries both serverAuth and clientAuth, because the
#                            health checks (and the tiers, as Redis clients) present it as their
#                            client certificate to the mutual-TLS ports.
#   client.crt / client.key  a client certificate for `lus` and other callers (--cert-file ...)
# Usage: deploy/tls/make-dev-certs.sh [DAYS]   (default 30). Never for production: the keys are
# world-readable so the containers' user (10001) can read a bind mount, and the CA key lies
# beside them. Re-running replaces the server and client certificates (the servers pick new
# files up on the next connection) and keeps an existing CA.
set -euo pipefail
cd "$(dirname "$0")"
days="${1:-30}"
names="DNS:localhost,IP:127.0.0.1,DNS:biomarker,DNS:expert,DNS:expert-train"
names="$names,DNS:redis-registry,DNS:redis-features"  # compose's Redis (TLS: deploy/README.md)
for svc in lus-biomarker lus-expert lus-expert-admin lus-expert-train; do
  names="$names,DNS:$svc,DNS:$svc.lus,DNS:$svc.lus.svc,DNS:$svc.lus.svc.cluster.local"
done
for redis in lus-redis-registry lus-redis-features; do  # the URLs name the StatefulSet's pod
  names="$names,DNS:$redis-0.$redis,DNS:$redis-0.$redis.lus.svc,DNS:$redis-0.$redis.lus.svc.cluster.local"
done
if [[ ! -s ca.crt || ! -s ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=lus dev CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout ca.key -out ca.crt 2>/dev/null
fi
leaf() {  # leaf NAME SUBJECT EXTENSIONS...
  local name="$1" subject="$2"; shift 2
  local ext; ext="$(mktemp)"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "$@" > "$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
    -keyout "$name.key.new" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -sha256 -extfile "$ext" -out "$name.crt.new" 2>/dev/null
  rm -f "$name.csr" "$ext"
  chmod 0644 "$name.key.new"
  # key first, then certificate: a server that looks in between sees a mismatched pair, keeps
  # its old one (one ERROR in its log) and loads the new pair on a later connection.
  mv "$name.key.new" "$name.key" && mv "$name.crt.new" "$name.crt"
}
leaf tls "/CN=lus" "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$names"
leaf client "/CN=lus-dev-client" "extendedKeyUsage=clientAuth"
chmod 0644 ca.crt
echo "wrote $(pwd)/{ca,tls,client}.{crt,key} (valid $days days)"
