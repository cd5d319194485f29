"""The SQLite feature store of schema 1 (UID column, UID index, UIDs in documents) migrates on open.

Schema 1 is written here exactly as the store wrote it before issue 10, so that the migration is
tested against the files that exist in the field.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from lus.feature_store import SqliteFeatureStore, StoredContent
from lus.feature_store.migrate import main as migrate
from lus.feature_store.sqlite import SCHEMA_VERSION

UID = "1.2.840.113619.2.55.3.99887766"
"""A UID to look for in the migrated file's bytes."""

SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS vectors (
    pixel_hash TEXT NOT NULL,
    model_version TEXT NOT NULL,
    sop_instance_uid TEXT,
    created_at TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (pixel_hash, model_version)
);
CREATE INDEX IF NOT EXISTS vectors_by_uid ON vectors (sop_instance_uid, model_version);
"""


def _document(digest: str, version: str, uid: str | None, value: float) -> str:
    return json.dumps(
        {
            "format": 1,
            "pixel_hash": digest,
            "model_version": version,
            "schema_id": "gare2022-lus38.v1@000000000000",
            "vector": [value] * 38,
            "clip_vectors": [[value] * 38] * 4,
            "created_at": "2026-01-01T00:00:00+00:00",
            "sop_instance_uid": uid,
        },
        separators=(",", ":"),
    )


def schema_1_store(path: Path, rows: int = 40) -> None:
    """A store as schema 1 left it: WAL mode, rows with and without UIDs, the UID index."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_1)
    for i in range(rows):
        digest = f"{i:064x}"
        uid = f"{UID}.{i}" if i % 2 == 0 else None
        conn.execute(
            "INSERT INTO vectors VALUES (?, ?, ?, ?, ?)",
            (digest, "m1", uid, "2026-01-01T00:00:00+00:00", _document(digest, "m1", uid, i / 100)),
        )
    conn.close()


def test_schema_1_is_migrated_and_its_rows_stay_readable_by_pixel_hash(tmp_path: Path) -> None:
    path = tmp_path / "features.sqlite"
    schema_1_store(path)
    store = SqliteFeatureStore(path)
    for i in (0, 1, 39):
        stored = store.get(f"{i:064x}", "m1")
        assert stored is not None and stored.vector == (i / 100,) * 38
        assert (stored.artifact_sha256, stored.precision, stored.input_check) == ("", "", 0)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "sop_instance_uid" not in {row[1] for row in conn.execute("PRAGMA table_info(vectors)")}
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == [
        ("sqlite_autoindex_vectors_1",),
        ("sqlite_autoindex_contents_1",),
    ]
    documents = [json.loads(d) for (d,) in conn.execute("SELECT document FROM vectors")]
    assert len(documents) == 40 and all("sop_instance_uid" not in d for d in documents)
    store.put_content(StoredContent("c" * 64, "dec", "0" * 64, 24, 96, 96, 15.0, "2026"))
    assert store.get_content("c" * 64, "dec") is not None
    conn.close()
    store.close()


def test_no_uid_is_left_in_the_file_after_migration(tmp_path: Path) -> None:
    path = tmp_path / "features.sqlite"
    schema_1_store(path, rows=400)
    SqliteFeatureStore(path).close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("features.sqlite")]
    assert all(UID.encode() not in p.read_bytes() for p in files), [p.name for p in files]


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "features.sqlite"
    schema_1_store(path)
    SqliteFeatureStore(path).close()
    conn = sqlite3.connect(path)
    before = conn.execute("SELECT * FROM vectors ORDER BY pixel_hash").fetchall()
    conn.close()
    second = SqliteFeatureStore(path)
    other = SqliteFeatureStore(path)  # both tiers of ``lus serve`` open the same file
    assert second.get(f"{3:064x}", "m1") == other.get(f"{3:064x}", "m1")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM vectors ORDER BY pixel_hash").fetchall() == before
    conn.close()


def test_a_store_of_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "features.sqlite"
    SqliteFeatureStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ValueError, match=r"newer than this service reads .*another file"):
        SqliteFeatureStore(path)


def test_the_migration_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "features.sqlite"
    assert migrate(["sqlite", str(path)]) == 2  # never creates an empty store by mistake
    assert not path.exists()
    schema_1_store(path)
    assert migrate(["sqlite", str(path)]) == 0
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
