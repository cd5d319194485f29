"""The audit trail: one append-only record per answer and per refused call.

Servicers say what they know about the call they are answering with ``annotate(...)``
(content hash, biomarker model, expert task and version, OOD flag); the servers' interceptors
add request id, time, caller and status and write the record to the configured sink. No PHI
and no DICOM values ever go in a record.

    AuditRecord        the record (``record.py``), one JSON line
    AuditLog           non-blocking buffer + writer thread in front of a sink (``log.py``)
    JsonLinesAuditSink append-only file (default); RedisStreamAuditSink: XADD MAXLEN ~ (cluster)
    find_records       look records up by request id or content hash, in either sink
    open_audit_log     the log a tier's settings ask for (``audit_*`` in ServingSettings)
    certificate_caller, bearer_team_caller: who the caller was, never their secret
"""

from lus.audit.callers import (
    CallerHook,
    anonymous_caller,
    bearer_team_caller,
    certificate_caller,
)
from lus.audit.context import AUDIT_FIELDS, annotate, begin_call, current_annotations, end_call
from lus.audit.factory import open_audit_log, open_sink
from lus.audit.log import AuditLog
from lus.audit.reader import find_records
from lus.audit.record import AuditRecord
from lus.audit.sinks import (
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    AuditSink,
    JsonLinesAuditSink,
    NullAuditSink,
    RedisStreamAuditSink,
)

__all__ = [
    "AUDIT_FIELDS",
    "DEFAULT_MAXLEN",
    "DEFAULT_STREAM",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "CallerHook",
    "JsonLinesAuditSink",
    "NullAuditSink",
    "RedisStreamAuditSink",
    "annotate",
    "anonymous_caller",
    "bearer_team_caller",
    "begin_call",
    "certificate_caller",
    "current_annotations",
    "end_call",
    "find_records",
    "open_audit_log",
    "open_sink",
]
