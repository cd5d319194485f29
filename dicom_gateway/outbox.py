"""The persistent outbox: each accepted instance, from C-STORE to the destination's acknowledgement.

One job per source instance, so a re-sent instance is never analysed twice and a report is
built once; its SR (with its SR SOP Instance UID) is stored before the first send, so a retry
after a crash resends the same instance, which the destination stores once::

    received --analysed--> pending --acknowledged--> sent
       |  ^                  |  ^
       |  +- tier down ------+  +- destination down (backoff, then again)
       +--> failed (the tiers refused the instance: permanent)
                             +--> dead (max attempts: kept, counted, never retried)

``SqliteOutbox`` (one gateway replica, WAL) is here; ``RedisOutbox`` (several replicas) is in
``dicom_gateway.redis_outbox``. Both keep the instance bytes until the report is built and the
report's bytes until it is acknowledged, and nothing of either after that. Both store opaque
keys and payloads: the gateway wraps them in ``SealedOutbox`` (``dicom_gateway.sealed_outbox``),
which names each job by a keyed hash of its source UID and encrypts every payload.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

State = Literal["received", "pending", "sent", "failed", "dead"]
STATES: tuple[State, ...] = ("received", "pending", "sent", "failed", "dead")


@dataclass(frozen=True)
class Job:
    """One accepted instance and where it stands."""

    key: str
    """The job id: a keyed hash of the source SOP Instance UID, never the UID itself."""
    state: State
    attempts: int
    payload: bytes
    """The received Part-10 instance (``received``) or the report to send (``pending``);
    sealed in the store, plaintext once ``SealedOutbox`` has opened it."""


class Outbox(Protocol):
    """What the SCP, the analysis workers and the sender need from the store."""

    def accept(self, key: str, instance: bytes) -> bool:
        """Keep a received instance durably; False (and nothing changed) when ``key`` is known.
        ``SealedOutbox`` takes the source SOP Instance UID here and hands its store the job id."""

    def backlog(self) -> int:
        """Instances received and not yet analysed."""

    def claim(self, state: Literal["received", "pending"], limit: int) -> list[Job]:
        """Up to ``limit`` jobs in ``state`` that are due, leased to the caller until it
        settles them (or the lease lapses: a crashed caller's jobs come back)."""

    def analysed(self, key: str, report: bytes) -> None:
        """The report of a received instance is built: drop the instance, queue the report."""

    def acknowledged(self, key: str) -> None:
        """The destination stored the report: drop it, the job is done."""

    def retry(self, key: str, delay_s: float, max_attempts: int) -> State:
        """A transient failure: try again after ``delay_s``, or dead-letter after
        ``max_attempts``; returns the job's new state."""

    def fail(self, key: str) -> None:
        """A permanent failure: the tiers refused the instance, or its payload does not open."""

    def counts(self) -> dict[State, int]:
        """Jobs per state."""

    def close(self) -> None: ...


LEASE_S = 600.0
"""How long a claimed job stays hidden from other claimers (a crashed worker's come back)."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the current layout; 0 (or none) was the first gateway's, which kept
source UIDs as keys and payloads in clear: such a file is refused, not converted."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    payload BLOB,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state_due ON jobs (state, due);
PRAGMA user_version = 2;
"""


class OutboxSchemaError(ValueError):
    """An outbox file written by another version of the gateway."""


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'").fetchone()
    if int(tables[0]) and version != SCHEMA_VERSION:
        db.close()
        raise OutboxSchemaError(
            f"outbox {path} has schema version {version}, this gateway writes"
            f" {SCHEMA_VERSION} (encrypted payloads, hashed keys): drain it with the gateway"
            " that wrote it, or move it away (it may hold patient data in clear)"
        )


class SqliteOutbox:
    """The outbox in one SQLite file (WAL, synchronous FULL: an accepted instance survives a
    crash). For one gateway process; claims in it are leased in memory, so a restart takes up
    every unfinished job at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        _check_schema(self._db, path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._leased: dict[str, float] = {}

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def accept(self, key: str, instance: bytes) -> bool:
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (key, state, due, payload, updated)"
                " VALUES (?, 'received', ?, ?, ?)",
                (key, now, instance, now),
            )
            return cursor.rowcount == 1

    def backlog(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM jobs WHERE state = 'received'").fetchone()
        return int(row[0])

    def claim(self, state: Literal["received", "pending"], limit: int) -> list[Job]:
        now = time.time()
        with self._lock:
            self._leased = {k: until for k, until in self._leased.items() if until > now}
            rows = self._db.execute(
                "SELECT key, state, attempts, payload FROM jobs"
                " WHERE state = ? AND due <= ? ORDER BY due LIMIT ?",
                (state, now, limit + len(self._leased)),
            ).fetchall()
            jobs = [Job(r[0], r[1], r[2], r[3]) for r in rows if r[0] not in self._leased]
            jobs = jobs[:limit]
            for job in jobs:
                self._leased[job.key] = now + LEASE_S
        return jobs

    def _release(self, key: str) -> None:
        self._leased.pop(key, None)

    def analysed(self, key: str, report: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, due = ?, payload = ?,"
                " updated = ? WHERE key = ?",
                (time.time(), report, time.time(), key),
            )
            self._release(key)

    def acknowledged(self, key: str) -> None:
        self._finish(key, "sent")

    def fail(self, key: str) -> None:
        self._finish(key, "failed")

    def _finish(self, key: str, state: State) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, payload = NULL, updated = ? WHERE key = ?",
                (state, time.time(), key),
            )
            self._release(key)

    def retry(self, key: str, delay_s: float, max_attempts: int) -> State:
        with self._transaction() as db:
            row = db.execute("SELECT attempts FROM jobs WHERE key = ?", (key,)).fetchone()
            attempts = int(row[0]) + 1 if row else max_attempts
            # A dead job keeps its payload: an operator can still resend it by hand.
            state: State = "dead" if attempts >= max_attempts else "received"
            db.execute(
                "UPDATE jobs SET attempts = ?, due = ?, updated = ?,"
                " state = CASE WHEN ? = 'dead' THEN 'dead' ELSE state END WHERE key = ?",
                (attempts, time.time() + delay_s, time.time(), state, key),
            )
            new = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
            self._release(key)
        return str(new[0]) if new else "dead"  # type: ignore[return-value]

    def counts(self) -> dict[State, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        found = {state: 0 for state in STATES}
        found.update({row[0]: int(row[1]) for row in rows})
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()
