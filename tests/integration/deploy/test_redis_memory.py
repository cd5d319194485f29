"""The two Redis instances under memory pressure, with the shipped configs (maxmemory lowered to
a few MB so the test fills them): distinct uploads can never fill the feature store (issue 16:
no maxmemory, no eviction, OOM-killed), and the registry is never evicted."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from tests.integration.deploy.conftest import (  # noqa: E402
    FEATURE_USERS,
    REDIS_DIR,
    REGISTRY_USERS,
    DeployedRedis,
    render_acl,
)
from tests.integration.deploy.test_redis_acl import _vector  # noqa: E402
from tests.processes import private_redis  # noqa: E402

pytestmark = pytest.mark.redis
SMALL = "4mb"


def _small(tmp_path: Path, name: str, users: tuple[str, ...]) -> Iterator[DeployedRedis]:
    acl, passwords = render_acl(f"{name}.acl", users, tmp_path)
    conf = str(REDIS_DIR / f"{name}.conf")
    args = ("--include", conf, "--aclfile", str(acl), "--maxmemory", SMALL)
    with private_redis(tmp_path, *args) as (url, _):
        yield DeployedRedis(url, passwords)


@pytest.fixture
def small_features(tmp_path: Path) -> Iterator[DeployedRedis]:
    yield from _small(tmp_path, "features", FEATURE_USERS)


@pytest.fixture
def small_registry(tmp_path: Path) -> Iterator[DeployedRedis]:
    yield from _small(tmp_path, "registry", REGISTRY_USERS)


def test_distinct_uploads_evict_old_vectors_instead_of_failing(
    small_features: DeployedRedis,
) -> None:
    from lus.feature_store.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(small_features.url("biomarker"))
    n = 3000  # about 4 kB each: three times what 4 MB holds
    for i in range(n):
        store.put(_vector(f"{i:064x}"))  # never "OOM command not allowed"
    assert store.get(f"{n - 1:064x}") is not None  # the newest is kept
    client = redis.Redis.from_url(small_features.url("fs-admin"))
    kept = sum(1 for _ in client.scan_iter(match="lus:fs:v:*", count=500))
    assert 0 < kept < n  # the least recently used went
    client.close()
    store.close()


def test_a_full_registry_refuses_writes_and_keeps_every_key(small_registry: DeployedRedis) -> None:
    admin = redis.Redis.from_url(small_registry.url("expert-admin"))
    written: list[str] = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(1000):  # 100 kB each: 100 MB, far past 4 MB
            key = f"lus:expert:task:filler:v:{i}"
            admin.hset(key, "model", secrets.token_bytes(100_000))
            written.append(key)
    assert written  # some fit before the limit
    assert all(admin.exists(key) for key in written)  # noeviction: nothing dropped
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    admin.close()
