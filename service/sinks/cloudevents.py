"""Answered requests as CloudEvents over HTTP, in the format of KServe's payload logger.

KServe's logger (kserve/kserve `pkg/logger`) POSTs two events per request in binary
content mode: `org.kubeflow.serving.inference.request` with the request body and
`org.kubeflow.serving.inference.response` with the answer, sharing `ce-id`, with
the extension attributes `inferenceservicename`, `namespace`, `component`,
`endpoint`, `metadata` and `recordedtime`. Receivers built for it (Knative
brokers, Kafka bridges, KServe's message dumper) take these unmodified; see
docs/payload-sink.md for what differs.

The request listener (`offer`) runs on the event loop, so it only puts the
record in a bounded queue, or drops and counts it when the queue is full. A
sender thread with its own event loop encodes the events and POSTs them over
kept-alive connections (`HttpPoster`), at most `concurrency` at a time, taking at
most `cpu_share` of the CPU while the app serves (`CpuBudget`): a sink that cannot
keep up drops events, it never slows predictions down by more than its share.
Delivery is at most once: an event that the receiver does not take is counted
as failed, never retried (only a kept-alive connection found closed is replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit, urlunsplit

from tabserve.service.core.dataplane import Served
from tabserve.service.sinks.budget import CpuBudget
from tabserve.service.sinks.http import HttpPoster
from tabserve.service.sinks.metrics import (
    SINK_DROP_REASONS,
    SINK_EVENTS,
    SINK_FAILURE_REASONS,
    SinkMetrics,
)
from tabserve.service.sinks.payloads import PayloadEncoder
from tabserve.service.sinks.settings import SinkSettings
from tabserve.service.sinks.throttle import ThrottledLog

log = logging.getLogger("tabserve.sink")

EVENT_TYPES = {
    "request": "org.kubeflow.serving.inference.request",
    "response": "org.kubeflow.serving.inference.response",
}
POLL_SECONDS = 0.02  # how often an idle sender looks at its queue
_PLAIN = re.compile(r"[!#-$&-~]*")  # printable ASCII but `"` and `%`: sent as it is
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
CANCEL_WAIT_SECONDS = 2.0  # after the drain period: time to cancel what is in flight


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """What the sink needs of the settings."""

    url: str
    events: tuple[str, ...]
    queue_size: int
    timeout: float
    concurrency: int
    cpu_share: float
    drain: float
    log_interval: float
    source: str
    namespace: str
    component: str
    endpoint: str
    redact: frozenset[str]

    @classmethod
    def from_settings(
        cls, sink: SinkSettings, *, port: int, redact: Iterable[str]
    ) -> SinkConfig | None:
        """The sink's configuration, or None when no `sink_url` is set."""
        if sink.url is None:
            return None
        return cls(
            url=str(sink.url),
            events=SINK_EVENTS if sink.events == "all" else (sink.events,),
            queue_size=sink.queue_size,
            timeout=sink.timeout_seconds,
            concurrency=sink.concurrency,
            cpu_share=sink.cpu_share,
            drain=sink.drain_seconds,
            log_interval=sink.log_interval_seconds,
            source=sink.source or f"http://localhost:{port}/",
            namespace=sink.namespace,
            component=sink.component,
            endpoint=sink.endpoint,
            redact=frozenset(redact),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent ready to POST: its kind (request/response), headers and body."""

    kind: str
    headers: dict[str, str]
    body: bytes


class CloudEventSink:
    """A bounded queue of answered requests and the thread that sends them as CloudEvents."""

    def __init__(self, config: SinkConfig, metrics: SinkMetrics) -> None:
        self.config = config
        self._queue: queue.Queue[Served] = queue.Queue(config.queue_size)
        self._encoder = PayloadEncoder(config.redact)
        self._poster = HttpPoster(config.url, config.timeout, config.concurrency)
        self._shown_url = _without_credentials(config.url)
        self._log = ThrottledLog(log, config.log_interval)
        self._sent = {e: metrics.sent.labels(e) for e in SINK_EVENTS}
        self._dropped = {
            (e, r): metrics.dropped.labels(e, r) for e in SINK_EVENTS for r in SINK_DROP_REASONS
        }
        self._failed = {
            (e, r): metrics.failed.labels(e, r) for e in SINK_EVENTS for r in SINK_FAILURE_REASONS
        }
        self._static_headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-source": header_value(config.source),
            "ce-namespace": header_value(config.namespace),
            "ce-component": header_value(config.component),
            "ce-endpoint": header_value(config.endpoint),
            "ce-metadata": "{}",
        }
        self._closing = threading.Event()
        self._abandoned = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the serving side ---------------------------------------------------------------

    def offer(self, served: Served) -> None:
        """The request listener: queue `served` in O(1), or drop and count it when full."""
        try:
            self._queue.put_nowait(served)
        except queue.Full:
            for kind in self.config.events:
                self._dropped[kind, "queue_full"].inc()
            self._log.warning(
                "queue_full",
                f"payload sink: queue full ({self.config.queue_size} requests waiting for "
                f"{self._shown_url}); dropping events",
            )

    def start(self) -> None:
        """Start the sender thread (in the serving process, after any fork)."""
        self._thread = threading.Thread(target=self._run, name="tabserve-sink", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Send what is queued, waiting at most the drain period; drop and count the rest.

        Blocks the calling thread; stop offering before calling it.
        """
        thread = self._thread
        if thread is None:
            return
        self._closing.set()
        thread.join(self.config.drain)
        if not thread.is_alive():
            return
        self._abandoned.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, so nothing is in flight
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel_in_flight)
        thread.join(CANCEL_WAIT_SECONDS)

    # --- the sender thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # a bug here must not go unseen, nor take the process down
            log.exception("payload sink stopped")

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        poster = self._poster
        slots = asyncio.Semaphore(self.config.concurrency)
        budget = CpuBudget(self.config.cpu_share)
        try:
            while not self._abandoned.is_set():
                try:
                    served = self._queue.get_nowait()
                except queue.Empty:
                    if self._closing.is_set():
                        break
                    # Polled, not waited for: a blocking get would wake this thread on
                    # every request the serving loop answers.
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                for event in self._events(served):
                    await slots.acquire()
                    if self._abandoned.is_set():
                        slots.release()
                        self._dropped[event.kind, "shutdown"].inc()
                        continue
                    task = loop.create_task(self._send(poster, event))
                    self._tasks.add(task)
                    task.add_done_callback(lambda done: self._finished(done, slots))
                if not self._closing.is_set():  # once serving has stopped, drain at full speed
                    pause = budget.overdraft()
                    if pause > 0:
                        await asyncio.sleep(pause)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            poster.close()
        self._drop_queued()

    def _events(self, served: Served) -> list[Event]:
        """The record's events, encoded here, off the serving loop."""
        events = []
        request_id = served.request_id or str(uuid.uuid4())
        for kind in self.config.events:
            try:
                if kind == "request":
                    body, occurred = self._encoder.request(served), served.received
                else:
                    body = self._encoder.response(served)
                    occurred = served.received + served.seconds
            except Exception:
                self._dropped[kind, "error"].inc()
                self._log.warning(
                    "error",
                    f"payload sink: cannot encode the {kind} event of {request_id}",
                    exc_info=True,
                )
                continue
            headers = {
                **self._static_headers,
                "ce-id": header_value(request_id),
                "ce-type": EVENT_TYPES[kind],
                "ce-time": _rfc3339(occurred),
                "ce-recordedtime": _rfc3339(time.time()),
                "ce-inferenceservicename": header_value(served.model.name),
            }
            events.append(Event(kind, headers, body))
        return events

    async def _send(self, poster: HttpPoster, event: Event) -> None:
        try:
            status = await poster.post(event.headers, event.body)
        except asyncio.CancelledError:
            self._dropped[event.kind, "shutdown"].inc()
            raise
        except TimeoutError:
            self._fail(event, "timeout", f"did not answer within {self.config.timeout} s")
        except Exception as exc:  # OSError mostly; whatever it is, this event is lost
            self._fail(event, "connection", f"cannot be reached ({exc!r})")
        else:
            if 200 <= status < 300:
                self._sent[event.kind].inc()
            else:
                self._fail(event, "status", f"answered {status}")

    def _fail(self, event: Event, reason: str, why: str) -> None:
        self._failed[event.kind, reason].inc()
        self._log.warning(
            reason, f"payload sink: {self._shown_url} {why}; the event is lost (at most once)"
        )

    def _finished(self, task: asyncio.Task[None], slots: asyncio.Semaphore) -> None:
        self._tasks.discard(task)
        slots.release()

    def _cancel_in_flight(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _drop_queued(self) -> None:
        """What the drain period left in the queue (nothing after a complete drain)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
            for kind in self.config.events:
                self._dropped[kind, "shutdown"].inc()


def header_value(value: str) -> str:
    """An attribute as a `ce-*` header value, percent-encoded as the CloudEvents HTTP binding
    says: space, `"`, `%` and everything outside printable ASCII (request ids and model
    names never have them; anything else arrives intact all the same)."""
    if _PLAIN.fullmatch(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


def _without_credentials(url: str) -> str:
    """`url` fit for a log line: no user or password."""
    parts = urlsplit(url)
    if parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _rfc3339(seconds: float) -> str:
    """A `time.time()` value as RFC 3339 in UTC with microseconds (`...T12:00:00.000001Z`)."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")
