"""The versioned feature store (seed 16–17): CSV snapshots versioned with DVC under ``features/``."""

from driftloop.features.store import FeatureStore, feature_store_for

__all__ = ["FeatureStore", "feature_store_for"]
