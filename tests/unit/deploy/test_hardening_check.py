"""deploy/check_hardening.py, the hardening rules `deploy/validate.sh` applies to every rendered
overlay: each rule fails a manifest that breaks it, and the shipped overlays pass."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import REPO
from tests.unit.deploy.checker import hardening

DIGEST = "@sha256:" + "a" * 64


def _safe() -> dict[str, Any]:
    """A container securityContext that passes (a new one each time: none is shared)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


GOOD_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "lus-expert"},
    "spec": {
        "template": {
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True},
                "initContainers": [
                    {
                        "name": "init",
                        "image": "redis:7.4.11-alpine" + DIGEST,
                        "securityContext": _safe(),
                    }
                ],
                "containers": [
                    {
                        "name": "expert",
                        "image": "lus-expert:0.1.0" + DIGEST,
                        "securityContext": _safe(),
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            }
        }
    },
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lus"}}
DEFAULT_DENY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "default-deny"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
}


def _pod(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def _errors(*documents: dict[str, Any], require_digest: bool = True) -> list[str]:
    errors, _ = hardening.check(list(documents), require_digest=require_digest)
    return list(errors)


def test_a_hardened_deployment_passes() -> None:
    assert _errors(NAMESPACE, DEFAULT_DENY, GOOD_DEPLOYMENT) == []


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda pod: pod.pop("automountServiceAccountToken"), "automountServiceAccountToken"),
        (lambda pod: pod.update(automountServiceAccountToken=True), "automountServiceAccountToken"),
        (lambda pod: pod["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (
            lambda pod: pod["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
            "container expert: readOnlyRootFilesystem",
        ),
        (
            lambda pod: pod["initContainers"][0].pop("securityContext"),
            "container init: readOnlyRootFilesystem",
        ),
        (
            lambda pod: pod["containers"][0]["securityContext"].update(
                allowPrivilegeEscalation=True
            ),
            "allowPrivilegeEscalation",
        ),
        (
            lambda pod: pod["containers"][0]["securityContext"].pop("capabilities"),
            "capabilities",
        ),
        (
            lambda pod: pod["volumes"].append({"name": "scratch", "emptyDir": {}}),
            "emptyDir scratch",
        ),
        (lambda pod: pod["containers"][0].update(image="lus-expert"), "no fixed tag"),
        (lambda pod: pod["containers"][0].update(image="lus-expert:latest"), "no fixed tag"),
        (lambda pod: pod["containers"][0].update(image="lus-expert:0.1.0"), "digest"),
        (
            lambda pod: pod["initContainers"][0].update(image="redis:7.4.2-alpine" + DIGEST),
            "7.4.10 or later",
        ),
        (
            lambda pod: pod["initContainers"][0].update(image="mirror/redis:7.0.15" + DIGEST),
            "a supported line",
        ),
        (lambda pod: pod["initContainers"][0].update(image="redis:alpine" + DIGEST), "x.y.z"),
    ],
)
def test_each_rule_fails_a_manifest_that_breaks_it(break_it: Any, expected: str) -> None:
    bad = copy.deepcopy(GOOD_DEPLOYMENT)
    break_it(_pod(bad))
    errors = _errors(NAMESPACE, DEFAULT_DENY, bad)
    assert errors and expected in errors[0], errors  # the first error names the broken rule
    assert all(error.startswith("Deployment/lus-expert") for error in errors)


def test_jobs_and_cronjobs_are_checked_too() -> None:
    job = {
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": copy.deepcopy(GOOD_DEPLOYMENT["spec"]),
    }
    _pod(job).pop("automountServiceAccountToken")
    cron = {
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"jobTemplate": {"spec": copy.deepcopy(GOOD_DEPLOYMENT["spec"])}},
    }
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] = {}
    errors = _errors(job, cron)
    assert errors == [
        "Job/train: automountServiceAccountToken is not false",
        "CronJob/nightly: emptyDir tmp has no sizeLimit",
    ]


def test_a_digest_is_a_warning_unless_required() -> None:
    unpinned = copy.deepcopy(GOOD_DEPLOYMENT)
    _pod(unpinned)["containers"][0]["image"] = "lus-expert:0.1.0"
    errors, warnings = hardening.check([unpinned], require_digest=False)
    assert errors == [] and warnings == ["lus-expert:0.1.0"]


def test_newer_redis_lines_pass_and_older_patches_fail() -> None:
    assert hardening.redis_problem("redis:8.10.1-alpine") is None
    assert hardening.redis_problem("redis:7.4.11-alpine") is None
    assert hardening.redis_problem("redis:8.2.2") is not None  # 2025 Lua fixes, not the 2026 ones


def test_a_rendered_namespace_needs_a_default_deny_policy_both_ways() -> None:
    ingress_only = copy.deepcopy(DEFAULT_DENY)
    ingress_only["spec"]["policyTypes"] = ["Ingress"]
    assert _errors(NAMESPACE, ingress_only, GOOD_DEPLOYMENT) == [
        "no NetworkPolicy denies ingress and egress to every pod by default"
    ]


def test_the_command_fails_on_a_bad_file_and_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = copy.deepcopy(GOOD_DEPLOYMENT)
    _pod(bad)["volumes"][0]["emptyDir"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([bad]))
    assert hardening.main([str(path)]) == 1
    assert "emptyDir tmp has no sizeLimit" in capsys.readouterr().out
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all([GOOD_DEPLOYMENT]))
    assert hardening.main(["--require-digests", str(good)]) == 0


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu-prod"])
def test_the_shipped_overlays_and_jobs_pass(overlay: str) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert _errors(*yaml.safe_load_all(rendered), require_digest=False) == []
    job = yaml.safe_load((REPO / "deploy" / "k8s" / "jobs" / "train-biomarker.yaml").read_text())
    assert _errors(job, require_digest=False) == []
