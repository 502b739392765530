"""Index predictions by time alone: retention by age deletes across every model.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """The (model, time) index cannot serve `time < cutoff` without a model."""
    op.create_index("ix_predictions_time", "predictions", ["time"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_predictions_time", table_name="predictions")
