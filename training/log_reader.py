"""The prediction log as training reads it: labelled rows, with only the SQL that needs.

The service writes the log (`tabserve.service.predlog`, whose migrations own the
schema); `train --from-log` reads it here without importing the service. The few
columns read are declared below; `tests/training/test_log_reader.py` checks them
against the service's tables, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, column, create_engine, select, table

DATA_DIR_ENV = "TABSERVE_DATA_DIR"
URL_ENV = "TABSERVE_PREDLOG_URL"

predictions = table(
    "predictions",
    column("id", Integer),
    column("model", String),
    column("version", Integer),
    column("request_id", String),
    column("row_index", Integer),
    column("time", Float),
    column("inputs", JSON),
)
feedback = table(
    "feedback",
    column("model", String),
    column("request_id", String),
    column("row_index", Integer),
    column("truth", JSON),
)


@dataclass(frozen=True)
class LoggedExample:
    """One logged prediction row and the ground truth given for it."""

    inputs: Mapping[str, Any]
    truth: Any
    version: int
    request_id: str
    predicted_at: datetime


def default_log_url(environ: Mapping[str, str] = os.environ) -> str:
    """The log the service writes by default, from the same environment variables.

    `TABSERVE_PREDLOG_URL` if set, else the SQLite file `predictions.db` in
    `TABSERVE_DATA_DIR` (default `data`), as the service's settings resolve it.
    """
    url = environ.get(URL_ENV)
    if url:
        return url
    return f"sqlite:///{Path(environ.get(DATA_DIR_ENV) or 'data') / 'predictions.db'}"


def read_labelled(url: str, model: str) -> list[LoggedExample]:
    """`model`'s logged rows that received ground truth, oldest prediction first.

    A row a shadow rollout's challenger predicted too is logged once per version; it
    is one example, read once (the first logged: the version that answered).
    SQLAlchemy errors (no such table, no connection) propagate for the caller to word.
    """
    query = (
        select(
            predictions.c.inputs,
            feedback.c.truth,
            predictions.c.version,
            predictions.c.request_id,
            predictions.c.row_index,
            predictions.c.time,
        )
        .join(
            feedback,
            (feedback.c.model == predictions.c.model)
            & (feedback.c.request_id == predictions.c.request_id)
            & (feedback.c.row_index == predictions.c.row_index),
        )
        .where(predictions.c.model == model)
        .order_by(predictions.c.time, predictions.c.id)
    )
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            read: dict[tuple[str, int], LoggedExample] = {}
            for row in connection.execute(query):
                read.setdefault(
                    (row.request_id, row.row_index),
                    LoggedExample(
                        row.inputs,
                        row.truth,
                        row.version,
                        row.request_id,
                        datetime.fromtimestamp(row.time, UTC),
                    ),
                )
            return list(read.values())
    finally:
        engine.dispose()
