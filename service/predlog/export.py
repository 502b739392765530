"""Export one model's prediction log to CSV or Parquet (`tabserve log export`).

One line per logged row, oldest first: `log_id, request_id, row, model, version,
time` (ISO 8601 UTC in CSV, a UTC timestamp in Parquet), `latency_seconds`, one
column per feature (its own name; empty when redacted or missing), `prediction`,
`proba_<class>` for classifiers, `truth` and `feedback_time` (empty without
ground truth). CSV streams; Parquet is built in memory, then written at once.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tabserve.service.predlog.records import LoggedPrediction
from tabserve.service.predlog.store import PredictionStore

Format = Literal["csv", "parquet"]
LEADING = ["log_id", "request_id", "row", "model", "version", "time", "latency_seconds"]
TRAILING = ["prediction", "truth", "feedback_time"]


class ExportError(Exception):
    """The log cannot be exported as asked (no log there, no such model, clashing columns)."""


def export(
    store: PredictionStore, model: str, out: Path, fmt: Format, *, with_feedback: bool = False
) -> int:
    """Write `model`'s logged rows to `out`; returns how many rows were written."""
    if not store.has_schema():
        raise ExportError(f"no prediction log at {store.engine.url!r} (no tables there)")
    if store.count(model) == 0:
        raise ExportError(
            f"no predictions of model {model!r} in the log at {store.engine.url!r}; "
            "check the name (models are logged once they have served a prediction)"
        )
    batches = store.scan(model, with_feedback=with_feedback)
    first = next(batches, [])
    columns = _columns(first)
    rows = _flat(first, batches)
    if fmt == "csv":
        return _write_csv(out, columns, rows)
    return _write_parquet(out, columns, rows)


def _columns(sample: list[LoggedPrediction]) -> list[str]:
    features: dict[str, None] = {}
    classes: dict[str, None] = {}
    for logged in sample:
        features.update(dict.fromkeys(logged.row.inputs))
        classes.update(dict.fromkeys(logged.row.probabilities or {}))
    proba = [f"proba_{c}" for c in classes]
    clash = set(features) & set(LEADING + TRAILING + proba)
    if clash:
        raise ExportError(f"feature names clash with export columns: {', '.join(sorted(clash))}")
    return [*LEADING, *features, "prediction", *proba, "truth", "feedback_time"]


def _flat(
    first: list[LoggedPrediction], rest: Iterator[list[LoggedPrediction]]
) -> Iterator[dict[str, Any]]:
    if not first:
        return
    for batch in itertools.chain([first], rest):  # lazily: one batch in memory at a time
        for logged in batch:
            row = logged.row
            yield {
                "log_id": logged.id,
                "request_id": row.request_id,
                "row": row.row,
                "model": row.model,
                "version": row.version,
                "time": datetime.fromtimestamp(row.time, UTC),
                "latency_seconds": row.latency_seconds,
                **row.inputs,
                "prediction": row.prediction,
                **{f"proba_{c}": p for c, p in (row.probabilities or {}).items()},
                "truth": logged.truth,
                "feedback_time": (
                    datetime.fromtimestamp(logged.feedback_time, UTC)
                    if logged.feedback_time is not None
                    else None
                ),
            }


def _write_csv(out: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _text(v) for k, v in row.items()})
            count += 1
    return count


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def _write_parquet(out: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    import pyarrow as pa  # only the Parquet export needs it
    import pyarrow.parquet as pq

    data: dict[str, list[Any]] = {c: [] for c in columns}
    count = 0
    for row in rows:
        for column in columns:
            data[column].append(row.get(column))
        count += 1
    arrays = {}
    for column, values in data.items():
        try:
            arrays[column] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
            arrays[column] = pa.array([None if v is None else str(v) for v in values])
    pq.write_table(pa.table(arrays), out)
    return count
