"""What one app instance owns, built by `create_app` and filled by its lifespan.

Each feature gets its own settings model and its own metrics here; a feature that
is off has no running part (None), but its metrics are registered all the same, so
the exposition lists the same families whatever the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from tabserve.service.auth.key_store import KeyStore
from tabserve.service.auth.metrics import AuthMetrics
from tabserve.service.core.batch_settings import BatchSettings
from tabserve.service.core.batching import BatchPolicy
from tabserve.service.core.dataplane import DataPlane
from tabserve.service.core.drift import DriftMonitor
from tabserve.service.core.drift_metrics import DriftMetrics
from tabserve.service.core.explain.explanations import Explanations
from tabserve.service.core.explain.metrics import ExplainMetrics
from tabserve.service.core.inference import InferencePool
from tabserve.service.core.loading import LoadingConfig
from tabserve.service.core.metrics import ServiceMetrics
from tabserve.service.core.registry import ModelRegistry
from tabserve.service.core.repository import ModelRepository
from tabserve.service.core.rollout.metrics import RolloutMetrics
from tabserve.service.core.rollout.rollouts import Rollouts
from tabserve.service.predlog.log import PredictionLog
from tabserve.service.predlog.metrics import PredictionLogMetrics
from tabserve.service.settings import Settings
from tabserve.service.sinks.cloudevents import CloudEventSink, SinkConfig
from tabserve.service.sinks.metrics import SinkMetrics
from tabserve.service.web_config import Deadlines, WebConfig


@dataclass
class AppState:
    """Settings, metrics, models, the inference pool and the features of one app."""

    settings: Settings
    metrics: ServiceMetrics
    registry: ModelRegistry
    pool: InferencePool
    dataplane: DataPlane
    repository: ModelRepository
    web: WebConfig
    """What the routes, the middleware, the lanes and streams need of the settings."""
    rollouts: Rollouts
    """Champion/challenger rollouts, set per model at run time (none at start)."""
    predlog: PredictionLog | None = None
    drift: DriftMonitor | None = None
    sink: CloudEventSink | None = None
    explanations: Explanations | None = None
    keys: KeyStore | None = None
    """The API keys, when access control is on (`TABSERVE_AUTH_KEYS_FILE`)."""
    loaded: bool = False
    draining: bool = False

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        """Everything empty: the lifespan loads the models."""
        metrics = ServiceMetrics(created_series=settings.metrics_created_series)
        registry = ModelRegistry()
        pool = InferencePool(settings.inference_threads)
        dataplane = DataPlane(
            registry,
            pool,
            metrics,
            batch_policy(settings.batching),
            timed=settings.tracing.enabled,  # tracing's spans for the queue and the call
        )
        return cls(
            settings,
            metrics,
            registry,
            pool,
            dataplane,
            ModelRepository(loading_config(settings), dataplane),
            web_config(settings),
            # Registration order is the exposition's order: drift, log, sink, as before.
            drift=_drift(settings, metrics, dataplane),
            predlog=_prediction_log(settings, metrics, dataplane),
            sink=_sink(settings, metrics),
            explanations=_explanations(settings, metrics),
            rollouts=Rollouts(dataplane, settings.rollout, RolloutMetrics(metrics.registry)),
            keys=_keys(settings, metrics),
        )


def batch_policy(batching: BatchSettings) -> BatchPolicy:
    """The core's batching policy for every model (`max_rows_by_model` aside)."""
    return BatchPolicy(
        max_rows=batching.max_rows,
        max_wait=batching.max_wait_ms / 1000,
        concurrency=batching.concurrency,
        max_queue_rows=batching.queue_max_rows,
    )


def loading_config(settings: Settings) -> LoadingConfig:
    """What the core's model loading needs of the settings."""
    return LoadingConfig(
        models_dir=settings.models_dir,
        engine=settings.engine,
        allow_version_mismatch=settings.allow_version_mismatch,
        public_key=settings.artifact_public_key,
        max_rows=settings.max_rows,
        reject_out_of_range=settings.reject_out_of_range,
        batch_rows_by_model=settings.batching.max_rows_by_model,
    )


def web_config(settings: Settings) -> WebConfig:
    """What the web layer needs of the settings."""
    return WebConfig(
        deadlines=Deadlines(settings.request_timeout_ms, settings.max_request_timeout_ms),
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        max_string_length=settings.max_string_length,
        cors_origins=tuple(settings.cors_origins),
        log_probes=settings.log_probes,
        fast_path=settings.fast_path,
        streams=settings.streams,
    )


def _prediction_log(
    settings: Settings, metrics: ServiceMetrics, dataplane: DataPlane
) -> PredictionLog | None:
    series = PredictionLogMetrics(metrics.registry)
    if not settings.predlog.enabled:
        return None
    return PredictionLog(settings.predlog, series, dataplane, redact=settings.log_redact)


def _drift(
    settings: Settings, metrics: ServiceMetrics, dataplane: DataPlane
) -> DriftMonitor | None:
    series = DriftMetrics(metrics.registry)
    if not settings.drift.enabled:
        return None
    monitor = DriftMonitor(dataplane.registry, metrics, series, settings.drift)
    monitor.attach(dataplane)
    return monitor


def _sink(settings: Settings, metrics: ServiceMetrics) -> CloudEventSink | None:
    series = SinkMetrics(metrics.registry)
    config = SinkConfig.from_settings(settings.sink, port=settings.port, redact=settings.log_redact)
    return CloudEventSink(config, series) if config is not None else None


def _explanations(settings: Settings, metrics: ServiceMetrics) -> Explanations | None:
    series = ExplainMetrics(metrics.registry)
    if not settings.explain.enabled:
        return None
    return Explanations(settings.explain, loading_config(settings), series)


def _keys(settings: Settings, metrics: ServiceMetrics) -> KeyStore | None:
    """The key store; a malformed keys file raises KeysFileError here (no start)."""
    series = AuthMetrics(metrics.registry)
    auth = settings.auth
    if auth.keys_file is None:
        return None
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return KeyStore(auth.keys_file, series, auth.check_seconds, admin_token=token)
