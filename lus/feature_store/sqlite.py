"""The embedded feature store: one SQLite file, so a single machine needs no Redis.

Tables (schema version 3, kept in ``PRAGMA user_version``):

    vectors   (pixel_hash, model_version) -> document    one row per video and served model
    contents  (content_sha256, decoder)   -> document    which pixels a file's bytes decode to
    owners    (pixel_hash, model_version, caller)        the callers that had a vector computed

``created_at`` orders versions for "newest" reads. SQLite in WAL mode lets the trainer read while
the service writes. Each thread gets its own connection (sqlite3 connections must not cross
threads).

A file written before schema version 2 (``user_version`` 0, a ``vectors`` table with a
``sop_instance_uid`` column and an index on it) is migrated when opened, in one transaction:
the UID index and column are dropped, the UID is removed from every stored document (with
``secure_delete`` on, so freed pages are zeroed), and the ``contents`` table is created. Its
rows stay readable by pixel hash; they carry no lineage, so the biomarker tier recomputes a
video once before answering it from the store again.

Schema 2 -> 3 (owners) creates the ``owners`` table and gives every existing vector the
anonymous owner ``""``: a server that identifies no callers answers them as before, and
identified callers do not see them (they recompute once and own the result).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from lus.feature_store import codec
from lus.feature_store.base import ANONYMOUS, StoredContent, StoredVector

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of a current store; 0 is a new file or one from before version 2."""

_TABLES = (
    """CREATE TABLE IF NOT EXISTS vectors (
        pixel_hash TEXT NOT NULL,
        model_version TEXT NOT NULL,
        created_at TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (pixel_hash, model_version)
    )""",
    """CREATE TABLE IF NOT EXISTS contents (
        content_sha256 TEXT NOT NULL,
        decoder TEXT NOT NULL,
        created_at TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (content_sha256, decoder)
    )""",
    """CREATE TABLE IF NOT EXISTS owners (
        pixel_hash TEXT NOT NULL,
        model_version TEXT NOT NULL,
        caller TEXT NOT NULL,
        PRIMARY KEY (pixel_hash, model_version, caller)
    ) WITHOUT ROWID""",
)
"""One statement each: ``executescript`` would commit the migration's transaction half-way."""


class SqliteFeatureStore:
    """``FeatureStore`` over a local SQLite file (created, or migrated, on first use)."""

    def __init__(self, path: Path, *, timeout_s: float = 10.0) -> None:
        """Open (or create) the store, migrating a file of an older schema version.

        Args:
            path: the database file; its folder is created when missing.
            timeout_s: how long a writer waits for another process's lock before failing.

        Raises:
            ValueError: the file was written by a newer version of this store.
            sqlite3.Error, OSError: the file cannot be opened or written.
        """
        self.path = path
        self._timeout_s = timeout_s
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._prepare(self._connection())

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            self._local.conn = conn
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or migrate them, under a write lock.

        Both tiers of ``lus serve`` open the same file at start-up: the lock makes the second
        see the first one's result instead of migrating twice.
        """
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise ValueError(self._too_new(version))
        conn.execute("PRAGMA secure_delete=ON")  # the migration's freed pages held UIDs
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ValueError(self._too_new(version))
            if version < SCHEMA_VERSION:
                if "sop_instance_uid" in _columns(conn, "vectors"):
                    _migrate_from_version_1(conn)
                had_owners = "owners" in _tables(conn)
                for statement in _TABLES:
                    conn.execute(statement)
                if not had_owners:  # vectors from before owners: the anonymous caller's
                    conn.execute(
                        "INSERT OR IGNORE INTO owners SELECT pixel_hash, model_version, ? "
                        "FROM vectors",
                        (ANONYMOUS,),
                    )
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA secure_delete=OFF")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no old page images left in the WAL

    def _too_new(self, version: int) -> str:
        return (
            f"the SQLite feature store {self.path} has schema version {version}, newer than this "
            f"service reads ({SCHEMA_VERSION}); run the newer service, or point the "
            "feature-store path at another file"
        )

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

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        document = codec.encode(item)
        self._connection().execute(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
            (item.pixel_hash, item.model_version, item.created_at, document),
        )

    def get_content(self, content_sha256: str, decoder: str) -> StoredContent | None:
        """What a file with these bytes decoded to under ``decoder``, if it was seen."""
        row = self._connection().execute(
            "SELECT document FROM contents WHERE content_sha256 = ? AND decoder = ?",
            (content_sha256, decoder),
        )
        found = row.fetchone()
        return None if found is None else codec.decode_content(str(found[0]))

    def put_content(self, item: StoredContent) -> None:
        """Store (or overwrite) the entry for ``(item.content_sha256, item.decoder)``."""
        document = codec.encode_content(item)
        self._connection().execute(
            "INSERT OR REPLACE INTO contents VALUES (?, ?, ?, ?)",
            (item.content_sha256, item.decoder, item.created_at, document),
        )

    def add_owner(self, pixel_hash: str, model_version: str, caller: str) -> None:
        """Record ``caller`` as an owner of the vector ``(pixel_hash, model_version)``."""
        self._connection().execute(
            "INSERT OR IGNORE INTO owners VALUES (?, ?, ?)", (pixel_hash, model_version, caller)
        )

    def owns(self, pixel_hash: str, model_version: str, caller: str) -> bool:
        """Whether ``caller`` had the vector ``(pixel_hash, model_version)`` computed."""
        row = self._connection().execute(
            "SELECT 1 FROM owners WHERE pixel_hash = ? AND model_version = ? AND caller = ?",
            (pixel_hash, model_version, caller),
        )
        return row.fetchone() is not None

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they exit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __repr__(self) -> str:
        return f"SqliteFeatureStore({str(self.path)!r})"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _migrate_from_version_1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2 inside the caller's transaction: no UID column, index or document field.

    The UID was a lookup key that answered files by their UID alone; nothing reads it now, and
    an identifier kept in clear that nothing needs should not be kept.
    """
    conn.execute("DROP INDEX IF EXISTS vectors_by_uid")
    conn.execute("ALTER TABLE vectors DROP COLUMN sop_instance_uid")
    rows = conn.execute("SELECT rowid, document FROM vectors").fetchall()
    for rowid, document in rows:
        data = json.loads(document)
        if "sop_instance_uid" in data:
            del data["sop_instance_uid"]
            conn.execute(
                "UPDATE vectors SET document = ? WHERE rowid = ?",
                (json.dumps(data, separators=(",", ":")), rowid),
            )
