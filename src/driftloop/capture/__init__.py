"""Capture: every prediction and label, crash-safe, landed on the object store, compacted into Parquet."""

from driftloop.capture.landing import compact, read_captures
from driftloop.capture.parquet import FEEDBACK_SCHEMA, PREDICTION_SCHEMA, REJECTION_SCHEMA
from driftloop.capture.records import CaptureRecord, Feedback, Prediction, Rejection, RequestBatch
from driftloop.capture.store import CaptureStats, CaptureStore

__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "REJECTION_SCHEMA",
    "CaptureRecord",
    "CaptureStats",
    "CaptureStore",
    "Feedback",
    "Prediction",
    "Rejection",
    "RequestBatch",
    "compact",
    "read_captures",
]
