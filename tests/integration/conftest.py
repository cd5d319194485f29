"""Fixtures for tests that talk to real services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    """The machine's Redis and a key prefix of this test's own; its keys are deleted after."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"lus-test:{uuid.uuid4().hex}:"
    yield REDIS_URL, prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
