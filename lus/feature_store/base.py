"""The feature-store contract: the GPU tier writes vectors, the CPU tier and trainer read them.

Entries are keyed by a hash of the decoded pixels (not the file bytes: a re-export changes
headers but not pixels) and the model version. Nothing patient-identifying is ever stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


def pixel_hash(frames: np.ndarray) -> str:
    """sha256 of decoded 8-bit grayscale frames ``(T, H, W)``, shape included."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    digest = hashlib.sha256("x".join(map(str, frames.shape)).encode())
    digest.update(frames.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredVector:
    """One video's biomarker vector as made by one model version."""

    pixel_hash: str
    model_version: str
    schema_id: str
    vector: tuple[float, ...]
    clip_vectors: tuple[tuple[float, ...], ...]
    created_at: str
    sop_instance_uid: str | None = None
    """DICOM SOP Instance UID: an identifier of the image object, not of the patient."""


@runtime_checkable
class FeatureStore(Protocol):
    """Get/put vectors; implemented over Redis and over a local SQLite file."""

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        """The vector for a video hash; the newest across versions when model_version is None."""
        ...

    def find_by_sop_instance_uid(
        self, uid: str, model_version: str | None = None
    ) -> StoredVector | None:
        """The vector stored for a DICOM object, if any."""
        ...

    def put(self, item: StoredVector) -> None:
        """Store (or overwrite) the entry for ``(item.pixel_hash, item.model_version)``."""
        ...
