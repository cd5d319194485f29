"""Where audit records go: a JSON-lines file (the default), a Redis stream (cluster mode), or
nowhere.

A sink keeps records already serialised (``AuditRecord.to_json``, one line each, the same text
in both sinks), written by one ``AuditLog`` writer thread in batches, off the request path;
each sink is still safe to call from several threads. ``write`` may raise (disk full, Redis
down): the ``AuditLog`` counts the batch as lost and carries on, so a sink never fails a call.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import redis

DEFAULT_STREAM = "lus:audit"
DEFAULT_MAXLEN = 1_000_000
"""Entries a Redis stream keeps (approximately): at ~450 bytes each, about 0.5 GB of Redis
memory; at 100 calls/s, about 2.8 hours of traffic. Size it from your call rate and how long
records must stay queryable before a shipper has copied them to long-term storage."""

RECORD_FIELD = "record"
"""The one field of each stream entry: the record's JSON, exactly as a line of the file sink."""


class AuditSink(Protocol):
    """Takes batches of serialised records and keeps them."""

    def write(self, lines: Sequence[str]) -> None:
        """Keep ``lines`` (records' JSON, no newline) in order; raise when they could not be."""

    def close(self) -> None:
        """Make everything written durable and release the file or connection."""

    def describe(self) -> str:
        """Where records go, for the start-up log line (no secrets)."""


class NullAuditSink:
    """Keeps nothing: for tests and for measuring the audit's own cost."""

    def write(self, lines: Sequence[str]) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "none"


class JsonLinesAuditSink:
    """Appends one JSON object per line to a file opened ``O_APPEND``.

    Append-only: the sink never seeks, truncates or rewrites. Each batch goes out in one
    ``write(2)``, and with ``O_APPEND`` the kernel places it at the end of the file atomically
    on local file systems, so several processes (the expert tier's worker processes, both tiers
    of ``lus serve``) may share one file without interleaving lines. Not on NFS: give each
    process its own file there, or use the Redis sink. Rotation is left to the operator: the
    file stays open, so rotate with ``logrotate``'s ``copytruncate`` (appends land at the new
    end), not by renaming. Where rotation is not wanted, ``chattr +a`` makes the file
    append-only for every process, this one included.

    Durability: every batch reaches the kernel at once (it survives a crash of the process);
    ``fsync`` runs at most every ``fsync_interval_s`` seconds (default 1.0) and on ``close``, so
    a power loss costs at most about a second of records. ``0`` syncs every batch, ``None``
    leaves syncing to the OS.

    Args:
        path: The file; created (mode 0640, with missing parent folders) if absent.
        fsync_interval_s: See above.

    Raises:
        OSError: The file cannot be opened for appending (at start-up, not on a call).
    """

    def __init__(self, path: Path | str, *, fsync_interval_s: float | None = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o640)
        self._fsync_interval_s = fsync_interval_s
        self._synced_at = time.monotonic()
        self._lock = threading.Lock()

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                raise OSError(f"audit file {self.path} is closed")
            view = memoryview(data)
            while view:  # a regular file takes it all at once, barring a signal or a full disk
                written = os.write(self._fd, view)
                view = view[written:]
            interval = self._fsync_interval_s
            now = time.monotonic()
            if interval is not None and now - self._synced_at >= interval:
                os.fsync(self._fd)
                self._synced_at = now

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def describe(self) -> str:
        return f"jsonl {self.path}"


def redacted_url(url: str) -> str:
    """``scheme://host:port/db`` without user name or password, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisStreamAuditSink:
    """``XADD`` of each record to a Redis stream, trimmed to about ``maxlen`` entries.

    ``MAXLEN ~`` is the retention bound: Redis drops the oldest entries in whole nodes, so the
    stream holds at least ``maxlen`` and a little more, at no extra cost per write. A batch is
    one pipelined round trip. The stream is a bounded, queryable buffer (``lus audit --redis``);
    retention beyond ``maxlen`` is a log shipper's job (``XREAD`` from the last id it copied).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://`` for TLS).
        stream: The stream's key.
        maxlen: Entries to keep, approximately.
        timeout_s: Socket timeout of every command.
        client: An existing client instead of one from ``url`` (tests).

    Raises:
        OSError: Redis does not answer a PING (at start-up, not on a call).
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        timeout_s: float = 2.0,
        client: redis.Redis | None = None,
    ) -> None:
        import redis as redis_lib  # only where the Redis sink is configured

        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self.stream = stream
        self.maxlen = maxlen
        self._where = f"{redacted_url(url)} stream {stream!r}"
        self._redis: Any = client or redis_lib.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            self._redis.ping()
        except redis_lib.RedisError as err:
            self._redis.close()
            # The URL may hold a password: name the server without it, and drop the cause.
            raise OSError(f"cannot reach the audit Redis at {redacted_url(url)}: {err}") from None

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        pipe = self._redis.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(
                self.stream,
                {RECORD_FIELD: line},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.execute()

    def close(self) -> None:
        self._redis.close()

    def describe(self) -> str:
        return f"redis {self._where} (maxlen ~{self.maxlen})"
