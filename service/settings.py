"""Service settings: one documented object, read from `TABSERVE_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    """Everything an operator can set; `TABSERVE_MODELS_DIR=/srv/models` sets `models_dir`."""

    model_config = SettingsConfigDict(env_prefix="TABSERVE_", extra="ignore", frozen=True)

    models_dir: Path = Field(
        default=Path("models"),
        description="Folder of `<name>/<version>/` artifacts; every complete version is loaded.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(default=1, ge=1, description="Worker processes (`serve --workers`).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level logged."
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain", description="`plain` text lines or one JSON object per line."
    )
    log_probes: bool = Field(
        default=False,
        description="Log requests to health and metrics endpoints too (off: probes are silent).",
    )
    max_rows: int = Field(default=10_000, ge=1, description="Most rows one request may carry.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body, in bytes (else 413)."
    )
    inference_threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="Threads that run predictions, so the event loop never does.",
    )
    reject_out_of_range: bool = Field(
        default=False,
        description=(
            "Refuse numbers outside the training range with 400; off: serve them and count "
            "them per feature in metrics."
        ),
    )
    engine: Literal["auto", "sklearn"] = Field(
        default="auto",
        description=(
            "`auto`: serve each model with its compiled engine (ONNX Runtime or numpy) if it "
            "matches scikit-learn at load, else with scikit-learn; `sklearn`: always scikit-learn."
        ),
    )
    allow_version_mismatch: bool = Field(
        default=False,
        description="Load models pickled by another scikit-learn major.minor (unsafe).",
    )
