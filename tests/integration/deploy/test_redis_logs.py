"""An expert replica started with the deployed Redis URLs (user:password, both instances, the
audit stream) logs in as its read-only user and never writes a password to its log."""

from __future__ import annotations

import secrets
import time

import pytest

redis = pytest.importorskip("redis")

from tests.integration.deploy.conftest import DeployedRedis  # noqa: E402
from tests.processes import EXPERT_PORTS, server_process  # noqa: E402

pytestmark = pytest.mark.redis
WAIT_S = 60.0


def test_the_serving_replica_logs_no_redis_password(
    registry_redis: DeployedRedis, features_redis: DeployedRedis
) -> None:
    admin = redis.Redis.from_url(registry_redis.url("expert-admin"))
    admin.set("lus:expert:epoch", secrets.token_hex(16), nx=True)  # the registry exists
    admin.close()
    env = {
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_REGISTRY_URL": registry_redis.url("expert"),
        "LUS_EXPERT_REGISTRY_PERSISTENCE": "require",  # needs CONFIG GET, which "expert" has
        "LUS_EXPERT_FEATURE_STORE": "redis",
        "LUS_EXPERT_FEATURE_STORE_URL": features_redis.url("expert"),
        "LUS_EXPERT_AUDIT_SINK": "redis",
        "LUS_EXPERT_AUDIT_REDIS_URL": registry_redis.url("expert"),
    }
    with server_process("expert_service", env, EXPERT_PORTS) as server:
        deadline = time.monotonic() + WAIT_S
        # a bound on waiting for the first registry read to be logged, not a timing assertion
        while not any("holds no loadable experts" in line for line in server.log):
            assert server.proc.poll() is None, "".join(server.log)
            assert time.monotonic() < deadline, "".join(server.log)
            time.sleep(0.1)
    log = "".join(server.log)
    assert "registry Redis persistence: aof" in log
    assert "expert:***@127.0.0.1" in log  # the registry is named, its password masked
    for deployed in (registry_redis, features_redis):
        for password in deployed.passwords.values():
            assert password not in log
