"""Both feature stores against the same contract: SQLite in tmp_path, Redis on 127.0.0.1:6379.

The SQLite migration from schema 1 is tested in ``tests/unit/lus/test_feature_store_migration.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lus.feature_store import (
    PIXEL_HASH_SAMPLED,
    FeatureStore,
    SqliteFeatureStore,
    StoredContent,
    StoredVector,
    content_sha256,
    pixel_hash,
    raw_frames_sha256,
)
from lus.feature_store.factory import open_feature_store

REDIS_URL = "redis://127.0.0.1:6379/0"


def item(
    digest: str = "a" * 64,
    version: str = "m1",
    created: str = "2026-01-01T00:00:00+00:00",
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
        artifact_sha256="e" * 64,
        precision="int8-static",
        input_check=1,
        pixel_hash_scheme=PIXEL_HASH_SAMPLED,
    )


def content(digest: str = "c" * 64, decoder: str = "dec1", pixels: str = "a" * 64) -> StoredContent:
    return StoredContent(digest, decoder, pixels, 24, 96, 128, 15.0, "2026-01-01T00:00:00+00:00")


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
    original = item()
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
    assert store.get_content("c" * 64, "dec1") is None


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


def test_content_entries_are_kept_per_decoder(store: FeatureStore) -> None:
    first, other_decoder = content(decoder="dec1"), content(decoder="dec2", pixels="b" * 64)
    store.put_content(first)
    store.put_content(other_decoder)
    assert store.get_content("c" * 64, "dec1") == first
    assert store.get_content("c" * 64, "dec2") == other_decoder
    assert store.get_content("c" * 64, "dec3") is None
    assert store.get_content("d" * 64, "dec1") is None
    replaced = content(decoder="dec1", pixels="f" * 64)
    store.put_content(replaced)
    assert store.get_content("c" * 64, "dec1") == replaced


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"content_sha256": "not-hex"}, "64 hex digits"),
        ({"pixel_hash": ""}, "64 hex digits"),
        ({"decoder": ""}, "decoder"),
        ({"frames": 0}, "at least 1"),
        ({"fps": float("nan")}, "finite"),
    ],
)
def test_unusable_content_entries_are_refused(
    store: FeatureStore, change: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        store.put_content(StoredContent(**{**content().__dict__, **change}))


def test_a_format_1_document_is_read_without_its_uid_and_without_lineage() -> None:
    from lus.feature_store import codec

    legacy = json.loads(_format_1(item(), "1.2.840.99.1"))
    decoded = codec.decode(json.dumps(legacy))
    assert decoded.vector == item().vector
    assert (decoded.artifact_sha256, decoded.precision, decoded.input_check) == ("", "", 0)
    with pytest.raises(ValueError, match="format 3"):
        codec.decode(json.dumps({**legacy, "format": 3}))


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


def test_documents_from_before_the_hash_scheme_read_as_every_frame_entries() -> None:
    """Vectors stored before issue 12 name no scheme: they are keyed by the every-frame hash,
    and stay readable under it (training sets reference those keys)."""
    from lus.feature_store.codec import decode, encode

    document = json.loads(encode(item()))
    assert document["pixel_hash_scheme"] == PIXEL_HASH_SAMPLED
    del document["pixel_hash_scheme"]
    old = decode(json.dumps(document))
    assert old.pixel_hash_scheme == "" and old.pixel_hash == item().pixel_hash
    assert old == replace(item(), pixel_hash_scheme="")


def test_stored_documents_hold_only_contract_fields_and_no_uid(tmp_path: Path) -> None:
    import sqlite3

    store = SqliteFeatureStore(tmp_path / "features.sqlite")
    store.put(item())
    store.put_content(content())
    conn = sqlite3.connect(tmp_path / "features.sqlite")
    (document,) = conn.execute("SELECT document FROM vectors").fetchone()
    (entry,) = conn.execute("SELECT document FROM contents").fetchone()
    assert set(json.loads(document)) == {
        "format",
        "pixel_hash",
        "model_version",
        "schema_id",
        "vector",
        "clip_vectors",
        "created_at",
        "artifact_sha256",
        "precision",
        "input_check",
        "pixel_hash_scheme",
    }
    assert set(json.loads(entry)) == {
        "format",
        "content_sha256",
        "decoder",
        "pixel_hash",
        "frames",
        "height",
        "width",
        "fps",
        "created_at",
    }
    columns = {
        row[1]
        for table in ("vectors", "contents")
        for row in conn.execute(f"PRAGMA table_info({table})")
    }
    assert not any("uid" in column for column in columns)


def test_pixel_hash_depends_on_pixels_and_shape_only() -> None:
    frames = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert pixel_hash(frames) == pixel_hash(frames.copy())
    assert pixel_hash(frames) != pixel_hash(frames.reshape(2, 4, 3))
    changed = frames.copy()
    changed[1, 2, 3] ^= 1
    assert pixel_hash(frames) != pixel_hash(changed)


def test_content_hashes_keep_uploads_and_raw_frames_apart() -> None:
    pixels = bytes(range(256)) * 3
    raw = raw_frames_sha256(pixels, count=3, height=16, width=16, channels=1, fps=15.0)
    assert content_sha256(pixels) != raw
    assert raw != raw_frames_sha256(pixels, count=3, height=16, width=16, channels=1, fps=30.0)
    assert raw != raw_frames_sha256(pixels, count=1, height=48, width=16, channels=1, fps=15.0)
    assert content_sha256(pixels) == content_sha256(bytes(pixels))


def test_an_unusable_sqlite_path_fails_with_what_to_change(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot open the SQLite feature store .*writable"):
        open_feature_store("sqlite", path=blocker / "store.sqlite", redis_url="", prefix="")


@pytest.fixture
def redis_store() -> Iterator[FeatureStore]:
    yield from _redis_store()


def _format_1(stored: StoredVector, uid: str) -> str:
    """The document the store wrote before issue 10: no lineage, the UID inside."""
    from lus.feature_store import codec

    document = json.loads(codec.encode(stored))
    for key in ("artifact_sha256", "precision", "input_check"):
        del document[key]
    document.update(format=1, sop_instance_uid=uid)
    return json.dumps(document)


@pytest.mark.redis
def test_redis_scrub_removes_layout_1_uid_keys_and_fields(redis_store: FeatureStore) -> None:
    from lus.feature_store.redis_store import RedisFeatureStore

    assert isinstance(redis_store, RedisFeatureStore)
    client, prefix = redis_store._redis, redis_store.prefix
    # Layout 1 as the old code wrote it: a UID index, and the UID inside the document.
    client.set(f"{prefix}v:{'a' * 64}:m1", _format_1(item(), "1.2.840.99.1"))
    client.zadd(f"{prefix}h:{'a' * 64}", {"m1": 1.0})
    client.zadd(f"{prefix}u:1.2.840.99.1", {f"{'a' * 64}:m1": 1.0})
    redis_store.put(item(digest="b" * 64))
    before = redis_store.get("a" * 64, "m1")
    assert before is not None and before.vector == item().vector  # readable, UID ignored
    assert redis_store.scrub_legacy_uids() == (1, 1)
    assert redis_store.scrub_legacy_uids() == (0, 0)  # twice is harmless
    assert not list(client.scan_iter(match=f"{prefix}u:*"))
    raw = client.get(f"{prefix}v:{'a' * 64}:m1")
    assert raw is not None and b"sop_instance_uid" not in raw
    assert redis_store.get("a" * 64, "m1") == before
    assert redis_store.get("b" * 64, "m1") == item(digest="b" * 64)
