"""One audit record: who asked which service what, about which content, answered by which models,
and with which status.

The same JSON object is one line of the JSON-lines file and the ``record`` field of a Redis stream
entry, so one reader serves both sinks. Only identifiers go in: hashes of content, model and
expert versions, the caller's team or certificate, never a token, a file name, a DICOM value or
a pixel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from lus.audit.context import AUDIT_FIELDS

FORMAT_VERSION = 1
"""``"v"`` of every serialised record; bumped when a field changes meaning (not when one is
added: readers ignore keys they do not know)."""

MAX_MESSAGE_CHARS = 300
"""Refusal messages are cut here: they name what to change, which never needs more, and a bound
keeps a record (and its log line) small whatever a message was built from."""

MAX_VALUE_CHARS = 200
"""Annotated strings are identifiers (hashes, versions, task names); anything longer is cut."""

MAX_LIST_ITEMS = 64
"""A batch may note one value per item; beyond this the list is cut and ``items`` says how many."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Made once: ``json.dumps`` with any option builds a new encoder per call (a µs each)."""

Scalar = str | int | float | bool | None
AuditValue = Scalar | tuple[Scalar, ...]
"""What an annotated field holds once normalised: a JSON scalar, or a tuple of them (a batch)."""


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (an ellipsis marks a cut)."""
    one_line = text if text.isprintable() else " ".join(text.split())  # newlines, tabs, ...
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


_PLAIN = frozenset({type(None), bool, int, float})


def _scalar(value: Any) -> Scalar:
    if type(value) in _PLAIN:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return bounded(value, MAX_VALUE_CHARS)
    if isinstance(value, bool | int | float):  # subclasses (an IntEnum): plain JSON values
        return value
    return bounded(str(value), MAX_VALUE_CHARS)


def normalise(value: Any) -> AuditValue:
    """A JSON-safe, bounded form of an annotated value: scalars stay, strings are cut to
    ``MAX_VALUE_CHARS``, numpy values become Python ones, sequences and sets tuples of
    scalars, anything else its ``str``."""
    kind = type(value)
    if kind in _PLAIN:  # the common cases first: this runs for every annotation of every call
        return value  # type: ignore[no-any-return]
    if kind is str:
        return bounded(value, MAX_VALUE_CHARS)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # a numpy scalar or array: its Python value(s)
        value = tolist()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        return tuple(_scalar(item) for item in items[:MAX_LIST_ITEMS])
    return _scalar(value)


_last_second: list[tuple[int, str]] = [(-1, "")]


def iso_time(epoch_s: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-11-26T00:40:47.123+00:00``: as
    ``datetime.isoformat(timespec="milliseconds")``, at a third of its cost (the date and time
    of the current second are formatted once)."""
    second = int(epoch_s // 1)
    micros = round((epoch_s - second) * 1e6)  # rounded to µs first, as datetime does
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached_second, prefix = _last_second[0]
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[0] = (second, prefix)  # one tuple: another thread sees old or new, whole
    return f"{prefix}.{micros // 1000:03d}+00:00"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What one answered or refused call leaves behind.

    The first block is filled by the server's interceptor; the second is what the servicer
    noted with ``lus.audit.annotate`` (``None``: not noted, e.g. a call refused before the
    servicer knew it).
    """

    request_id: str
    """The call's ``x-request-id`` (the caller's, or the one the server made and echoed)."""
    time: str
    """When the call arrived: UTC ISO 8601 with milliseconds."""
    service: str
    """Full gRPC service name, e.g. ``lus.expert.v1.ExpertService``."""
    method: str
    """Method name, e.g. ``Predict``."""
    caller: str
    """``team:<name>`` (admin port, from the bearer token; never the token itself),
    ``cert:CN=<cn>;sha256=<fingerprint>`` (mutual TLS), or ``""`` (anonymous)."""
    status: str
    """Final gRPC status code name: ``OK``, ``INVALID_ARGUMENT``, ``CANCELLED``, ..."""
    message: str = ""
    """The status message of a refused call, one line, at most ``MAX_MESSAGE_CHARS``; ``""``
    when OK. Messages are written to name what to change and echo no input values."""
    duration_ms: float = 0.0
    """Handling time in the server, milliseconds."""
    replica: str = ""
    """Host name of the process that answered (the pod, in a cluster)."""

    content_sha256: AuditValue = None
    """sha256 (hex) of the uploaded bytes (biomarker tier)."""
    pixel_hash: AuditValue = None
    """Hash of the decoded frames (biomarker tier), or the ``video_hash`` a prediction used."""
    biomarker_model: AuditValue = None
    """Version of the biomarker model that made (or whose vector was given to) the answer."""
    task: AuditValue = None
    """Expert task(s) asked."""
    expert_version: AuditValue = None
    """Expert version(s) that answered."""
    out_of_distribution: AuditValue = None
    """Whether the vector(s) lay outside the expert's training distribution."""
    cached: AuditValue = None
    """Whether the vector came from the feature store rather than the model."""
    items: AuditValue = None
    """Number of items in a batch call."""

    def to_json(self) -> str:
        """One line of JSON (no newline), keys in field order, ``"v"`` first."""
        document: dict[str, Any] = {"v": FORMAT_VERSION}
        for name in FIELD_NAMES:
            document[name] = getattr(self, name)
        return _ENCODER.encode(document)

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        """Parse one serialised record; keys this version does not know are ignored.

        Raises:
            ValueError: Not a JSON object with the required fields.
        """
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("an audit record is a JSON object")
        known = {name: document[name] for name in FIELD_NAMES if name in document}
        for name in ANNOTATED_FIELDS:
            if name in known:
                known[name] = normalise(known[name])
        try:
            return cls(**known)
        except TypeError as err:  # a required field is missing
            raise ValueError(f"not an audit record: {err}") from None

    @classmethod
    def of_call(
        cls,
        *,
        request_id: str,
        started_s: float,
        duration_s: float,
        full_method: str,
        caller: str,
        status: str,
        message: str = "",
        replica: str = "",
        annotations: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """A record from what an interceptor knows (``full_method``: ``/package.Service/Method``)
        and what the servicer annotated (unknown names are dropped, values normalised): the
        record ``encode_call`` writes for the same arguments."""
        call = (request_id, started_s, duration_s, full_method, caller, status, message)
        return cls.from_json(encode_call((*call, annotations), replica))


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AuditRecord))
ANNOTATED_FIELDS: frozenset[str] = frozenset(FIELD_NAMES) & AUDIT_FIELDS
"""The fields a servicer fills through ``annotate``; a unit test keeps them equal to
``AUDIT_FIELDS``, so a field allowed there always has a place here."""

_NOT_NOTED: dict[str, Any] = dict.fromkeys(name for name in FIELD_NAMES if name in AUDIT_FIELDS)


CallFacts = tuple[str, float, float, str, str, str, str, "dict[str, Any] | None"]
"""What an interceptor hands over per call: (request id, arrival time, seconds taken,
``/package.Service/Method``, caller, status name, message, annotations)."""


def encode_call(call: CallFacts, replica: str) -> str:
    """The JSON line of ``AuditRecord.of_call`` for the same facts, made without the record
    object: the audit writer thread runs this once per call, and skipping the dataclass halves
    its cost (a unit test keeps the two identical)."""
    request_id, started_s, duration_s, full_method, caller, status, message, annotations = call
    service, _, method = full_method.lstrip("/").rpartition("/")
    document: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "request_id": request_id,
        "time": iso_time(started_s),
        "service": service,
        "method": method,
        "caller": bounded(caller, MAX_VALUE_CHARS),
        "status": status,
        "message": bounded(message) if message else "",
        "duration_ms": round(duration_s * 1000.0, 3),
        "replica": replica,
        **_NOT_NOTED,
    }
    if annotations:
        for name, value in annotations.items():
            if name in _NOT_NOTED:
                document[name] = normalise(value)
    return _ENCODER.encode(document)
