"""The prediction log's database: write predicted rows and ground truth, read them back.

Any SQLAlchemy URL works; SQLite files run in WAL mode (readers never wait for
the writer) with a busy timeout, so several processes can share one file.
Writes ignore rows whose (model, request id, row) is already stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Row,
    Select,
    Table,
    and_,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from tabserve.service.predlog.migrate import migrate
from tabserve.service.predlog.records import (
    Expired,
    Label,
    LabelledRow,
    LoggedPrediction,
    LoggedRow,
)
from tabserve.service.predlog.tables import feedback, predictions

SQLITE_BUSY_TIMEOUT_MS = 10_000
_KEYS_PER_QUERY = 500  # (request id, row) pairs per IN clause: well under every driver's limit


class PredictionStore:
    """One database holding the prediction log; thread-safe (a connection per call)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)

    def migrate(self) -> None:
        """Create or upgrade the schema (Alembic, under a lock); safe to call every start."""
        migrate(self.engine)

    def dispose(self) -> None:
        """Close pooled connections (before a fork, and at shutdown)."""
        self.engine.dispose()

    # --- writing --------------------------------------------------------------------

    def write(self, rows: Sequence[LoggedRow]) -> int:
        """Insert predicted rows in one statement; returns how many were new."""
        if not rows:
            return 0
        values = [_prediction_values(r) for r in rows]
        with self.engine.begin() as connection:
            result = connection.execute(
                _insert_ignoring_duplicates(connection, predictions).returning(predictions.c.id),
                values,
            )
            return len(result.all())

    def add_truths(
        self, model: str, truths: Sequence[tuple[str, int, Label]], time: float
    ) -> set[tuple[str, int]]:
        """Store ground truth; returns the (request id, row) keys that were new."""
        if not truths:
            return set()
        values = [
            {"model": model, "request_id": rid, "row_index": row, "truth": truth, "time": time}
            for rid, row, truth in truths
        ]
        with self.engine.begin() as connection:
            result = connection.execute(
                _insert_ignoring_duplicates(connection, feedback).returning(
                    feedback.c.request_id, feedback.c.row_index
                ),
                values,
            )
            return {(rid, row) for rid, row in result.all()}

    # --- reading --------------------------------------------------------------------

    def find(
        self, model: str, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], LoggedPrediction]:
        """Stored predictions of `model` by (request id, row), with any truth already given.

        A row a shadow challenger predicted too is logged once per version; the one
        found is the first logged, the version that answered.
        """
        wanted = sorted(set(keys))
        found: dict[tuple[str, int], LoggedPrediction] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[start : start + _KEYS_PER_QUERY]
                query = _joined().where(
                    predictions.c.model == model,
                    tuple_(predictions.c.request_id, predictions.c.row_index).in_(chunk),
                )
                for record in connection.execute(query.order_by(predictions.c.id)):
                    logged = _logged(record)
                    found.setdefault((logged.row.request_id, logged.row.row), logged)
        return found

    def labelled(
        self, model: str, version: int | None = None, *, since: float | None = None
    ) -> list[LabelledRow]:
        """Logged rows of `model` that have ground truth, oldest prediction first.

        `version` keeps one model version's rows; `since` (epoch seconds) keeps
        ground truth that arrived at or after it.
        """
        query = (
            select(predictions, feedback.c.truth, feedback.c.time.label("feedback_time"))
            .join(feedback, _same_row())
            .where(predictions.c.model == model)
            .order_by(predictions.c.time, predictions.c.id)
        )
        if version is not None:
            query = query.where(predictions.c.version == version)
        if since is not None:
            query = query.where(feedback.c.time >= since)
        with self.engine.connect() as connection:
            return [
                LabelledRow(
                    model=r.model,
                    version=r.version,
                    request_id=r.request_id,
                    row=r.row_index,
                    time=r.time,
                    inputs=r.inputs,
                    prediction=r.prediction,
                    truth=r.truth,
                    feedback_time=r.feedback_time,
                )
                for r in connection.execute(query)
            ]

    def page(
        self,
        model: str,
        *,
        limit: int,
        before: int | None = None,
        since: float | None = None,
        until: float | None = None,
        version: int | None = None,
        with_feedback: bool = False,
    ) -> list[LoggedPrediction]:
        """Up to `limit` logged rows of `model`, newest (highest id) first.

        `before` is the id to continue below (the last id of the previous page);
        `since`/`until` bound the prediction time (since <= time < until).
        """
        query = _joined(inner=with_feedback).where(predictions.c.model == model)
        if before is not None:
            query = query.where(predictions.c.id < before)
        if since is not None:
            query = query.where(predictions.c.time >= since)
        if until is not None:
            query = query.where(predictions.c.time < until)
        if version is not None:
            query = query.where(predictions.c.version == version)
        query = query.order_by(predictions.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [_logged(r) for r in connection.execute(query)]

    def scan(
        self, model: str, *, with_feedback: bool = False, batch_rows: int = 5000
    ) -> Iterator[list[LoggedPrediction]]:
        """Every logged row of `model`, oldest (lowest id) first, in batches."""
        after = 0
        while True:
            query = (
                _joined(inner=with_feedback)
                .where(predictions.c.model == model, predictions.c.id > after)
                .order_by(predictions.c.id)
                .limit(batch_rows)
            )
            with self.engine.connect() as connection:
                batch = [_logged(r) for r in connection.execute(query)]
            if not batch:
                return
            yield batch
            after = batch[-1].id

    def has_schema(self) -> bool:
        """Whether the database holds the log's tables (without creating anything)."""
        with self.engine.connect() as connection:
            return {"predictions", "feedback"} <= set(inspect(connection).get_table_names())

    def count(self, model: str | None = None) -> int:
        """Logged rows, of one model or of all."""
        query = select(func.count()).select_from(predictions)
        if model is not None:
            query = query.where(predictions.c.model == model)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # --- retention ------------------------------------------------------------------

    def expire(self, *, older_than: float | None, keep_rows: int | None) -> Expired:
        """Delete predictions made before `older_than` and all but the newest `keep_rows`.

        Ground truth goes with its prediction, and by the same age.
        """
        by_age = by_size = 0
        with self.engine.begin() as connection:
            if older_than is not None:
                by_age = _deleted(
                    connection, delete(predictions).where(predictions.c.time < older_than)
                )
            if keep_rows is not None:
                cutoff = connection.execute(
                    select(predictions.c.id)
                    .order_by(predictions.c.id.desc())
                    .offset(keep_rows)
                    .limit(1)
                ).scalar()
                if cutoff is not None:
                    by_size = _deleted(
                        connection, delete(predictions).where(predictions.c.id <= cutoff)
                    )
            orphan = ~exists().where(_same_row())
            stale = orphan if older_than is None else or_(orphan, feedback.c.time < older_than)
            dropped = _deleted(connection, delete(feedback).where(stale))
        return Expired(by_age, by_size, dropped)


def _json(value: Any) -> str:
    """orjson: fast, and NaN or infinity (JSON has neither) become null."""
    return orjson.dumps(value).decode()


def _engine(url: str) -> Engine:
    engine = create_engine(url, json_serializer=_json)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
    cursor.close()


def _insert_ignoring_duplicates(connection: Connection, table: Table) -> Insert:
    """INSERT that skips rows whose unique key exists (`ON CONFLICT DO NOTHING`)."""
    name = connection.dialect.name
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise ValueError(f"the prediction log supports SQLite and PostgreSQL, not {name}")


def _same_row() -> Any:
    return and_(
        feedback.c.model == predictions.c.model,
        feedback.c.request_id == predictions.c.request_id,
        feedback.c.row_index == predictions.c.row_index,
    )


def _joined(*, inner: bool = False) -> Select[Any]:
    return select(predictions, feedback.c.truth, feedback.c.time.label("feedback_time")).join(
        feedback, _same_row(), isouter=not inner
    )


def _deleted(connection: Connection, statement: Any) -> int:
    return int(connection.execute(statement).rowcount)


def _prediction_values(row: LoggedRow) -> dict[str, Any]:
    return {
        "model": row.model,
        "version": row.version,
        "request_id": row.request_id,
        "row_index": row.row,
        "time": row.time,
        "latency_seconds": row.latency_seconds,
        "inputs": row.inputs,
        "prediction": row.prediction,
        "probabilities": row.probabilities,
    }


def _logged(record: Row[Any]) -> LoggedPrediction:
    m = record._mapping
    return LoggedPrediction(
        id=m["id"],
        row=LoggedRow(
            model=m["model"],
            version=m["version"],
            request_id=m["request_id"],
            row=m["row_index"],
            time=m["time"],
            latency_seconds=m["latency_seconds"],
            inputs=m["inputs"],
            prediction=m["prediction"],
            probabilities=m["probabilities"],
        ),
        truth=m["truth"],
        feedback_time=m["feedback_time"],
    )
