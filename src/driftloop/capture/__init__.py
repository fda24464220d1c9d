"""Capture: every prediction and feedback label, crash-safe, shipped as partitioned Parquet."""

from driftloop.capture.records import FEEDBACK_SCHEMA, PREDICTION_SCHEMA, REJECTION_SCHEMA, read_captures
from driftloop.capture.store import CaptureStats, CaptureStore

__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "REJECTION_SCHEMA",
    "CaptureStats",
    "CaptureStore",
    "read_captures",
]
