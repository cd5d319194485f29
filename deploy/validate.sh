#!/usr/bin/env bash
# Render every Kustomize overlay and validate all Kubernetes manifests against the API schemas
# (kubernetes-validate, strict: unknown fields fail). Used by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VALIDATE="${VALIDATE:-.venv/bin/kubernetes-validate}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
if command -v kubectl >/dev/null; then
  for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    kubectl kustomize "$overlay" > "$out/$name.yaml"
    "$VALIDATE" --strict --quiet "$out/$name.yaml"
    echo "k8s overlay $name: $(grep -c '^kind:' "$out/$name.yaml") resources valid"
  done
else
  echo "kubectl not found: validating base resources without rendering overlays" >&2
  "$VALIDATE" --strict --quiet deploy/k8s/base/[!k]*.yaml
fi
"$VALIDATE" --strict --quiet deploy/k8s/jobs/*.yaml
echo "k8s jobs valid"
