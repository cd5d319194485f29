"""Opening the audit log a serving process's settings ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from lus.audit.log import AuditLog
from lus.audit.sinks import AuditSink, JsonLinesAuditSink, RedisStreamAuditSink


class AuditSettings(Protocol):
    """The audit fields of ``lus.rpc.settings.ServingSettings`` (both tiers' settings)."""

    @property
    def audit_sink(self) -> str: ...
    @property
    def audit_path(self) -> Path: ...
    @property
    def audit_redis_url(self) -> str | None: ...
    @property
    def audit_stream(self) -> str: ...
    @property
    def audit_maxlen(self) -> int: ...


def open_sink(settings: AuditSettings) -> AuditSink | None:
    """The configured sink, opened (None for ``none``).

    Raises:
        OSError: The file cannot be opened, or Redis does not answer: refuse to start rather
            than serve without the trail the operator asked for.
    """
    if settings.audit_sink == "none":
        return None
    if settings.audit_sink == "redis":
        if not settings.audit_redis_url:
            raise ValueError("audit_sink redis needs audit_redis_url")
        return RedisStreamAuditSink(
            settings.audit_redis_url, stream=settings.audit_stream, maxlen=settings.audit_maxlen
        )
    if settings.audit_sink == "jsonl":
        try:
            return JsonLinesAuditSink(settings.audit_path)
        except OSError as err:
            raise OSError(
                f"cannot open the audit file {settings.audit_path} for appending: "
                f"{err.strerror or err}"
            ) from None
    raise ValueError(f"unknown audit_sink {settings.audit_sink!r}: jsonl, redis or none")


def open_audit_log(settings: AuditSettings) -> AuditLog | None:
    """The ``AuditLog`` to pass to ``create_aio_server`` / ``create_threaded_server``, or None
    when ``audit_sink`` is ``none`` (then the servers build no records at all).

    The caller closes it after its servers have stopped, so their last records get written.

    Raises:
        OSError: As ``open_sink``.
    """
    sink = open_sink(settings)
    return None if sink is None else AuditLog(sink)
