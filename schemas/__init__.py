"""Birdwatch event contracts shared with publishers and subscribers."""

from schemas.errors import ErrorCode
from schemas.events import (
    TOP_K,
    ErrorInfo,
    ImageEvent,
    InvalidEventError,
    Prediction,
    PredictionResult,
    parse_event,
)

__all__ = [
    "TOP_K",
    "ErrorCode",
    "ErrorInfo",
    "ImageEvent",
    "InvalidEventError",
    "Prediction",
    "PredictionResult",
    "parse_event",
]
