"""Opens the configured feature store; Redis is imported only when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lus.feature_store.base import FeatureStore
from lus.feature_store.sqlite import SqliteFeatureStore

StoreKind = Literal["none", "sqlite", "redis"]


def open_feature_store(
    kind: StoreKind, *, path: Path, redis_url: str, prefix: str
) -> FeatureStore | None:
    """The store for ``kind``: ``None`` for "none", else SQLite at ``path`` or Redis at url."""
    if kind == "none":
        return None
    if kind == "sqlite":
        return SqliteFeatureStore(path)
    from lus.feature_store.redis_store import RedisFeatureStore

    return RedisFeatureStore.from_url(redis_url, prefix=prefix)
