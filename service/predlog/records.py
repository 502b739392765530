"""What the prediction log holds and hands back: plain, typed records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Label = str | int | float
"""A class label (str or int) or a regression value."""


@dataclass(frozen=True, slots=True)
class LoggedRow:
    """One predicted row, as the writer stores it."""

    model: str
    version: int
    request_id: str
    row: int
    time: float
    """When the request arrived, UTC epoch seconds."""
    latency_seconds: float
    inputs: dict[str, Any]
    """Feature name -> value; None for a redacted feature or a missing value."""
    prediction: Label
    probabilities: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """A stored prediction with its ground truth, when some arrived."""

    id: int
    row: LoggedRow
    truth: Label | None = None
    feedback_time: float | None = None


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """A logged prediction joined with its ground truth: one training example."""

    model: str
    version: int
    request_id: str
    row: int
    time: float
    """When the prediction was made, UTC epoch seconds."""
    inputs: dict[str, Any]
    prediction: Label
    truth: Label
    feedback_time: float


@dataclass(frozen=True, slots=True)
class Truth:
    """Ground truth for one logged row: `row` is the row's index in its request."""

    request_id: str
    row: int
    truth: Label


class Outcome(StrEnum):
    """What became of one ground-truth item."""

    ACCEPTED = "accepted"
    UNKNOWN_REQUEST = "unknown_request"
    DUPLICATE = "duplicate"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Expired:
    """Rows retention deleted: predictions by age and by size, and feedback rows."""

    by_age: int = 0
    by_size: int = 0
    feedback: int = 0
