"""Check rendered Kubernetes manifests against the deployment's hardening rules (issue 16).

    python deploy/check_hardening.py [--require-digests] FILE.yaml ...

Every pod template (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod) must:

- not mount a service-account token (``automountServiceAccountToken: false``): no pod here
  calls the Kubernetes API, and a token is what a compromised decoder would use next;
- run as non-root, every container and init container with a read-only root filesystem, no
  privilege escalation and all capabilities dropped;
- bound every ``emptyDir`` (``sizeLimit``), so a pod cannot fill its node's disk or memory;
- name images by a fixed tag (never ``latest`` or none), and by digest with
  ``--require-digests`` (else a warning); a Redis image must be a release with the known
  security fixes (``REDIS_FIXED``).

A set of files holding a Namespace (a rendered overlay) must also hold a NetworkPolicy that
denies both ingress and egress to every pod of it by default.

Prints one line per problem; exits 1 if there is any, else 0. Warnings go to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}

REDIS_FIXED: dict[tuple[int, int], int] = {
    (6, 2): 23,
    (7, 2): 15,
    (7, 4): 10,
    (8, 2): 8,
    (8, 4): 5,
    (8, 6): 5,
    (8, 8): 1,
}
"""Oldest patch release of each Redis line with the security fixes known when this was
written: the urgent release of 2026-07-24 (6.2.23, 7.2.15, 7.4.10, 8.2.8, 8.4.5, 8.6.5, 8.8.1:
remote code execution), which also carries the 2025 Lua fixes (CVE-2025-49844, -46817, -46818,
-46819: 7.2.11, 7.4.6, 8.0.4, 8.2.2). Lines not listed and older than 8.8 (7.0, 8.0) got no
such release and are refused; lines newer than 8.8 are accepted. Raise these as new advisories
come out (deploy/README.md, "Images")."""

REDIS_TAG = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def pod_specs(documents: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(Kind/name, pod spec)`` of every workload in ``documents``."""
    for document in documents:
        if not isinstance(document, dict):
            continue
        kind = document.get("kind", "")
        path = POD_TEMPLATE_PATHS.get(kind)
        spec = _at(document, path) if path else None
        if isinstance(spec, dict):
            yield f"{kind}/{_at(document, ('metadata', 'name'))}", spec


def redis_problem(image: str) -> str | None:
    """Why a Redis image may not be used, or None."""
    reference = image.split("@", 1)[0]
    tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else ""
    match = REDIS_TAG.match(tag)
    if match is None:
        return f"Redis image {image} has no x.y.z version tag; pin a release"
    major, minor, patch = (int(part) for part in match.groups())
    fixed = REDIS_FIXED.get((major, minor))
    if fixed is None and (major, minor) > max(REDIS_FIXED):
        return None
    if fixed is None or patch < fixed:
        floor = f"{major}.{minor}.{fixed}" if fixed is not None else "a supported line"
        return f"Redis image {image} lacks known security fixes (needs {floor} or later)"
    return None


def image_problems(where: str, image: str, *, require_digest: bool) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about one container image reference; a warning is the image
    itself, when it is not pinned by digest and ``require_digest`` is false."""
    errors: list[str] = []
    warnings: list[str] = []
    reference, _, digest = image.partition("@")
    last = reference.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not digest and tag in ("", "latest"):
        errors.append(f"{where}: image {image} has no fixed tag (never latest)")
    if not digest.startswith("sha256:"):
        if require_digest:
            errors.append(f"{where}: image {image} is not pinned by digest (@sha256:...)")
        else:
            warnings.append(image)
    if last.split(":", 1)[0] == "redis":
        problem = redis_problem(image)
        if problem:
            errors.append(f"{where}: {problem}")
    return errors, warnings


def container_problems(where: str, container: dict[str, Any]) -> list[str]:
    context = container.get("securityContext") or {}
    errors = []
    if context.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{where}: readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        errors.append(f"{where}: capabilities are not all dropped (drop: [ALL])")
    return errors


def pod_problems(
    name: str, spec: dict[str, Any], *, require_digest: bool
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of one pod spec."""
    errors: list[str] = []
    warnings: list[str] = []
    if spec.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken is not false")
    if (spec.get("securityContext") or {}).get("runAsNonRoot") is not True:
        errors.append(f"{name}: runAsNonRoot is not true")
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            where = f"{name} container {container.get('name')}"
            errors += container_problems(where, container)
            found, warned = image_problems(
                where, str(container.get("image", "")), require_digest=require_digest
            )
            errors += found
            warnings += warned
    for volume in spec.get("volumes") or []:
        if "emptyDir" in volume and not (volume.get("emptyDir") or {}).get("sizeLimit"):
            errors.append(f"{name}: emptyDir {volume.get('name')} has no sizeLimit")
    return errors, warnings


def default_deny_problems(documents: list[Any]) -> list[str]:
    """A rendered namespace must deny ingress and egress to every pod by default."""
    kinds = {document.get("kind") for document in documents if isinstance(document, dict)}
    if "Namespace" not in kinds:
        return []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "NetworkPolicy":
            continue
        spec = document.get("spec") or {}
        every_pod = spec.get("podSelector") == {}
        both_ways = {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        if every_pod and both_ways and not spec.get("ingress") and not spec.get("egress"):
            return []
    return ["no NetworkPolicy denies ingress and egress to every pod by default"]


def check(documents: list[Any], *, require_digest: bool = False) -> tuple[list[str], list[str]]:
    """``(errors, images not pinned by digest)`` of a set of manifests (one rendering)."""
    errors: list[str] = []
    warnings: list[str] = []
    for name, spec in pod_specs(documents):
        found, warned = pod_problems(name, spec, require_digest=require_digest)
        errors += found
        warnings += warned
    errors += default_deny_problems(documents)
    return errors, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--require-digests",
        action="store_true",
        help="fail (not warn) on an image not pinned by digest",
    )
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        errors, unpinned = check(documents, require_digest=args.require_digests)
        if unpinned:
            print(
                f"warning: {path}: not pinned by digest: {', '.join(sorted(set(unpinned)))} "
                "(deploy/README.md, 'Images by digest'; --require-digests fails on it)",
                file=sys.stderr,
            )
        for error in errors:
            print(f"{path}: {error}")
        failed = failed or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
