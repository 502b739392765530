"""Payload-sink settings (`TABSERVE_SINK_*`): every answer as CloudEvents over HTTP."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl

from tabserve.service.core.feature_settings import FeatureSettings, feature_config

_HEADER_SAFE = r"^[!-~]*$"  # printable ASCII: sent as a header as is


class SinkSettings(FeatureSettings):
    """The payload sink, in the format of KServe's payload logger (docs/payload-sink.md)."""

    model_config = feature_config("TABSERVE_SINK_")

    url: HttpUrl | None = Field(
        default=None,
        description=(
            "Where to POST a CloudEvent per answered request (and one per answer), in the "
            "format of KServe's payload logger (docs/payload-sink.md); unset: no sink."
        ),
    )
    events: Literal["request", "response", "all"] = Field(
        default="all",
        description=(
            "Which events to send: the request (its rows as a V2 request), the response (the "
            "V2 answer) or both, sharing the request id (KServe's logger mode)."
        ),
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description=(
            "Answered requests waiting to be sent, per process; when full, new ones are "
            "dropped and counted (predictions are never delayed)."
        ),
    )
    timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Longest wait for the receiver to answer one event; past it, it failed.",
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Events in flight at once, per process (also the most open connections).",
    )
    cpu_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description=(
            "Most of the process's CPU time the sender may take while serving (1: no limit); "
            "what it cannot send within it is dropped and counted, so serving keeps the rest."
        ),
    )
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description=(
            "At shutdown, how long queued events may take to be sent; what is left then is "
            "dropped and counted."
        ),
    )
    log_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "At most one warning per kind of problem (queue full, receiver down, ...) in this "
            "interval; the next one says how many were not logged."
        ),
    )
    source: str = Field(
        default="",
        max_length=1024,
        pattern=_HEADER_SAFE,
        description=(
            "The events' `ce-source` (a URI reference); empty: `http://localhost:<port>/`, "
            "as KServe's logger sets it."
        ),
    )
    namespace: str = Field(
        default="",
        max_length=253,
        pattern=_HEADER_SAFE,
        description="The `ce-namespace` attribute (KServe: the InferenceService's namespace).",
    )
    component: str = Field(
        default="predictor",
        max_length=253,
        pattern=_HEADER_SAFE,
        description="The `ce-component` attribute (KServe: predictor, transformer or explainer).",
    )
    endpoint: str = Field(
        default="",
        max_length=253,
        pattern=_HEADER_SAFE,
        description="The `ce-endpoint` attribute (KServe: `default` or `canary`, often empty).",
    )
