"""Tracing settings (`TABSERVE_TRACING_*`); where spans go is OpenTelemetry's to say.

The exporter's endpoint, headers and timeout, the sampler and the resource come from
OpenTelemetry's own environment variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, ...), which the SDK reads itself: an SRE
sets them as for any other service. This module imports no OpenTelemetry.
"""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class TracingSettings(FeatureSettings):
    """Whether requests are traced."""

    model_config = feature_config("TABSERVE_TRACING_")

    enabled: bool = Field(
        default=False,
        description=(
            "Trace HTTP requests and gRPC calls with OpenTelemetry and export the spans "
            "over OTLP/HTTP (needs the `tracing` extra: `pip install 'tabserve[tracing]'`). "
            "Where they go, and how many are kept, is set by OpenTelemetry's standard "
            "variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT), "
            "OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, OTEL_SERVICE_NAME, "
            "OTEL_RESOURCE_ATTRIBUTES (docs/tracing.md)."
        ),
    )
