"""Opens the configured feature store; Redis is imported only when asked for."""

from __future__ import annotations

import sqlite3
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
        try:
            return SqliteFeatureStore(path)
        except (sqlite3.Error, OSError) as err:  # e.g. a read-only volume next to the model
            raise OSError(
                f"cannot open the SQLite feature store {path} ({err}); point the feature-store "
                "path at a writable file, or use Redis or no store"
            ) from err
    from lus.feature_store.redis_store import RedisFeatureStore

    return RedisFeatureStore.from_url(redis_url, prefix=prefix)
