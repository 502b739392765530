"""Prediction-log settings (`TABSERVE_PREDLOG_*` and the feedback and quality limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class PredictionLogSettings(FeatureSettings):
    """The prediction log, ground-truth feedback and live quality (docs/prediction-log.md)."""

    model_config = feature_config("TABSERVE_PREDLOG_")

    mode: Literal["off", "sampled", "all"] = Field(
        default="off",
        description=(
            "Log predicted rows to the prediction log: `all` of them, a `sampled` fraction of "
            "requests (`predlog_sample_fraction`), or none (`off`: no log, and the feedback, "
            "quality and predictions routes answer 409)."
        ),
    )
    sample_fraction: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="In `sampled` mode, the fraction of requests whose rows are logged.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        validation_alias="TABSERVE_DATA_DIR",
        description="Folder of the default SQLite prediction log, `predictions.db`.",
    )
    url: SecretStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "SQLAlchemy URL of the prediction log, e.g. "
            "`postgresql+psycopg://user:pass@db/tabserve` for pods sharing one log; unset: "
            "the SQLite file `<data_dir>/predictions.db`. Secret: it may hold a password."
        ),
    )
    queue_rows: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description=(
            "Most rows waiting to be written, per worker process; a request that would pass "
            "it is not logged (counted as dropped, reason `queue_full`), never delayed."
        ),
    )
    durability: Literal["queued", "journal"] = Field(
        default="queued",
        description=(
            "`queued`: rows wait in memory for the writer, so a process that dies loses the "
            "rows it answered in the last `flush_seconds` or so (docs/prediction-log.md); "
            "`journal`: each request's rows are also appended to a file under "
            "`<data_dir>/predlog-journal/` before its answer leaves, and replayed into the log "
            "at the next start-up if the process died first (costs one file write per request)."
        ),
    )
    batch_rows: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows that wake the writer early; it writes everything waiting in one go.",
    )
    flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest a logged row waits before it is written.",
    )
    retention_seconds: float = Field(
        default=30 * 86400,
        ge=0,
        description="Delete logged rows (and their ground truth) older than this; 0 keeps all.",
    )
    max_rows: int = Field(
        default=10_000_000,
        ge=0,
        description="Keep at most this many logged rows, deleting the oldest; 0: no limit.",
    )
    retention_interval_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="How often the writer applies retention (age and size).",
    )
    feedback_max_items: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        validation_alias="TABSERVE_FEEDBACK_MAX_ITEMS",
        description="Most ground-truth items one feedback request may carry (else 413).",
    )
    quality_window_seconds: float = Field(
        default=3600,
        gt=0,
        le=90 * 86400,
        validation_alias="TABSERVE_QUALITY_WINDOW_SECONDS",
        description=(
            "`GET /models/{name}/quality` covers ground truth that arrived within this "
            "window (a request may ask for another window)."
        ),
    )

    @property
    def enabled(self) -> bool:
        """Whether predictions are logged (and feedback, quality and browsing work)."""
        return self.mode != "off"

    @property
    def database_url(self) -> str:
        """`url`, else the SQLite file in `data_dir`."""
        if self.url is not None:
            return self.url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'predictions.db'}"
