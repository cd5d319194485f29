"""The rendered overlays log every pod into Redis as its own user, with the password from
Secret lus-redis-passwords, on the instance that holds its keys (deploy/k8s, issue 16)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.processes import REPO

URL = re.compile(r"^redis://(?P<user>[\w-]+):\$\((?P<var>\w+)\)@(?P<host>lus-redis-\w+)-0\.")
EXPECTED = {
    "lus-biomarker": {
        "LUS_BIOMARKER_REDIS_URL": ("biomarker", "lus-redis-features"),
        "LUS_BIOMARKER_AUDIT_REDIS_URL": ("biomarker", "lus-redis-registry"),
    },
    "lus-expert": {  # serving replicas: read only
        "LUS_EXPERT_REGISTRY_URL": ("expert", "lus-redis-registry"),
        "LUS_EXPERT_FEATURE_STORE_URL": ("expert", "lus-redis-features"),
        "LUS_EXPERT_AUDIT_REDIS_URL": ("expert", "lus-redis-registry"),
    },
    "lus-expert-admin": {
        "LUS_EXPERT_REGISTRY_URL": ("expert-admin", "lus-redis-registry"),
        "LUS_EXPERT_FEATURE_STORE_URL": ("expert", "lus-redis-features"),
        "LUS_EXPERT_AUDIT_REDIS_URL": ("expert-admin", "lus-redis-registry"),
    },
}


def _deployments(overlay: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _rendered(overlay) if d["kind"] == "Deployment"}


@pytest.mark.parametrize("overlay", ["cpu-dev", "gpu-prod"])
def test_each_tier_uses_its_own_redis_user(overlay: str) -> None:
    deployments = _deployments(overlay)
    for name, urls in EXPECTED.items():
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        env = {item["name"]: item for item in container["env"]}
        for variable, (user, host) in urls.items():
            match = URL.match(env[variable]["value"])
            assert match is not None, (name, variable)
            assert (match["user"], match["host"]) == (user, host), (name, variable)
            secret = env[match["var"]]["valueFrom"]["secretKeyRef"]
            assert secret == {"name": "lus-redis-passwords", "key": user}, (name, variable)
        # only the admin replica holds the admin tokens
        assert ("LUS_EXPERT_ADMIN_TOKENS" in env) == (name == "lus-expert-admin")
    config = [
        item for item in yaml.safe_load_all((REPO / "deploy/k8s/base/config.yaml").read_text())
    ]
    assert not [key for key in config[0]["data"] if key.endswith("_URL")]  # no URL in the ConfigMap


def _rendered(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_each_redis_instance_loads_its_own_config_and_rendered_users() -> None:
    documents = _rendered("gpu-prod")
    sets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "StatefulSet"}
    assert set(sets) == {"lus-redis-registry", "lus-redis-features"}
    for name, statefulset in sets.items():
        instance = name.removeprefix("lus-redis-")
        pod = statefulset["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        (redis,) = pod["containers"]
        assert init["command"][-3:] == [
            f"/etc/lus-redis/{instance}.acl",
            "/run/lus-redis-passwords",
            "/acl/users.acl",
        ]
        assert redis["args"][:3] == [
            f"/etc/lus-redis/{instance}.conf",
            "--aclfile",
            "/acl/users.acl",
        ]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["passwords"]["secret"]["secretName"] == "lus-redis-passwords"
        assert volumes["acl"]["emptyDir"]["medium"] == "Memory"
    # only the registry keeps data on a volume
    assert sets["lus-redis-registry"]["spec"]["volumeClaimTemplates"]
    assert "volumeClaimTemplates" not in sets["lus-redis-features"]["spec"]


def test_the_tiers_may_reach_only_dns_and_their_redis() -> None:
    documents = _rendered("gpu-prod")
    egress = {
        d["metadata"]["name"]: d["spec"]
        for d in documents
        if d["kind"] == "NetworkPolicy" and "Egress" in d["spec"]["policyTypes"]
    }
    assert egress["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name in ("lus-biomarker-egress", "lus-expert-egress"):
        (rule,) = egress[name]["egress"]
        targets = {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["to"]
        }
        assert targets == {"lus-redis-registry", "lus-redis-features"}
        assert rule["ports"] == [{"port": 6379}]
    assert "namespaceSelector" in egress["allow-dns-egress"]["egress"][0]["to"][0]
