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
  # Opt-in components (deploy/k8s/components/*), each rendered as an overlay would use it: on a
  # copy of the tree, with `components: [...]` added to every overlay.
  for component in deploy/k8s/components/*/; do
    comp="$(basename "$component")"
    for overlay in deploy/k8s/overlays/*/; do
      name="$(basename "$overlay")"
      rm -rf "$out/tree" && cp -r deploy/k8s "$out/tree"
      printf 'components: [../../components/%s]\n' "$comp" >> "$out/tree/overlays/$name/kustomization.yaml"
      kubectl kustomize "$out/tree/overlays/$name" > "$out/$name+$comp.yaml"
      "$VALIDATE" --strict --quiet "$out/$name+$comp.yaml"
      echo "k8s overlay $name + component $comp: $(grep -c '^kind:' "$out/$name+$comp.yaml") resources valid"
    done
  done
else
  echo "kubectl not found: validating base resources without rendering overlays" >&2
  "$VALIDATE" --strict --quiet deploy/k8s/base/[!k]*.yaml
  for component in deploy/k8s/components/*/; do
    "$VALIDATE" --strict --quiet "$component"[!k]*.yaml
  done
fi
"$VALIDATE" --strict --quiet deploy/k8s/jobs/*.yaml
echo "k8s jobs valid"
