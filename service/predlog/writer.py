"""The prediction log's writer: a data-plane listener that never makes a prediction wait.

On the event loop, `PredictionLogWriter.__call__` only samples, checks the bound
and appends the `Served` record to a queue (O(1)). A background thread turns
queued records into rows (feature names, redaction, JSON-ready values) and
writes them in batches (one executemany per wake-up), every `flush_seconds` or
as soon as `batch_rows` rows wait. What cannot be logged is counted, by reason.
The same thread applies retention every `retention_interval` seconds.

With a `Journal` (durability `journal`), the rows of each queued request are also
appended to it on the event loop, before the answer leaves; a segment is deleted
once the rows it holds are stored, and start-up replays those of dead processes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tabserve.service.core.dataplane import Served
from tabserve.service.predlog.journal import Journal
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.predlog.records import LoggedRow
from tabserve.service.predlog.store import PredictionStore

log = logging.getLogger("tabserve.predlog")


@dataclass(frozen=True)
class WriterPolicy:
    """How much to log, how much may wait, how often to write, how long to keep."""

    fraction: float = 1.0
    """Fraction of requests logged (1.0: all)."""
    queue_rows: int = 10_000
    batch_rows: int = 1000
    flush_seconds: float = 1.0
    retention_seconds: float = 0.0
    """Delete rows older than this (0: keep all)."""
    max_rows: int = 0
    """Keep at most this many rows (0: no limit)."""
    retention_interval: float = 300.0


class PredictionLogWriter:
    """Queues answered requests and writes their rows from its own thread."""

    def __init__(
        self,
        store: PredictionStore,
        policy: WriterPolicy,
        metrics: PredictionLogMetrics,
        redact: Iterable[str] = (),
        *,
        sample: Callable[[], float] = random.random,
        journal: Journal | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.policy = policy
        self.redact = frozenset(redact)
        self._sample = sample
        self._queue: deque[Served] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._enqueued = 0  # requests accepted into the queue, ever
        self._settled = 0  # of those, requests written or dropped by the writer
        self._closed = False
        self._thread: threading.Thread | None = None
        self._written = metrics.written
        self._dropped = {
            reason: metrics.dropped.labels(reason)
            for reason in ("queue_full", "write_failed", "duplicate", "closed")
        }
        self._failures = metrics.write_failures
        self._queue_gauge = metrics.queue_rows
        self._expired = {r: metrics.expired.labels(r) for r in ("age", "size")}
        self._columns: dict[tuple[str, int], tuple[list[str], list[str] | None, list[int]]] = {}

    # --- the event loop's side: O(1), never blocks on I/O, never raises -------------------

    def __call__(self, served: Served) -> None:
        """Queue one answered request, unless sampled out or the queue is full."""
        if self.policy.fraction < 1.0 and self._sample() >= self.policy.fraction:
            return
        rows = served.features.shape[0]
        with self._lock:
            if self._closed:
                self._dropped["closed"].inc(rows)
                return
            if self._queued_rows + rows > self.policy.queue_rows:
                self._dropped["queue_full"].inc(rows)
                return
            if self.journal is not None:
                self._journal(served)
            self._queue.append(served)
            self._queued_rows += rows
            self._enqueued += 1
            self._queue_gauge.set(self._queued_rows)
            full = self._queued_rows >= self.policy.batch_rows
        if full:
            self._wake.set()

    def _journal(self, served: Served) -> None:
        assert self.journal is not None
        try:
            self.journal.append(self._rows(served))
        except Exception:  # a full disk must not fail the answer: the row is still queued
            log.exception("prediction log: journaling request %s failed", served.request_id)

    # --- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Replay the journals of dead processes (journal mode), then start the writing thread."""
        if self.journal is not None:
            self.journal.open()
            self._replay(self.journal)
        self._thread = threading.Thread(target=self._run, name="tabserve-predlog", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every request queued before this call is written (or dropped).

        Returns False if `timeout` passed first. Call it off the event loop.
        """
        with self._lock:
            target = self._enqueued
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, write what is queued, stop the thread."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("prediction log writer did not finish within %.0f s", timeout)
                return
        if self.journal is not None:
            self.journal.close()

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be written."""
        return self._queued_rows

    @property
    def pending(self) -> bool:
        """Whether some queued request is not written yet (waiting, or being written now)."""
        with self._done:
            return self._enqueued > self._settled

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_retention = time.monotonic()
        while True:
            self._wake.wait(self.policy.flush_seconds)
            self._wake.clear()
            closing = self._closed
            self._write_queued()
            if time.monotonic() >= next_retention:
                self._apply_retention()
                next_retention = time.monotonic() + self.policy.retention_interval
            if closing:
                self._write_queued()  # whatever arrived between the check and the flag
                return

    def _take(self) -> tuple[list[Served], Path | None]:
        with self._lock:
            taken = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            self._queue_gauge.set(0)
            # The sealed segment holds the rows of exactly what was taken.
            sealed = self.journal.seal() if self.journal is not None else None
        return taken, sealed

    def _replay(self, journal: Journal) -> None:
        for segment, rows in journal.orphans():
            for start in range(0, len(rows), self.policy.batch_rows):
                self._write(rows[start : start + self.policy.batch_rows])
            journal.discard(segment)
            log.info("prediction log: replayed %d rows from journal %s", len(rows), segment)

    def _write_queued(self) -> None:
        taken, sealed = self._take()
        if taken:
            self._write_taken(taken)
        if sealed is not None and self.journal is not None:
            self.journal.discard(sealed)  # its rows are stored (or counted as dropped)

    def _write_taken(self, taken: list[Served]) -> None:
        try:
            rows: list[LoggedRow] = []
            for served in taken:
                rows.extend(self._rows(served))
        except Exception:  # a bug here must not stop the thread: count, log, go on
            log.exception("prediction log: preparing %d requests failed", len(taken))
            self._dropped["write_failed"].inc(sum(s.features.shape[0] for s in taken))
            rows = []
        try:
            for start in range(0, len(rows), self.policy.batch_rows):
                self._write(rows[start : start + self.policy.batch_rows])
        finally:
            with self._done:
                self._settled += len(taken)
                self._done.notify_all()

    def _write(self, rows: list[LoggedRow]) -> None:
        try:
            written = self.store.write(rows)
        except Exception:
            log.exception("prediction log: writing %d rows failed; they are dropped", len(rows))
            self._failures.inc()
            self._dropped["write_failed"].inc(len(rows))
            return
        self._written.inc(written)
        if written < len(rows):
            self._dropped["duplicate"].inc(len(rows) - written)

    def _apply_retention(self) -> None:
        policy = self.policy
        if not policy.retention_seconds and not policy.max_rows:
            return
        try:
            expired = self.store.expire(
                older_than=time.time() - policy.retention_seconds
                if policy.retention_seconds
                else None,
                keep_rows=policy.max_rows or None,
            )
        except Exception:
            log.exception("prediction log: retention failed; trying again later")
            return
        if expired.by_age:
            self._expired["age"].inc(expired.by_age)
        if expired.by_size:
            self._expired["size"].inc(expired.by_size)

    def _rows(self, served: Served) -> list[LoggedRow]:
        """The request's rows as stored: named, redacted, JSON-ready."""
        model = served.model
        names, classes, hidden = self._model_columns(served)
        values = served.features.tolist()
        labels = served.prediction.predict.tolist()
        proba = served.prediction.proba
        probabilities = proba.tolist() if proba is not None and classes is not None else None
        rows = []
        for index, (features, label) in enumerate(zip(values, labels, strict=True)):
            # NaN (a missing value) is stored as null: the store's JSON encoder does that.
            inputs = dict(zip(names, features, strict=True))
            for position in hidden:
                inputs[names[position]] = None
            rows.append(
                LoggedRow(
                    model=model.name,
                    version=model.version,
                    request_id=served.request_id,
                    row=index,
                    time=served.received,
                    latency_seconds=served.seconds,
                    inputs=inputs,
                    prediction=label,
                    probabilities=(
                        dict(zip(classes, probabilities[index], strict=True))
                        if probabilities is not None and classes is not None
                        else None
                    ),
                )
            )
        return rows

    def _model_columns(self, served: Served) -> tuple[list[str], list[str] | None, list[int]]:
        """Feature names, class names and redacted positions of the request's model version."""
        key = (served.model.name, served.model.version)
        cached = self._columns.get(key)
        if cached is not None:
            return cached
        manifest = served.model.manifest
        names = manifest.feature_names
        classes = [str(c) for c in manifest.target.classes] if manifest.target.classes else None
        hidden = [i for i, name in enumerate(names) if name in self.redact]
        self._columns[key] = (names, classes, hidden)
        return names, classes, hidden
