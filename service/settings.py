"""Service settings: one documented object, read from `TABSERVE_*` environment variables.

Settings of the server as a whole are fields here; each feature (batching, the
prediction log, drift, the payload sink, streams) owns a settings model in its own
package, nested here under one attribute (`settings.drift.window_seconds`), while
its environment names stay flat (`TABSERVE_DRIFT_WINDOW_SECONDS`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from tabserve.service.auth.settings import AuthSettings
from tabserve.service.core.batch_settings import BatchSettings
from tabserve.service.core.drift_settings import DriftSettings
from tabserve.service.core.explain.settings import ExplainSettings
from tabserve.service.core.feature_settings import ENV_PREFIX, FeatureSettings
from tabserve.service.core.rollout.settings import RolloutSettings
from tabserve.service.grpc.settings import GrpcSettings
from tabserve.service.predlog.settings import PredictionLogSettings
from tabserve.service.sinks.settings import SinkSettings
from tabserve.service.stream_settings import StreamSettings
from tabserve.service.tracing.settings import TracingSettings


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    """Everything an operator can set; `TABSERVE_MODELS_DIR=/srv/models` sets `models_dir`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

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
    metrics_created_series: bool = Field(
        default=False,
        description="Export each counter's and histogram's `*_created` timestamp series "
        "(off: a third of the exposition that Prometheus does not use).",
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
    fast_path: bool = Field(
        default=True,
        description=(
            "Answer the common V2 infer and record requests in the express lanes "
            "(service/api/express.py: same answers, less work per request than "
            "FastAPI's routing and validation); off: every request goes through the "
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
    drain_keepalive_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description=(
            "On SIGTERM (or a worker retired by SIGHUP), how long open keep-alive connections "
            "are still answered, each answer with `Connection: close`, before those still idle "
            "are closed; a request sent as an idle connection closes would meet a reset. New "
            "connections are still accepted (and answered the same way) for this long too; "
            "then the listener closes and the port refuses them."
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
            "routes answer 409 `feature_disabled` to everyone."
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

    # --- Features: each owns its settings model; the environment names stay flat ---
    batching: BatchSettings = Field(
        default_factory=BatchSettings,
        description="Adaptive batching (`TABSERVE_BATCH_*`, `TABSERVE_QUEUE_MAX_ROWS`).",
    )
    predlog: PredictionLogSettings = Field(
        default_factory=PredictionLogSettings,
        description="Prediction log, feedback and quality (`TABSERVE_PREDLOG_*`, ...).",
    )
    drift: DriftSettings = Field(
        default_factory=DriftSettings, description="Drift counting (`TABSERVE_DRIFT_*`)."
    )
    sink: SinkSettings = Field(
        default_factory=SinkSettings, description="Payload sink (`TABSERVE_SINK_*`)."
    )
    streams: StreamSettings = Field(
        default_factory=StreamSettings, description="WebSocket streams (`TABSERVE_STREAM_*`)."
    )
    explain: ExplainSettings = Field(
        default_factory=ExplainSettings, description="Explanations (`TABSERVE_EXPLAIN_*`)."
    )
    grpc: GrpcSettings = Field(
        default_factory=GrpcSettings,
        description="The Open Inference Protocol over gRPC (`TABSERVE_GRPC_*`).",
    )
    rollout: RolloutSettings = Field(
        default_factory=RolloutSettings,
        description="Champion/challenger rollouts' shadow work (`TABSERVE_ROLLOUT_*`).",
    )
    tracing: TracingSettings = Field(
        default_factory=TracingSettings,
        description="Distributed tracing with OpenTelemetry (`TABSERVE_TRACING_*`).",
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="Access control: API keys with scopes (`TABSERVE_AUTH_*`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """`Settings(drift_min_rows=10)`: flat keywords go to their feature's settings.

        Each feature is built here with its own constructor, so what is not given
        comes from the environment, and a bad value is reported under its flat name.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for attribute, feature in FEATURES.items():
            values = _pop_flat(data, feature)
            given = data.get(attribute)
            if isinstance(given, FeatureSettings) and not values:
                continue
            if isinstance(given, FeatureSettings):
                given = given.model_dump()
            data[attribute] = _build(feature, {**(given or {}), **values})
        return data

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied; flat feature names (`drift_enabled`) are accepted."""
        if not update:
            return super().model_copy(deep=deep)
        changes = dict(update)
        for attribute, feature in FEATURES.items():
            values = _pop_flat(changes, feature)
            if values:
                current = changes.get(attribute, getattr(self, attribute))
                changes[attribute] = current.model_copy(update=values)
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"Settings has no setting named {sorted(unknown)}")
        return super().model_copy(update=changes, deep=deep)

    @classmethod
    def environment_names(cls) -> dict[str, tuple[str, ...]]:
        """Every environment variable read -> where it lands (`("drift", "min_rows")`)."""
        names: dict[str, tuple[str, ...]] = {}
        for attribute in cls.model_fields:
            feature = FEATURES.get(attribute)
            if feature is None:
                names[f"{ENV_PREFIX}{attribute.upper()}"] = (attribute,)
                continue
            for env, field in feature.environment_names().items():
                names[env] = (attribute, field)
        return names

    @property
    def predlog_database_url(self) -> str:
        """The prediction log's database: `TABSERVE_PREDLOG_URL`, else a file in `data_dir`."""
        return self.predlog.database_url


FEATURES: dict[str, type[FeatureSettings]] = {
    "batching": BatchSettings,
    "predlog": PredictionLogSettings,
    "drift": DriftSettings,
    "sink": SinkSettings,
    "streams": StreamSettings,
    "explain": ExplainSettings,
    "grpc": GrpcSettings,
    "rollout": RolloutSettings,
    "tracing": TracingSettings,
    "auth": AuthSettings,
}
"""`Settings` attribute -> the feature settings nested there."""


def _build(feature: type[FeatureSettings], values: dict[str, Any]) -> FeatureSettings:
    """`feature(**values)`; its errors name the settings as the operator writes them.

    Raised as a `ValidationError` of `Settings` located at the flat name
    (`sink_url`), with only that setting's value as the input: a `ValueError` here
    would echo every setting given, secrets included.
    """
    try:
        return feature(**values)
    except ValidationError as exc:
        names = feature.environment_names()
        by_field = {field: env for env, field in names.items()}
        errors: list[InitErrorDetails] = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            env = where.upper() if where.upper() in names else by_field.get(where, where)
            flat = env.removeprefix(ENV_PREFIX).lower()
            detail = InitErrorDetails(type=error["type"], loc=(flat,), input=error["input"])
            if "ctx" in error:
                detail["ctx"] = error["ctx"]
            errors.append(detail)
        raise ValidationError.from_exception_data("Settings", errors) from exc


def _pop_flat(data: dict[str, Any], feature: type[FeatureSettings]) -> dict[str, Any]:
    """Remove `feature`'s flat keywords from `data`; return them by field name."""
    return {field: data.pop(flat) for flat, field in feature.flat_names().items() if flat in data}
