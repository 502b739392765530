"""Drift settings (`TABSERVE_DRIFT_*`): what `DriftMonitor` counts and reports on."""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class DriftSettings(FeatureSettings):
    """Live inputs and predictions against the training statistics (docs/drift.md)."""

    model_config = feature_config("TABSERVE_DRIFT_")

    enabled: bool = Field(
        default=True,
        description=(
            "Count served rows per bin of each feature's training histogram (and the "
            "predictions per class or target bin) for `GET /models/{name}/drift` and the "
            "`tabserve_drift_*` metrics; off: no counting, and the route answers 409."
        ),
    )
    window_seconds: float = Field(
        default=3600.0,
        ge=1,
        le=7 * 24 * 3600,
        description=(
            "The sliding window `GET /models/{name}/drift` reports on: rows served in about "
            "the last this many seconds (its start is known to within 1/60 of it)."
        ),
    )
    flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "How often the counts buffered per model call go to the Prometheus counters "
            "(also before every scrape and at shutdown). With several workers, a drift "
            "report can miss the other workers' last this many seconds."
        ),
    )
    psi_threshold: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description=(
            "PSI above which `GET /models/{name}/drift` marks a feature as drifting (the "
            "Prometheus alert has its own threshold, 0.2, in its rule)."
        ),
    )
    min_rows: int = Field(
        default=100,
        ge=1,
        description=(
            "Fewest rows in the window before `GET /models/{name}/drift` marks anything as "
            "drifting: a handful of rows gives a large PSI by chance (the alerts want 100 rows "
            "in their hour too). The PSI itself is always reported."
        ),
    )
