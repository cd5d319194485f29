"""How a ``StoredVector`` becomes one JSON document and back, shared by every store backend.

JSON keeps the stored entries readable by any tool and never runs code on load (no pickle).
float32 values survive the round trip exactly: a float32 widened to a Python float prints and
parses back to the same double.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lus.feature_store.base import StoredVector

FORMAT = 1
"""Version of the stored document layout; bump it when fields change meaning."""


def validate(item: StoredVector) -> None:
    """Refuse entries a reader could not use: empty keys, ragged clips, NaN or infinite values.

    Raises:
        ValueError: with the field that is wrong.
    """
    if not item.pixel_hash or not item.model_version or not item.schema_id:
        raise ValueError("a stored vector needs pixel_hash, model_version and schema_id")
    if not item.vector:
        raise ValueError("a stored vector needs at least one value")
    if any(len(clip) != len(item.vector) for clip in item.clip_vectors):
        raise ValueError(f"every clip vector must have {len(item.vector)} values")
    values = [*item.vector, *(v for clip in item.clip_vectors for v in clip)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("stored vectors must be finite (no NaN or infinity)")


def encode(item: StoredVector) -> str:
    """One JSON document; only the fields of ``StoredVector`` (nothing patient-identifying)."""
    validate(item)
    return json.dumps(
        {
            "format": FORMAT,
            "pixel_hash": item.pixel_hash,
            "model_version": item.model_version,
            "schema_id": item.schema_id,
            "vector": list(item.vector),
            "clip_vectors": [list(clip) for clip in item.clip_vectors],
            "created_at": item.created_at,
            "sop_instance_uid": item.sop_instance_uid,
        },
        separators=(",", ":"),
    )


def decode(text: str | bytes) -> StoredVector:
    """The entry written by ``encode``.

    Raises:
        ValueError: the document is not a stored vector of a known format.
    """
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"stored vector has format {data.get('format')!r}; expected {FORMAT}")
    return StoredVector(
        pixel_hash=str(data["pixel_hash"]),
        model_version=str(data["model_version"]),
        schema_id=str(data["schema_id"]),
        vector=tuple(float(v) for v in data["vector"]),
        clip_vectors=tuple(tuple(float(v) for v in clip) for clip in data["clip_vectors"]),
        created_at=str(data["created_at"]),
        sop_instance_uid=data.get("sop_instance_uid") or None,
    )
