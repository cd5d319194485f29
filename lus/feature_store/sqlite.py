"""The embedded feature store: one SQLite file, so a single machine needs no Redis.

One row per ``(pixel_hash, model_version)``; ``created_at`` orders versions for "newest" reads.
SQLite in WAL mode lets the trainer read while the service writes. Each thread gets its own
connection (sqlite3 connections must not cross threads).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from lus.feature_store import codec
from lus.feature_store.base import StoredVector

_SCHEMA = """
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


class SqliteFeatureStore:
    """``FeatureStore`` over a local SQLite file (created on first use)."""

    def __init__(self, path: Path, *, timeout_s: float = 10.0) -> None:
        """Open (or create) the store.

        Args:
            path: the database file; its folder is created when missing.
            timeout_s: how long a writer waits for another process's lock before failing.
        """
        self.path = path
        self._timeout_s = timeout_s
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            self._local.conn = conn
        return conn

    def _one(self, where: str, params: tuple[str, ...], model_version: str | None) -> str | None:
        sql = f"SELECT document FROM vectors WHERE {where}"  # where: fixed column names
        if model_version is not None:
            sql += " AND model_version = ?"
            params = (*params, model_version)
        row = self._connection().execute(sql + " ORDER BY created_at DESC LIMIT 1", params)
        found = row.fetchone()
        return None if found is None else str(found[0])

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        """The vector for a video hash; the newest across versions when model_version is None."""
        document = self._one("pixel_hash = ?", (pixel_hash,), model_version)
        return None if document is None else codec.decode(document)

    def find_by_sop_instance_uid(
        self, uid: str, model_version: str | None = None
    ) -> StoredVector | None:
        """The vector stored for a DICOM object, if any."""
        if not uid:
            return None
        document = self._one("sop_instance_uid = ?", (uid,), model_version)
        return None if document is None else codec.decode(document)

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        document = codec.encode(item)
        self._connection().execute(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)",
            (item.pixel_hash, item.model_version, item.sop_instance_uid, item.created_at, document),
        )

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they exit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __repr__(self) -> str:
        return f"SqliteFeatureStore({str(self.path)!r})"
