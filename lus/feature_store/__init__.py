"""Biomarker vectors stored by decoded-pixel hash and model version, shared by both tiers."""

from lus.feature_store.base import FeatureStore, StoredVector, pixel_hash

__all__ = ["FeatureStore", "StoredVector", "pixel_hash"]
