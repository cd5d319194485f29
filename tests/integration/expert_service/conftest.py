"""Fixtures of the expert-tier integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from expert_service.registry.redis_store import RedisRegistry

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_registry() -> Iterator[RedisRegistry]:
    """A registry on the machine's Redis under a key prefix of this test's own, deleted after."""
    redis = pytest.importorskip("redis")
    from expert_service.registry.redis_store import RedisRegistry

    prefix = f"lus-test:{uuid.uuid4().hex}:"
    reg = RedisRegistry(REDIS_URL, prefix=prefix)
    try:
        reg.client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield reg
    keys = list(reg.client.scan_iter(match=f"{prefix}*"))
    if keys:
        reg.client.delete(*keys)
    reg.close()
