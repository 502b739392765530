"""Child spans of a traced request: its wait in the batcher's queue and its model call.

`CallSpans` is a request listener of the data plane (`DataPlane.request_listeners`):
it runs on the event loop, in the request's own context, as the prediction comes
back. The core (a `TimedBatcher`) tells where the time went (`CallTiming`, on the
monotonic clock); the spans are written after the fact with those times, so nothing
runs on the inference thread and the core knows nothing of OpenTelemetry.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from tabserve.service.core.call_timing import CallTiming, TimedPrediction
from tabserve.service.core.dataplane import Served

MODEL = "tabserve.model.name"
VERSION = "tabserve.model.version"
ROWS = "tabserve.rows"
REQUEST_ID = "tabserve.request_id"


@dataclass(slots=True)
class TracedCall:
    """One traced HTTP request or gRPC call, as its SERVER span's owner keeps it."""

    span: Span
    predicted_ns: int = 0
    """When its prediction came back to its task (epoch ns), 0 before: the answer's
    encoding starts there (`http.TracingMiddleware` writes that span)."""


CURRENT_CALL: ContextVar[TracedCall | None] = ContextVar("tabserve_traced_call", default=None)
"""The traced call of this task, set by the HTTP middleware and the gRPC interceptor.

WebSocket connections set none, so the messages of a stream get no child spans."""


class CallSpans:
    """A request listener that adds the model, version and rows to the request's span,
    and writes its queue and model-call spans under it."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __call__(self, served: Served) -> None:
        call = CURRENT_CALL.get()
        if call is None or not call.span.is_recording():
            return
        model = served.model
        call.span.set_attributes(
            {MODEL: model.name, VERSION: model.version, ROWS: served.features.shape[0]}
        )
        prediction = served.prediction
        if isinstance(prediction, TimedPrediction):
            self._write(call.span, prediction.timing, served)
        call.predicted_ns = time.time_ns()

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
        model = served.model
        predict = self.tracer.start_span(
            "tabserve.predict",
            context,
            SpanKind.INTERNAL,
            attributes={
                **shared,
                MODEL: model.name,
                VERSION: model.version,
                "tabserve.engine": model.runtime.engine,
            },
            start_time=epoch(timing.started),
        )
        predict.end(epoch(timing.ended))
