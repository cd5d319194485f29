"""Finding audit records by request id or content hash, in a JSON-lines file or a Redis stream.

Neither sink keeps an index: the reader scans, oldest first, and parses only lines or entries
that contain the value sought. A file of a million records (about 450 MB) scans in seconds;
a stream holds at most its ``maxlen``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lus.audit.record import AuditRecord
from lus.audit.sinks import DEFAULT_STREAM, RECORD_FIELD, redacted_url

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_PAGE = 1000


def is_redis_location(location: str | Path) -> bool:
    """Whether ``location`` is a Redis URL rather than a file path."""
    return isinstance(location, str) and location.startswith(REDIS_SCHEMES)


def _criteria(
    request_id: str | None, content_sha256: str | None, pixel_hash: str | None
) -> dict[str, str]:
    wanted = {
        name: value
        for name, value in (
            ("request_id", request_id),
            ("content_sha256", content_sha256),
            ("pixel_hash", pixel_hash),
        )
        if value
    }
    if not wanted:
        raise ValueError("give a request id, a content sha256 or a pixel hash to look for")
    return wanted


def _matches(record: AuditRecord, wanted: dict[str, str]) -> bool:
    # A batch's record may hold several hashes (a tuple): one of them matching is a match.
    for name, value in wanted.items():
        held = getattr(record, name)
        if held != value and not (isinstance(held, tuple) and value in held):
            return False
    return True


def _parse(raw: str | bytes, where: str) -> AuditRecord | None:
    try:
        return AuditRecord.from_json(raw)
    except ValueError:
        # A line torn by a crash mid-write, or something else appended to the file: skip it.
        logger.warning("skipping a malformed audit record in %s", where)
        return None


def _scan_file(path: Path, needle: str) -> Iterator[AuditRecord]:
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if needle in line:
                record = _parse(line, f"{path}:{number}")
                if record is not None:
                    yield record


def _scan_stream(client: Any, stream: str, needle: str) -> Iterator[AuditRecord]:
    import redis

    needle_bytes = needle.encode()
    start = "-"
    while True:
        try:
            entries = client.xrange(stream, min=start, max="+", count=_PAGE)
        except redis.RedisError as err:
            raise OSError(f"reading the audit stream {stream!r} failed: {err}") from None
        for entry_id, entry in entries:
            raw = entry.get(RECORD_FIELD.encode(), entry.get(RECORD_FIELD, b""))
            data = raw if isinstance(raw, bytes) else str(raw).encode()
            if needle_bytes in data:
                record = _parse(data, f"stream {stream} entry {entry_id!r}")
                if record is not None:
                    yield record
        if len(entries) < _PAGE:
            return
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def find_records(
    location: str | Path,
    *,
    request_id: str | None = None,
    content_sha256: str | None = None,
    pixel_hash: str | None = None,
    stream: str = DEFAULT_STREAM,
    limit: int | None = None,
    redis_client: Any = None,
) -> list[AuditRecord]:
    """The records, oldest first, whose fields equal every value given.

    Args:
        location: A JSON-lines file, or a Redis URL (``redis://``, ``rediss://``, ``unix://``).
        request_id: The call's ``x-request-id``.
        content_sha256: sha256 (hex) of the uploaded bytes.
        pixel_hash: Hash of the decoded frames (the expert tier's ``video_hash``).
        stream: The Redis stream's key (Redis only).
        limit: Stop after this many matches.
        redis_client: An existing client instead of one from ``location`` (tests).

    Raises:
        ValueError: No value to look for.
        OSError: The file cannot be read, or Redis cannot be reached.
    """
    wanted = _criteria(request_id, content_sha256, pixel_hash)
    needle = min(wanted.values(), key=len)
    if not is_redis_location(location):
        return _collect(_scan_file(Path(location), needle), wanted, limit)
    client = redis_client if redis_client is not None else _connect(str(location))
    try:
        return _collect(_scan_stream(client, stream, needle), wanted, limit)
    finally:
        if redis_client is None:
            client.close()


def _collect(
    records: Iterator[AuditRecord], wanted: dict[str, str], limit: int | None
) -> list[AuditRecord]:
    found: list[AuditRecord] = []
    for record in records:
        if _matches(record, wanted):
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
    return found


def _connect(url: str) -> Any:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.ping()
    except redis.RedisError as err:
        client.close()
        raise OSError(f"cannot reach Redis at {redacted_url(url)}: {err}") from None
    return client
