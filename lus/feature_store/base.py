"""The feature-store contract: the GPU tier writes vectors, the CPU tier and trainer read them.

Two kinds of entry, both found by content only (never by a DICOM UID: modalities and
anonymisers reuse UIDs, so a UID says nothing about which pixels a file holds):

* ``StoredVector``: a vector keyed by the hash of the decoded pixels and the served model
  version. Pixels, not file bytes: a re-export changes headers but not pixels, and answers the
  same. The expert tier and the trainer read these by pixel hash ("video hash").
* ``StoredContent``: which pixels an uploaded file decodes to, keyed by the sha256 of its bytes
  and by the decoder that read them. It lets the GPU tier answer a file it has seen before
  without decoding it, and a client ask by a hash it computes without any decoder.

Nothing patient-identifying is stored: no UID, no file name, no DICOM attribute.

Each vector also records its owners: the callers (non-secret ids such as ``cert:CN=pacs-a`` or
``team:radiology``; ``""`` for the anonymous caller) that had it computed. A caller is answered
from its own records only, so that a stored vector tells nobody else whether a video was
analysed (``OwnerRecords``, ``owned_vector``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

PIXEL_HASH_ALL_FRAMES = "all-frames"
"""The scheme of :func:`pixel_hash` (every decoded frame): served until issue 12."""

PIXEL_HASH_SAMPLED = "sampled-v1"
"""The scheme of ``lus.video.sampled_pixel_hash`` (the frames the model's clips come from, the
spec's crop): what the biomarker tier serves now."""


def pixel_hash(frames: np.ndarray) -> str:
    """sha256 of decoded 8-bit grayscale frames ``(T, H, W)``, shape included.

    The ``"all-frames"`` scheme, which the biomarker tier served before issue 12; its answers
    now carry the ``"sampled-v1"`` hash (``lus.video.sampled_pixel_hash``). Entries stored under
    this scheme stay valid under their keys.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    digest = hashlib.sha256("x".join(map(str, frames.shape)).encode())
    digest.update(frames.tobytes())
    return digest.hexdigest()


def content_sha256(data: bytes) -> str:
    """sha256 (hex) of a file's bytes exactly as uploaded: what a client sends to Lookup."""
    return hashlib.sha256(data).hexdigest()


RAW_FRAMES_TAG = b"lus-raw-frames\x00"
"""Starts the hashed bytes of raw frames, so that they never share a hash with a file upload."""


def raw_frames_sha256(
    pixels: bytes, *, count: int, height: int, width: int, channels: int, fps: float
) -> str:
    """The content hash of already decoded frames (``RawFrames``): their pixels and shape.

    The frame rate is included because a reply reports it; the pixels alone would let a stored
    reply carry another upload's rate.
    """
    digest = hashlib.sha256(RAW_FRAMES_TAG)
    digest.update(struct.pack("<4If", count, height, width, channels, fps))
    digest.update(pixels)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredVector:
    """One video's biomarker vector as made by one served model.

    The lineage fields (``artifact_sha256``, ``precision``, ``input_check``) are empty or 0 in
    entries written before they existed; readers that need them treat such entries as unknown.
    """

    pixel_hash: str
    model_version: str
    """The served version (``ModelRef.version``): artifact version plus any backend suffix."""
    schema_id: str
    vector: tuple[float, ...]
    clip_vectors: tuple[tuple[float, ...], ...]
    created_at: str
    artifact_sha256: str = ""
    """sha256 of the artifact file whose weights computed the vector ("" = not recorded)."""
    precision: str = ""
    """Numeric precision of the backend: "fp32", "bf16", "int8-dynamic", "int8-static"."""
    input_check: int = 0
    """Revision of the input check (``lus.video.adequacy.REVISION``) the decoded video passed;
    0 = not recorded (written before the check existed)."""
    pixel_hash_scheme: str = ""
    """How ``pixel_hash`` was computed: ``"sampled-v1"`` (``lus.video.sampled_pixel_hash``: the
    frames the model's clips were sampled from, what the biomarker tier serves since issue 12)
    or ``"all-frames"`` (:func:`pixel_hash` of every decoded frame); "" = not recorded, which
    is ``"all-frames"`` (entries written before the field existed)."""


@dataclass(frozen=True)
class StoredContent:
    """What one uploaded file decoded to: its pixel hash and the reply's video summary."""

    content_sha256: str
    decoder: str
    """Identifies the code and libraries that decoded and checked the file: the same bytes may
    decode to other pixels after a decoder change, so an entry holds for its decoder only."""
    pixel_hash: str
    frames: int
    height: int
    width: int
    fps: float
    created_at: str


@runtime_checkable
class FeatureStore(Protocol):
    """Get/put vectors and content entries; implemented over Redis and over a SQLite file."""

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        """The vector for a video hash; the newest across versions when model_version is None."""
        ...

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        ...

    def get_content(self, content_sha256: str, decoder: str) -> StoredContent | None:
        """What a file with these bytes decoded to under ``decoder``, if it was seen."""
        ...

    def put_content(self, item: StoredContent) -> None:
        """Store (or overwrite) the entry for ``(item.content_sha256, item.decoder)``."""
        ...


ANONYMOUS = ""
"""The caller id of a port that identifies nobody; entries from before owners were recorded
belong to it."""


@runtime_checkable
class OwnerRecords(Protocol):
    """Which callers own which vector; both store backends implement it."""

    def add_owner(self, pixel_hash: str, model_version: str, caller: str) -> None:
        """Record ``caller`` as an owner of the vector ``(pixel_hash, model_version)``."""
        ...

    def owns(self, pixel_hash: str, model_version: str, caller: str) -> bool:
        """Whether ``caller`` had the vector ``(pixel_hash, model_version)`` computed."""
        ...


def is_owned_by(store: object, pixel_hash: str, model_version: str, caller: str) -> bool:
    """Whether ``caller`` owns the stored vector ``(pixel_hash, model_version)``.

    Fails closed: False for a store that records no owners. For the expert tier, before it
    answers from (or fits on) a stored vector on a caller's behalf.
    """
    if not isinstance(store, OwnerRecords):
        return False
    return store.owns(pixel_hash, model_version, caller)


def owned_vector(
    store: FeatureStore, pixel_hash: str, model_version: str, caller: str
) -> StoredVector | None:
    """The stored vector for ``(pixel_hash, model_version)`` when ``caller`` owns it, else None:
    the same None whether the vector is absent or another caller's, so the answer tells a
    caller nothing about videos it did not send."""
    if not is_owned_by(store, pixel_hash, model_version, caller):
        return None
    return store.get(pixel_hash, model_version)
