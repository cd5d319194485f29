"""How stored entries become JSON documents and back, shared by every store backend.

JSON keeps the stored entries readable by any tool and never runs code on load (no pickle).
float32 values survive the round trip exactly: a float32 widened to a Python float prints and
parses back to the same double.

Vector documents have had two layouts:

* format 1 (before issue 10): the vector fields plus ``sop_instance_uid``. Still read, the UID
  ignored; such entries carry no lineage (``artifact_sha256 == ""``, ``input_check == 0``).
* format 2: no UID; the lineage of the model and the revision of the input check. Since issue
  12 also ``pixel_hash_scheme`` (how the key was computed); a document without it was written
  under the every-frame scheme, and readers of format 2 that predate it ignore it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lus.feature_store.base import StoredContent, StoredVector

FORMAT = 2
"""Layout of the vector documents written now; bump it when fields change meaning."""
READABLE_FORMATS = (1, 2)
"""Vector layouts still read: format 1 entries stay usable by pixel hash."""
CONTENT_FORMAT = 1
"""Layout of the content documents."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


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
            "artifact_sha256": item.artifact_sha256,
            "precision": item.precision,
            "input_check": item.input_check,
            "pixel_hash_scheme": item.pixel_hash_scheme,
        },
        separators=(",", ":"),
    )


def decode(text: str | bytes) -> StoredVector:
    """The entry written by ``encode`` (or by format 1, whose UID is dropped).

    Raises:
        ValueError: the document is not a stored vector of a known format.
    """
    data: dict[str, Any] = json.loads(text)
    if data.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"stored vector has format {data.get('format')!r}; expected one of {READABLE_FORMATS}"
        )
    return StoredVector(
        pixel_hash=str(data["pixel_hash"]),
        model_version=str(data["model_version"]),
        schema_id=str(data["schema_id"]),
        vector=tuple(float(v) for v in data["vector"]),
        clip_vectors=tuple(tuple(float(v) for v in clip) for clip in data["clip_vectors"]),
        created_at=str(data["created_at"]),
        artifact_sha256=str(data.get("artifact_sha256") or ""),
        precision=str(data.get("precision") or ""),
        input_check=int(data.get("input_check") or 0),
        pixel_hash_scheme=str(data.get("pixel_hash_scheme") or ""),
    )


def validate_content(item: StoredContent) -> None:
    """Refuse content entries that could map a file to the wrong pixels or report nonsense.

    Raises:
        ValueError: with the field that is wrong.
    """
    if not _SHA256.fullmatch(item.content_sha256) or not _SHA256.fullmatch(item.pixel_hash):
        raise ValueError("a content entry needs content_sha256 and pixel_hash as 64 hex digits")
    if not item.decoder:
        raise ValueError("a content entry needs the decoder that read the file")
    if min(item.frames, item.height, item.width) < 1:
        raise ValueError("a content entry needs frames, height and width of at least 1")
    if not math.isfinite(item.fps) or item.fps < 0:
        raise ValueError("a content entry's fps must be finite and not negative")


def encode_content(item: StoredContent) -> str:
    """One JSON document for a content entry."""
    validate_content(item)
    return json.dumps(
        {
            "format": CONTENT_FORMAT,
            "content_sha256": item.content_sha256,
            "decoder": item.decoder,
            "pixel_hash": item.pixel_hash,
            "frames": item.frames,
            "height": item.height,
            "width": item.width,
            "fps": item.fps,
            "created_at": item.created_at,
        },
        separators=(",", ":"),
    )


def decode_content(text: str | bytes) -> StoredContent:
    """The entry written by ``encode_content``.

    Raises:
        ValueError: the document is not a content entry of a known format.
    """
    data: dict[str, Any] = json.loads(text)
    if data.get("format") != CONTENT_FORMAT:
        raise ValueError(
            f"stored content entry has format {data.get('format')!r}; expected {CONTENT_FORMAT}"
        )
    return StoredContent(
        content_sha256=str(data["content_sha256"]),
        decoder=str(data["decoder"]),
        pixel_hash=str(data["pixel_hash"]),
        frames=int(data["frames"]),
        height=int(data["height"]),
        width=int(data["width"]),
        fps=float(data["fps"]),
        created_at=str(data["created_at"]),
    )
