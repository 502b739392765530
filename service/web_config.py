"""What the web layer needs of the settings, as small objects built once per app.

Routes, the middleware, the express lanes and streams take these rather than the
whole `Settings`, as the core takes `LoadingConfig` and `BatchPolicy`: `state.py`
builds them from the settings and routes read them through `api/deps.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tabserve.service.stream_settings import StreamSettings


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long a request may wait in a model's queue before a call takes it."""

    default_ms: int
    """`TABSERVE_REQUEST_TIMEOUT_MS`: for requests that ask for no timeout."""
    max_ms: int
    """`TABSERVE_MAX_REQUEST_TIMEOUT_MS`: the most an `X-Request-Timeout-Ms` header gets."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The limits and switches of the HTTP and WebSocket routes."""

    deadlines: Deadlines
    max_body_bytes: int
    """`TABSERVE_MAX_BODY_BYTES`: the largest request body."""
    max_json_depth: int
    """`TABSERVE_MAX_JSON_DEPTH`: nesting of arrays and objects in a JSON body."""
    max_string_length: int
    """`TABSERVE_MAX_STRING_LENGTH`: characters per JSON key or string."""
    cors_origins: tuple[str, ...]
    """`TABSERVE_CORS_ORIGINS`: origins whose browsers may call (none: same origin only)."""
    log_probes: bool
    """`TABSERVE_LOG_PROBES`: whether health probes appear in the access log."""
    fast_path: bool
    """`TABSERVE_FAST_PATH`: whether the express lanes answer the common shapes."""
    streams: StreamSettings
    """The WebSocket streams' own settings (`TABSERVE_STREAM_*`)."""
