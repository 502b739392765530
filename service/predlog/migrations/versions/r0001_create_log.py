"""Create the predictions and feedback tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DOC = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    """Both tables, their unique (model, request id, row) keys and time indexes."""
    op.create_table(
        "predictions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("latency_seconds", sa.Float, nullable=False),
        sa.Column("inputs", _DOC, nullable=False),
        sa.Column("prediction", _DOC, nullable=False),
        sa.Column("probabilities", _DOC, nullable=True),
        sa.UniqueConstraint("model", "request_id", "row_index", name="uq_predictions_request_row"),
    )
    op.create_index("ix_predictions_model_time", "predictions", ["model", "time"])
    op.create_table(
        "feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("truth", _DOC, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.UniqueConstraint("model", "request_id", "row_index", name="uq_feedback_request_row"),
    )
    op.create_index("ix_feedback_model_time", "feedback", ["model", "time"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("feedback")
    op.drop_table("predictions")
