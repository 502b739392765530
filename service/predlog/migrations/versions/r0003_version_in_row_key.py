"""A logged row is one version's prediction: the version joins the unique key.

A shadow rollout's challenger predicts the rows the champion answered, under the same
request id; both predictions are logged, so quality per version compares the two on
the same ground truth (which stays keyed by model, request id and row).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """(model, request id, row) -> (model, request id, row, version)."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint("uq_predictions_request_row", type_="unique")
        batch.create_unique_constraint(
            "uq_predictions_version_request_row", ["model", "request_id", "row_index", "version"]
        )


def downgrade() -> None:
    """Back to one row per (model, request id, row): shadow rows are deleted first."""
    op.execute(
        "DELETE FROM predictions WHERE id NOT IN "
        "(SELECT MIN(id) FROM predictions GROUP BY model, request_id, row_index)"
    )
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint("uq_predictions_version_request_row", type_="unique")
        batch.create_unique_constraint(
            "uq_predictions_request_row", ["model", "request_id", "row_index"]
        )
