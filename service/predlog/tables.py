"""The prediction log's tables (SQLAlchemy Core): what the migrations create, in code.

Times are UTC epoch seconds (a float): one unambiguous type on SQLite and
PostgreSQL alike, cheap to compare for windows, retention and paging.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# SQLite only auto-numbers an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")
Document = JSON().with_variant(JSONB(), "postgresql")

predictions = Table(
    "predictions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("time", Float, nullable=False, doc="When the request arrived (epoch seconds)."),
    Column("latency_seconds", Float, nullable=False),
    Column("inputs", Document, nullable=False, doc="Feature name -> value (null: redacted)."),
    Column("prediction", Document, nullable=False),
    Column("probabilities", Document, nullable=True, doc="Class -> probability."),
    # A shadow rollout logs its challenger's prediction of the same row: one per version.
    UniqueConstraint(
        "model", "request_id", "row_index", "version", name="uq_predictions_version_request_row"
    ),
    Index("ix_predictions_model_time", "model", "time"),
    Index("ix_predictions_time", "time"),  # retention by age, across models
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("truth", Document, nullable=False),
    Column("time", Float, nullable=False, doc="When the ground truth arrived (epoch seconds)."),
    UniqueConstraint("model", "request_id", "row_index", name="uq_feedback_request_row"),
    Index("ix_feedback_model_time", "model", "time"),
)
