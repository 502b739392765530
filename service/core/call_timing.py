"""Where one request's time went inside the core: its wait in the queue and its model call.

`batching.TimedBatcher` answers with a `TimedPrediction` carrying a `CallTiming`, so
whoever watches answered requests (a request listener of the data plane) can tell
the queue from the model call without the core knowing what it is used for: tracing
turns it into spans (`service/tracing/`), and the core imports nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tabserve.service.core.runtime import Prediction


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One request's way through the batcher, on the monotonic clock (`time.monotonic()`)."""

    queued: float
    """When the request joined its model's queue."""
    started: float
    """When the model call that took it began, on an inference thread."""
    ended: float
    """When that call returned."""
    rows: int
    """Rows in the call: this request's and those it was coalesced with."""
    requests: int
    """Requests in the call (1: it ran alone)."""


@dataclass(frozen=True, slots=True)
class TimedPrediction(Prediction):
    """A request's prediction, with where its time went."""

    timing: CallTiming = field(kw_only=True)
