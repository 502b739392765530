"""Child spans of a traced request: its wait in the batcher's queue and its model call.

`CallSpans` is a request listener of the data plane (`DataPlane.request_listeners`):
it runs on the event loop, in the request's own context, as the prediction comes
back. The core (a `TimedBatcher`) tells where the time went (`CallTiming`, on the
monotonic clock); the spans are written after the fact with those times, so nothing
runs on the inference thread and the core knows nothing of OpenTelemetry.

The answer's encoding gets no span of its own: it is the SERVER span's time after the
model call's span ends, plain in any trace view, and a third child span per request
cost as much again as the other two (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from tabserve.service.core.call_timing import CallTiming, TimedPrediction
from tabserve.service.core.dataplane import Served

MODEL = "tabserve.model.name"
VERSION = "tabserve.model.version"
ROWS = "tabserve.rows"
REQUEST_ID = "tabserve.request_id"


CALL_SPAN: ContextVar[Span | None] = ContextVar("tabserve_call_span", default=None)
"""The SERVER span of this task's HTTP request or gRPC call, set by the HTTP middleware
and the gRPC interceptor: the span the queue and model-call spans go under.

WebSocket connections set none, so the messages of a stream get no child spans."""


class CallSpans:
    """A request listener that adds the model, version and rows to the request's span,
    and writes its queue and model-call spans under it."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __call__(self, served: Served) -> None:
        span = CALL_SPAN.get()
        if span is None or not span.is_recording():
            return
        model = served.model
        span.set_attributes({MODEL: model.name, VERSION: model.version, ROWS: len(served.features)})
        prediction = served.prediction
        if isinstance(prediction, TimedPrediction):
            self._write(span, prediction.timing, served)

    def _write(self, parent: Span, timing: CallTiming, served: Served) -> None:
        """The queue and call spans, their monotonic times moved onto the epoch clock."""
        offset = time.time_ns() - time.monotonic_ns()

        def epoch(monotonic: float) -> int:
            return int(monotonic * 1e9) + offset

        context = trace.set_span_in_context(parent)
        shared = {"tabserve.call.rows": timing.rows, "tabserve.call.requests": timing.requests}
        queue = self.tracer.start_span(
            "tabserve.queue",
            context,
            SpanKind.INTERNAL,
            attributes=shared,
            start_time=epoch(timing.queued),
        )
        queue.end(epoch(timing.started))
        predict = self.tracer.start_span(
            "tabserve.predict",
            context,
            SpanKind.INTERNAL,
            attributes={**shared, "tabserve.engine": served.model.runtime.engine},
            start_time=epoch(timing.started),
        )
        predict.end(epoch(timing.ended))
