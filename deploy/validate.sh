#!/usr/bin/env bash
# Render every Kustomize overlay and validate all Kubernetes manifests against the API schemas
# (kubernetes-validate, strict: unknown fields fail) and the hardening rules
# (deploy/check_hardening.py: no service-account tokens, read-only root filesystems, bounded
# emptyDirs, pinned images, default-deny NetworkPolicies). Used by `make test`.
# Images not pinned by digest are a warning; LUS_REQUIRE_DIGESTS=1 (release builds) fails on them.
set -euo pipefail
cd "$(dirname "$0")/.."
VALIDATE="${VALIDATE:-.venv/bin/kubernetes-validate}"
PYTHON="${PYTHON:-.venv/bin/python}"
harden=("$PYTHON" deploy/check_hardening.py)
if [[ "${LUS_REQUIRE_DIGESTS:-0}" == 1 ]]; then
  harden+=(--require-digests)
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
if command -v kubectl >/dev/null; then
  for overlay in deploy/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    kubectl kustomize "$overlay" > "$out/$name.yaml"
    "$VALIDATE" --strict --quiet "$out/$name.yaml"
    "${harden[@]}" "$out/$name.yaml"
    echo "k8s overlay $name: $(grep -c '^kind:' "$out/$name.yaml") resources valid and hardened"
  done
  # Opt-in components (deploy/k8s/components/*), each rendered as an overlay would use it: on a
  # copy of the tree, with `components: [...]` added to every overlay.
  for component in deploy/k8s/components/*/; do
    comp="$(basename "$component")"
    for overlay in deploy/k8s/overlays/*/; do
      name="$(basename "$overlay")"
      rm -rf "$out/tree" && mkdir "$out/tree" && cp -r deploy/k8s deploy/redis "$out/tree/"
      printf 'components: [../../components/%s]\n' "$comp" >> "$out/tree/k8s/overlays/$name/kustomization.yaml"
      kubectl kustomize "$out/tree/k8s/overlays/$name" > "$out/$name+$comp.yaml"
      "$VALIDATE" --strict --quiet "$out/$name+$comp.yaml"
      "${harden[@]}" "$out/$name+$comp.yaml" 2>/dev/null  # warnings: printed for the overlay
      echo "k8s overlay $name + component $comp: $(grep -c '^kind:' "$out/$name+$comp.yaml") resources valid and hardened"
    done
  done
else
  echo "kubectl not found: validating base resources without rendering overlays" >&2
  "$VALIDATE" --strict --quiet deploy/k8s/base/[!k]*.yaml
  for f in deploy/k8s/base/[!k]*.yaml; do cat "$f"; printf '\n---\n'; done > "$out/base.yaml"
  "${harden[@]}" "$out/base.yaml"
  for component in deploy/k8s/components/*/; do
    files=("$component"[!k]*.yaml)
    if [[ -e "${files[0]}" ]]; then  # a component may hold patches only
      "$VALIDATE" --strict --quiet "${files[@]}"
    fi
  done
fi
"$VALIDATE" --strict --quiet deploy/k8s/jobs/*.yaml
"${harden[@]}" deploy/k8s/jobs/*.yaml
echo "k8s jobs valid and hardened"
