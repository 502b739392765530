"""Service settings: one documented object, read from `TABSERVE_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, PositiveInt, SecretStr
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
    max_json_depth: int = Field(
        default=32,
        ge=3,
        description=(
            "Deepest nesting of arrays and objects in a records or V1 JSON body (else 413). "
            "Real requests need 2 or 3 levels; the limit keeps parsers and validators from "
            "walking pathological documents."
        ),
    )
    max_string_length: int = Field(
        default=4096,
        ge=16,
        description=(
            "Longest JSON string (key or value) in a records or V1 body, and longest V2 BYTES "
            "element, in characters (else 413). Category values are short; this bounds the "
            "memory and the work one request can cause."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins browsers may call the API from (CORS), e.g. "
            "`TABSERVE_CORS_ORIGINS='[\"https://app.example.com\"]'`. Empty (the default): "
            "no CORS headers, so browsers allow same-origin pages only."
        ),
    )
    inference_threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="Threads that run predictions, so the event loop never does.",
    )
    batch_max_rows: int = Field(
        default=256,
        ge=1,
        description=(
            "Most rows one model call takes when concurrent requests are coalesced "
            "(adaptive batching); 1 turns batching off."
        ),
    )
    batch_max_rows_by_model: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description=(
            'batch_max_rows for particular models, by name, as JSON (e.g. {"forest": 64}): '
            "a model whose engine slows per row in large calls, or one that must answer "
            "each request alone."
        ),
    )
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "How long an idle model holds a request to gather others into its call. "
            "0: an idle model answers at once; batches form only while it is busy."
        ),
    )
    batch_concurrency: int = Field(
        default=1,
        ge=1,
        description="Model calls in flight at once per model version (each on its own thread).",
    )
    fast_path: bool = Field(
        default=True,
        description=(
            "Answer V2 infer and record requests before FastAPI's router (same "
            "behaviour, less overhead per request); off: they go through the "
            "documented FastAPI routes."
        ),
    )
    coalesce_writes: bool = Field(
        default=True,
        description=(
            "Send each HTTP answer's headers and body to the socket in one write "
            "(one segment, one client wake-up); off: uvicorn's own two writes."
        ),
    )
    queue_max_rows: int = Field(
        default=4096,
        ge=1,
        description=(
            "Most rows waiting per model version; a request that would exceed it gets 503 "
            "with Retry-After at once instead of waiting without bound."
        ),
    )
    request_timeout_ms: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Deadline for a model call to take a request; past it the work is dropped and "
            "the client gets 504. A request may set its own with X-Request-Timeout-Ms."
        ),
    )
    max_request_timeout_ms: int = Field(
        default=60_000, ge=1, description="Cap on a request's own X-Request-Timeout-Ms."
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description=(
            "Largest request line plus headers, in bytes; a larger one gets 431 and its "
            "connection is closed (an incomplete one is cut off at this plus one network read)."
        ),
    )
    request_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Longest a request may take to arrive whole (request line, headers and body), "
            "from its first byte or from the connection's opening; past it the client gets "
            "408 and the connection is closed (slow clients cannot hold connections forever)."
        ),
    )
    shutdown_grace_seconds: int = Field(
        default=25,
        ge=1,
        description=(
            "On SIGTERM, how long accepted requests (queued ones included) may take to "
            "finish before the process exits; keep it below Kubernetes' "
            "terminationGracePeriodSeconds."
        ),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token for the model repository API (/v2/repository/...); unset: those "
            "routes do not exist (404)."
        ),
    )
    poll_seconds: float = Field(
        default=0.0,
        ge=0,
        description=(
            "How often to look for new versions under models_dir and load them (0: never). "
            "Every worker polls, so all of them pick up a new version."
        ),
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
    artifact_public_key: Path | None = Field(
        default=None,
        description=(
            "PEM file of an Ed25519 public key: only artifacts whose seal it verifies (signed "
            "at export with `--sign-key`, or by `tabserve sign`) load; unsigned, re-signed or "
            "edited ones fail. Unset: seals are checked for edits, and artifacts without one "
            "(older exports) load with a warning."
        ),
    )

    # --- Prediction records leaving the process (prediction log, payload sinks) ---
    log_redact: list[str] = Field(
        default=[],
        description=(
            "Features whose values never leave the process: replaced by null in the prediction "
            'log and in every payload sink (JSON list, e.g. `["email"]`).'
        ),
    )

    # --- Prediction log, ground-truth feedback and live quality (service.predlog) ---
    predlog_mode: Literal["off", "sampled", "all"] = Field(
        default="off",
        description=(
            "Log predicted rows to the prediction log: `all` of them, a `sampled` fraction of "
            "requests (`predlog_sample_fraction`), or none (`off`: no log, and no feedback, "
            "quality or predictions routes)."
        ),
    )
    predlog_sample_fraction: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="In `sampled` mode, the fraction of requests whose rows are logged.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder of the default SQLite prediction log, `predictions.db`.",
    )
    predlog_url: SecretStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "SQLAlchemy URL of the prediction log, e.g. "
            "`postgresql+psycopg://user:pass@db/tabserve` for pods sharing one log; unset: "
            "the SQLite file `<data_dir>/predictions.db`. Secret: it may hold a password."
        ),
    )
    predlog_queue_rows: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description=(
            "Most rows waiting to be written, per worker process; a request that would pass "
            "it is not logged (counted as dropped, reason `queue_full`), never delayed."
        ),
    )
    predlog_batch_rows: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows that wake the writer early; it writes everything waiting in one go.",
    )
    predlog_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest a logged row waits before it is written.",
    )
    predlog_retention_seconds: float = Field(
        default=30 * 86400,
        ge=0,
        description="Delete logged rows (and their ground truth) older than this; 0 keeps all.",
    )
    predlog_max_rows: int = Field(
        default=10_000_000,
        ge=0,
        description="Keep at most this many logged rows, deleting the oldest; 0: no limit.",
    )
    predlog_retention_interval_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="How often the writer applies retention (age and size).",
    )
    feedback_max_items: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most ground-truth items one feedback request may carry (else 413).",
    )
    quality_window_seconds: float = Field(
        default=3600,
        gt=0,
        le=90 * 86400,
        description=(
            "`GET /models/{name}/quality` covers ground truth that arrived within this "
            "window (a request may ask for another window)."
        ),
    )

    # --- Drift: live inputs and predictions against the training statistics (docs/drift.md) ---
    drift_enabled: bool = Field(
        default=True,
        description=(
            "Count served rows per bin of each feature's training histogram (and the "
            "predictions per class or target bin) for `GET /models/{name}/drift` and the "
            "`tabserve_drift_*` metrics; off: neither exists."
        ),
    )
    drift_window_seconds: float = Field(
        default=3600.0,
        ge=1,
        le=7 * 24 * 3600,
        description=(
            "The sliding window `GET /models/{name}/drift` reports on: rows served in about "
            "the last this many seconds (its start is known to within 1/60 of it)."
        ),
    )
    drift_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "How often the counts buffered per model call go to the Prometheus counters "
            "(also before every scrape and at shutdown). With several workers, a drift "
            "report can miss the other workers' last this many seconds."
        ),
    )
    drift_psi_threshold: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description=(
            "PSI above which `GET /models/{name}/drift` marks a feature as drifting (the "
            "Prometheus alert has its own threshold, 0.2, in its rule)."
        ),
    )
    drift_min_rows: int = Field(
        default=100,
        ge=1,
        description=(
            "Fewest rows in the window before `GET /models/{name}/drift` marks anything as "
            "drifting: a handful of rows gives a large PSI by chance (the alerts want 100 rows "
            "in their hour too). The PSI itself is always reported."
        ),
    )

    # --- Payload sink: every answer as CloudEvents over HTTP, KServe payload-logger format ---
    sink_url: HttpUrl | None = Field(
        default=None,
        description=(
            "Where to POST a CloudEvent per answered request (and one per answer), in the "
            "format of KServe's payload logger (docs/payload-sink.md); unset: no sink."
        ),
    )
    sink_events: Literal["request", "response", "all"] = Field(
        default="all",
        description=(
            "Which events to send: the request (its rows as a V2 request), the response (the "
            "V2 answer) or both, sharing the request id (KServe's logger mode)."
        ),
    )
    sink_queue_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description=(
            "Answered requests waiting to be sent, per process; when full, new ones are "
            "dropped and counted (predictions are never delayed)."
        ),
    )
    sink_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Longest wait for the receiver to answer one event; past it, it failed.",
    )
    sink_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Events in flight at once, per process (also the most open connections).",
    )
    sink_cpu_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description=(
            "Most of the process's CPU time the sender may take while serving (1: no limit); "
            "what it cannot send within it is dropped and counted, so serving keeps the rest."
        ),
    )
    sink_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description=(
            "At shutdown, how long queued events may take to be sent; what is left then is "
            "dropped and counted."
        ),
    )
    sink_log_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "At most one warning per kind of problem (queue full, receiver down, ...) in this "
            "interval; the next one says how many were not logged."
        ),
    )
    sink_source: str = Field(
        default="",
        max_length=1024,
        pattern=r"^[!-~]*$",  # printable ASCII: sent as a header as is
        description=(
            "The events' `ce-source` (a URI reference); empty: `http://localhost:<port>/`, "
            "as KServe's logger sets it."
        ),
    )
    sink_namespace: str = Field(
        default="",
        max_length=253,
        pattern=r"^[!-~]*$",  # printable ASCII: sent as a header as is
        description="The `ce-namespace` attribute (KServe: the InferenceService's namespace).",
    )
    sink_component: str = Field(
        default="predictor",
        max_length=253,
        pattern=r"^[!-~]*$",  # printable ASCII: sent as a header as is
        description="The `ce-component` attribute (KServe: predictor, transformer or explainer).",
    )
    sink_endpoint: str = Field(
        default="",
        max_length=253,
        pattern=r"^[!-~]*$",  # printable ASCII: sent as a header as is
        description="The `ce-endpoint` attribute (KServe: `default` or `canary`, often empty).",
    )

    # --- Streaming predictions over WebSocket (/models/{m}/stream, docs/streaming.md) ---
    stream_window: int = Field(
        default=32,
        ge=1,
        le=1024,
        description=(
            "Most messages one WebSocket stream may have in flight (read but not yet "
            "answered). When the window is full the server stops reading from that socket "
            "until an answer goes out, so a fast client is slowed down instead of buffered."
        ),
    )
    stream_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description=(
            "Largest stream message, in bytes: a larger one gets a `too_large` error message "
            "and the stream stays open. Messages past 16 MiB (the server's WebSocket frame "
            "limit) close the connection with 1009."
        ),
    )

    @property
    def predlog_database_url(self) -> str:
        """`predlog_url`, else the SQLite file in `data_dir`."""
        if self.predlog_url is not None:
            return self.predlog_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'predictions.db'}"
