"""Who may read a stored vector (issue 16, "who may read what"): owners in both stores, the
schema 2 -> 3 migration, and the Redis keys' time to live."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from lus.feature_store import (
    ANONYMOUS,
    FeatureStore,
    SqliteFeatureStore,
    is_owned_by,
    owned_vector,
)
from lus.feature_store.sqlite import SCHEMA_VERSION
from tests.integration.lus.test_feature_store import _redis_store, content, item

A, B = "cert:CN=pacs-a", "team:radiology"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "sqlite":
        sqlite = SqliteFeatureStore(tmp_path / "features.sqlite")
        yield sqlite
        sqlite.close()
    else:
        yield from _redis_store()


def test_a_vector_is_read_by_its_owners_only(store: FeatureStore) -> None:
    stored = item()
    store.put(stored)
    store.add_owner(stored.pixel_hash, stored.model_version, A)  # type: ignore[attr-defined]
    assert is_owned_by(store, stored.pixel_hash, "m1", A)
    assert owned_vector(store, stored.pixel_hash, "m1", A) == stored
    for other in (B, ANONYMOUS):
        assert not is_owned_by(store, stored.pixel_hash, "m1", other)
        # Another caller's vector reads exactly like a vector nobody stored.
        assert owned_vector(store, stored.pixel_hash, "m1", other) is None
        assert owned_vector(store, "f" * 64, "m1", other) is None
    assert not is_owned_by(store, stored.pixel_hash, "m2", A), "owners are per model version"
    store.add_owner(stored.pixel_hash, "m1", B)  # type: ignore[attr-defined]
    assert is_owned_by(store, stored.pixel_hash, "m1", A)
    assert is_owned_by(store, stored.pixel_hash, "m1", B)


def test_a_store_that_records_no_owners_owns_nothing(store: FeatureStore) -> None:
    class Plain:  # a FeatureStore without owner records (e.g. a test double)
        def get(self, pixel_hash: str, model_version: str | None = None) -> None:
            return None

    assert not is_owned_by(Plain(), "a" * 64, "m1", ANONYMOUS)


def test_a_schema_2_file_gives_its_vectors_to_the_anonymous_caller(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    stored = item()
    SqliteFeatureStore(path).put(stored)
    conn = sqlite3.connect(path)  # back to schema 2: no owners table
    conn.execute("DROP TABLE owners")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    migrated = SqliteFeatureStore(path)
    assert int(sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]) == 3
    assert SCHEMA_VERSION == 3
    assert is_owned_by(migrated, stored.pixel_hash, "m1", ANONYMOUS)
    assert not is_owned_by(migrated, stored.pixel_hash, "m1", A)


@pytest.mark.redis
def test_redis_keys_expire_and_unowned_legacy_vectors_are_anonymous() -> None:
    for store in _redis_store():
        from lus.feature_store.redis_store import DEFAULT_TTL_S, RedisFeatureStore

        assert isinstance(store, RedisFeatureStore)
        stored = item()
        store.put(stored)  # as a writer from before owners: no owner set
        assert is_owned_by(store, stored.pixel_hash, "m1", ANONYMOUS)
        assert not is_owned_by(store, stored.pixel_hash, "m1", A)
        store.add_owner(stored.pixel_hash, "m1", A)
        store.put_content(content())
        client = store._redis
        for key in ("v:" + "a" * 64 + ":m1", "h:" + "a" * 64, "o:" + "a" * 64 + ":m1"):
            ttl = int(client.ttl(store.prefix + key))
            assert 0 < ttl <= DEFAULT_TTL_S, key
        assert 0 < int(client.ttl(store.prefix + "c:" + "c" * 64 + ":dec1")) <= DEFAULT_TTL_S
        # Once owners are recorded, the anonymous caller is one caller among others.
        assert not is_owned_by(store, stored.pixel_hash, "m1", ANONYMOUS)
        forever = RedisFeatureStore(client, prefix=store.prefix + "forever:", ttl_s=0)
        forever.put(stored)
        assert int(client.ttl(forever.prefix + "v:" + "a" * 64 + ":m1")) == -1
