"""Both feature stores against the same contract: SQLite in tmp_path, Redis on 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lus.feature_store import FeatureStore, SqliteFeatureStore, StoredVector, pixel_hash
from lus.feature_store.factory import open_feature_store

REDIS_URL = "redis://127.0.0.1:6379/0"


def item(
    digest: str = "a" * 64,
    version: str = "m1",
    created: str = "2026-01-01T00:00:00+00:00",
    uid: str | None = None,
    seed: int = 0,
) -> StoredVector:
    values = np.random.default_rng(seed).random((4, 38)).astype(np.float32)
    return StoredVector(
        pixel_hash=digest,
        model_version=version,
        schema_id="gare2022-lus38.v1@000000000000",
        vector=tuple(float(v) for v in values.mean(axis=0)),
        clip_vectors=tuple(tuple(float(v) for v in clip) for clip in values),
        created_at=created,
        sop_instance_uid=uid,
    )


def _redis_store() -> Iterator[FeatureStore]:
    redis = pytest.importorskip("redis")
    from lus.feature_store.redis_store import RedisFeatureStore

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"lus-test:{uuid.uuid4().hex}:"
    store = RedisFeatureStore(client, prefix=prefix)
    try:
        yield store
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "sqlite":
        sqlite = SqliteFeatureStore(tmp_path / "fs" / "features.sqlite")
        yield sqlite
        sqlite.close()
    else:
        yield from _redis_store()


def test_round_trip_is_exact_for_float32_values(store: FeatureStore) -> None:
    original = item(uid="1.2.840.99.1")
    store.put(original)
    assert store.get(original.pixel_hash, "m1") == original
    assert store.get(original.pixel_hash) == original
    stored = store.get(original.pixel_hash, "m1")
    assert stored is not None
    np.testing.assert_array_equal(
        np.asarray(stored.clip_vectors, dtype=np.float32),
        np.random.default_rng(0).random((4, 38)).astype(np.float32),
    )


def test_misses_return_none(store: FeatureStore) -> None:
    store.put(item())
    assert store.get("b" * 64) is None
    assert store.get("a" * 64, "other-version") is None
    assert store.find_by_sop_instance_uid("1.2.3") is None
    assert store.find_by_sop_instance_uid("") is None


def test_versions_are_kept_apart_and_newest_wins_without_a_version(store: FeatureStore) -> None:
    old = item(version="m1", created="2026-01-01T00:00:00+00:00", seed=1)
    new = item(version="m2", created="2026-02-01T00:00:00+00:00", seed=2)
    store.put(new)
    store.put(old)
    assert store.get(old.pixel_hash, "m1") == old
    assert store.get(old.pixel_hash, "m2") == new
    assert store.get(old.pixel_hash) == new


def test_put_overwrites_the_same_hash_and_version(store: FeatureStore) -> None:
    store.put(item(seed=1))
    store.put(item(seed=2))
    assert store.get("a" * 64, "m1") == item(seed=2)


def test_lookup_by_sop_instance_uid(store: FeatureStore) -> None:
    dicom = item(digest="c" * 64, uid="1.2.840.113619.2.1", version="m1")
    dicom_new = item(
        digest="c" * 64, uid="1.2.840.113619.2.1", version="m2", created="2026-03-01T00:00:00+00:00"
    )
    store.put(dicom)
    store.put(dicom_new)
    store.put(item(digest="d" * 64))
    assert store.find_by_sop_instance_uid("1.2.840.113619.2.1", "m1") == dicom
    assert store.find_by_sop_instance_uid("1.2.840.113619.2.1") == dicom_new
    assert store.find_by_sop_instance_uid("1.2.840.113619.2.1", "m3") is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"pixel_hash": ""}, "needs pixel_hash"),
        ({"vector": ()}, "at least one value"),
        ({"clip_vectors": ((0.5,),)}, "38 values"),
        ({"vector": (float("nan"),) * 38}, "finite"),
    ],
)
def test_unusable_entries_are_refused(
    store: FeatureStore, change: dict[str, object], fragment: str
) -> None:
    fields = {**item().__dict__, **change}
    with pytest.raises(ValueError, match=fragment):
        store.put(StoredVector(**fields))


def test_sqlite_store_is_shared_between_instances(tmp_path: Path) -> None:
    path = tmp_path / "features.sqlite"
    SqliteFeatureStore(path).put(item())
    assert SqliteFeatureStore(path).get("a" * 64, "m1") == item()


def test_stored_document_holds_only_contract_fields(tmp_path: Path) -> None:
    import sqlite3

    store = SqliteFeatureStore(tmp_path / "features.sqlite")
    store.put(item(uid="1.2.3"))
    (document,) = (
        sqlite3.connect(tmp_path / "features.sqlite")
        .execute("SELECT document FROM vectors")
        .fetchone()
    )
    import json

    assert set(json.loads(document)) == {
        "format",
        "pixel_hash",
        "model_version",
        "schema_id",
        "vector",
        "clip_vectors",
        "created_at",
        "sop_instance_uid",
    }


def test_pixel_hash_depends_on_pixels_and_shape_only() -> None:
    frames = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert pixel_hash(frames) == pixel_hash(frames.copy())
    assert pixel_hash(frames) != pixel_hash(frames.reshape(2, 4, 3))
    changed = frames.copy()
    changed[1, 2, 3] ^= 1
    assert pixel_hash(frames) != pixel_hash(changed)


def test_an_unusable_sqlite_path_fails_with_what_to_change(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot open the SQLite feature store .*writable"):
        open_feature_store("sqlite", path=blocker / "store.sqlite", redis_url="", prefix="")
