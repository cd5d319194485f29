"""What a servicer knows about the call it answers, gathered for that call's audit record.

A context variable holds one dict per call: the server's audit interceptor opens it before the
handler runs and writes the record after, so servicers need no reference to the audit sink.
Outside an audited call ``annotate`` does nothing, which keeps transport-free code (the
extractor, the predictor, the CLI) free to call it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_CALL: ContextVar[dict[str, Any] | None] = ContextVar("lus_audit_call", default=None)

AUDIT_FIELDS = frozenset(
    {
        "content_sha256",
        "pixel_hash",
        "biomarker_model",
        "task",
        "expert_version",
        "out_of_distribution",
        "cached",
        "items",
    }
)
"""What servicers may note. Identifiers of content and models only: never a file name, a
DICOM value or a patient field."""


def annotate(**fields: Any) -> None:
    """Note facts about the current call for its audit record (later values win).

    Raises:
        ValueError: A field outside ``AUDIT_FIELDS`` (so nothing identifying slips in by name).
    """
    unknown = set(fields) - AUDIT_FIELDS
    if unknown:
        raise ValueError(f"not an audit field: {', '.join(sorted(unknown))}")
    call = _CALL.get()
    if call is not None:
        call.update(fields)


def begin_call() -> object:
    """Open the current call's annotations; pass the token to ``end_call``."""
    return _CALL.set({})


def end_call(token: object) -> dict[str, Any]:
    """Close the current call's annotations and return them."""
    fields = _CALL.get() or {}
    _CALL.reset(token)  # type: ignore[arg-type]
    return fields


def current_annotations() -> dict[str, Any]:
    """A copy of what has been noted for the current call so far ({} outside a call)."""
    return dict(_CALL.get() or {})
