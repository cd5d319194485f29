"""A registry Redis that keeps nothing on disk is named at start: warned about, or refused.

Reported (issue 11): with a Redis keeping nothing on disk, restarted during load, every
replica lost every expert, and nothing had checked or warned that Redis had no persistence.
Each test starts its own redis-server, so the machine's Redis is never reconfigured.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

pytest.importorskip("redis")

from expert_service.server import create_server, open_registry
from expert_service.settings import ExpertSettings
from tests.processes import private_redis


def _settings(url: str, persistence: str) -> ExpertSettings:
    return ExpertSettings(port=0, registry_url=url, registry_persistence=persistence)  # type: ignore[arg-type]


def test_redis_without_persistence_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis(tmp_path) as (url, _), caplog.at_level(logging.WARNING):
        registry = open_registry(_settings(url, "warn"))
        registry.close()  # type: ignore[attr-defined]
    warned = [r for r in caplog.records if "keeps nothing on disk" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "appendonly yes" in warned[0].getMessage()


def test_redis_without_persistence_is_refused_when_required(tmp_path: Path) -> None:
    async def start() -> None:
        server = await create_server(_settings(url, "require"))
        await server.stop(0.0)

    with (
        private_redis(tmp_path) as (url, _),
        pytest.raises(OSError, match="keeps nothing on disk") as caught,
    ):
        asyncio.run(start())
    assert "LUS_EXPERT_REGISTRY_PERSISTENCE=warn" in str(caught.value)


def test_redis_with_an_append_only_file_starts_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        private_redis(tmp_path, "--appendonly", "yes", "--save", "") as (url, _),
        caplog.at_level(logging.INFO),
    ):
        registry = open_registry(_settings(url, "require"))
        registry.close()  # type: ignore[attr-defined]
    assert any("persistence: aof" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_logged_registry_never_shows_the_url_password() -> None:
    from expert_service.registry.redis_store import RedisRegistry

    registry = RedisRegistry("redis://:hunter2@127.0.0.1:1/0", timeout_s=0.1)
    try:
        assert "hunter2" not in repr(registry) and "***" in repr(registry)
    finally:
        registry.close()
