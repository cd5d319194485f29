"""Biomarker vectors stored by decoded-pixel hash and model version, shared by both tiers."""

from lus.feature_store.base import FeatureStore, StoredVector, pixel_hash
from lus.feature_store.factory import StoreKind, open_feature_store
from lus.feature_store.sqlite import SqliteFeatureStore

__all__ = [
    "FeatureStore",
    "SqliteFeatureStore",
    "StoreKind",
    "StoredVector",
    "open_feature_store",
    "pixel_hash",
]
