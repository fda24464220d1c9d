"""Capture: every prediction and label, crash-safe, landed on the object store, compacted into Parquet."""

from driftloop.capture.landing import compact, read_captures
from driftloop.capture.records import FEEDBACK_SCHEMA, PREDICTION_SCHEMA, REJECTION_SCHEMA
from driftloop.capture.store import CaptureStats, CaptureStore

__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "REJECTION_SCHEMA",
    "CaptureStats",
    "CaptureStore",
    "compact",
    "read_captures",
]
