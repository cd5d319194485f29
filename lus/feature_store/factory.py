"""Opens the configured feature store; Redis is imported only when asked for."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from lus.feature_store.base import FeatureStore
from lus.feature_store.sqlite import SqliteFeatureStore

StoreKind = Literal["none", "sqlite", "redis"]


def open_feature_store(
    kind: StoreKind, *, path: Path, redis_url: str, prefix: str, ttl_s: int | None = None
) -> FeatureStore | None:
    """The store for ``kind``: ``None`` for "none", else SQLite at ``path`` or Redis at url
    (its keys expiring ``ttl_s`` after their last write; None = the store's default, 0 = never;
    readers such as the expert tier write nothing and pass None)."""
    if kind == "none":
        return None
    if kind == "sqlite":
        try:
            return SqliteFeatureStore(path)
        except (sqlite3.Error, OSError) as err:  # e.g. a read-only volume next to the model
            raise OSError(
                f"cannot open the SQLite feature store {path} ({err}); point the feature-store "
                "path at a writable file, or use Redis or no store"
            ) from err
    from lus.feature_store.redis_store import RedisFeatureStore

    if ttl_s is None:
        return RedisFeatureStore.from_url(redis_url, prefix=prefix)
    return RedisFeatureStore.from_url(redis_url, prefix=prefix, ttl_s=ttl_s)
