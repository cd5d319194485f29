"""The audit trail: one append-only record per answer and per refused call.

Servicers say what they know about the call they are answering with ``annotate(...)``
(content hash, biomarker model, expert task and version, OOD flag); the servers' interceptors
add request id, time, caller and status and write the record to the configured sink. No PHI
and no DICOM values ever go in a record.
"""

from lus.audit.context import annotate, current_annotations

__all__ = ["annotate", "current_annotations"]
