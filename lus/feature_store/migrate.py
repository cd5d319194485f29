"""Bring a feature store to the current layout, ahead of (or after) a service start.

    python -m lus.feature_store.migrate sqlite lus-features.sqlite
    python -m lus.feature_store.migrate redis --url redis://redis:6379/0 --prefix lus:fs:

SQLite migrates by itself when a service opens the file; this does the same without starting
one (e.g. to time it on a copy). Redis is shared by every replica and can be large, so nothing
scans it at start-up: its layout-1 leftovers (the UID index and the UID inside old documents)
are ignored by readers until this removes them. Running it twice is harmless.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from lus.feature_store.sqlite import SCHEMA_VERSION, SqliteFeatureStore


def main(argv: Sequence[str] | None = None) -> int:
    """Run the migration the arguments name; 0 when done, 2 when the store cannot be used."""
    parser = argparse.ArgumentParser(prog="python -m lus.feature_store.migrate")
    kinds = parser.add_subparsers(dest="kind", required=True)
    on_sqlite = kinds.add_parser("sqlite", help="migrate a SQLite feature-store file in place")
    on_sqlite.add_argument("path", type=Path)
    on_redis = kinds.add_parser("redis", help="remove layout-1 UID keys and document fields")
    on_redis.add_argument("--url", default="redis://127.0.0.1:6379/0")
    on_redis.add_argument("--prefix", default="lus:fs:")
    args = parser.parse_args(argv)
    if args.kind == "sqlite":
        return _sqlite(args.path)
    return _redis(args.url, args.prefix)


def _sqlite(path: Path) -> int:
    if not path.exists():  # opening would create an empty store: not what was asked
        print(f"no feature store at {path}", file=sys.stderr)
        return 2
    try:
        SqliteFeatureStore(path).close()
    except (OSError, ValueError, sqlite3.Error) as err:
        print(f"cannot migrate {path}: {err}", file=sys.stderr)
        return 2
    print(f"{path}: schema version {SCHEMA_VERSION}")
    return 0


def _redis(url: str, prefix: str) -> int:
    import redis

    from lus.feature_store.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(url, prefix=prefix, timeout_s=30.0)
    try:
        deleted, rewritten = store.scrub_legacy_uids()
    except (redis.RedisError, ValueError) as err:
        print(f"cannot migrate the Redis feature store: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"{prefix}: {deleted} UID index keys deleted, {rewritten} documents rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
