"""Biomarker vectors stored by decoded-pixel hash and served model version, and which pixels
each uploaded file decoded to (by the sha256 of its bytes); shared by both tiers."""

from lus.feature_store.base import (
    ANONYMOUS,
    PIXEL_HASH_ALL_FRAMES,
    PIXEL_HASH_SAMPLED,
    FeatureStore,
    OwnerRecords,
    StoredContent,
    StoredVector,
    content_sha256,
    is_owned_by,
    owned_vector,
    pixel_hash,
    raw_frames_sha256,
)
from lus.feature_store.factory import StoreKind, open_feature_store
from lus.feature_store.sqlite import SqliteFeatureStore

__all__ = [
    "ANONYMOUS",
    "PIXEL_HASH_ALL_FRAMES",
    "PIXEL_HASH_SAMPLED",
    "FeatureStore",
    "OwnerRecords",
    "SqliteFeatureStore",
    "StoreKind",
    "StoredContent",
    "StoredVector",
    "content_sha256",
    "is_owned_by",
    "open_feature_store",
    "owned_vector",
    "pixel_hash",
    "raw_frames_sha256",
]
