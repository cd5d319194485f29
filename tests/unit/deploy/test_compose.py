"""deploy/compose.yaml as issue 16 asks: host ports on 127.0.0.1 unless LUS_BIND_ADDRESS says
otherwise, two Redis instances apart, every service logging in as its own Redis user."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.processes import REPO
from tests.unit.deploy.checker import hardening

COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
URL = re.compile(
    r"^rediss?://(?P<user>[\w-]+):\$\{LUS_REDIS_PASSWORD_(?P<var>\w+?)[:}].*@(?P<host>[\w-]+):"
)


def test_every_published_port_binds_to_loopback_by_default() -> None:
    published = [port for service in SERVICES.values() for port in service.get("ports", [])]
    assert published
    for port in published:
        assert str(port).startswith("${LUS_BIND_ADDRESS:-127.0.0.1}:"), port


def test_registry_and_feature_store_are_separate_pinned_instances() -> None:
    registry, features = SERVICES["redis-registry"], SERVICES["redis-features"]
    for service, name in ((registry, "registry"), (features, "features")):
        image = service["image"].removeprefix("${LUS_REDIS_IMAGE:-").removesuffix("}")
        assert hardening.redis_problem(image) is None
        command = " ".join(service["entrypoint"])
        assert f"/etc/lus-redis/{name}.acl" in command and f"{name}.conf" in command
        assert service["read_only"] is True
    assert "redis" not in SERVICES  # the one shared, unauthenticated instance is gone


def test_each_redis_url_names_its_own_user_on_the_right_instance() -> None:
    expected = {
        ("biomarker", "LUS_BIOMARKER_REDIS_URL"): ("biomarker", "redis-features"),
        ("biomarker", "LUS_BIOMARKER_AUDIT_REDIS_URL"): ("biomarker", "redis-registry"),
        ("expert", "LUS_EXPERT_REGISTRY_URL"): ("expert-admin", "redis-registry"),
        ("expert", "LUS_EXPERT_FEATURE_STORE_URL"): ("expert", "redis-features"),
        ("expert", "LUS_EXPERT_AUDIT_REDIS_URL"): ("expert-admin", "redis-registry"),
    }
    for (service, variable), (user, host) in expected.items():
        match = URL.match(SERVICES[service]["environment"][variable])
        assert match is not None, variable
        assert (match["user"], match["host"]) == (user, host), variable
        assert match["var"] == user.upper().replace("-", "_")
    for service in SERVICES.values():
        for name, value in (service.get("environment") or {}).items():
            if isinstance(value, str) and value.startswith(("redis://", "rediss://")):
                assert URL.match(value), f"{name} has no user and password"
