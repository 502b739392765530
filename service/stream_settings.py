"""Stream settings (`TABSERVE_STREAM_*`): WebSocket prediction streams (docs/streaming.md)."""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class StreamSettings(FeatureSettings):
    """Flow control and message size of `/models/{m}/stream`."""

    model_config = feature_config("TABSERVE_STREAM_")

    window: int = Field(
        default=32,
        ge=1,
        le=1024,
        description=(
            "Most messages one WebSocket stream may have in flight (read but not yet "
            "answered). When the window is full the server stops reading from that socket "
            "until an answer goes out, so a fast client is slowed down instead of buffered."
        ),
    )
    max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description=(
            "Largest stream message, in bytes: a larger one gets a `too_large` error message "
            "and the stream stays open. Messages past 16 MiB (the server's WebSocket frame "
            "limit) close the connection with 1009."
        ),
    )
