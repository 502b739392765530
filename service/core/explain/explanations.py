"""The explanation feature: per-version explainers built on first use, on their own threads.

Nothing here runs on the predict path. A version's explainer is built by its first
explain call (reading the artifact again, so a compiled engine that serves it changes
nothing: the attributions are the original estimator's), kept with the served model
(`ServedModel.lanes`) and dropped with it. Explain calls run on `threads` threads of
their own, so a burst of explanations queues there instead of taking the inference
threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy.typing as npt

from tabserve.artifact.errors import ArtifactError
from tabserve.artifact.store import load_artifact
from tabserve.service.core.engines.parity import parity_rows
from tabserve.service.core.engines.preparation import UnsupportedModelError
from tabserve.service.core.errors import Problem, TooLargeError
from tabserve.service.core.explain.errors import NotExplainableError
from tabserve.service.core.explain.explainer import Explanation, ModelExplainer
from tabserve.service.core.explain.metrics import ExplainMetrics
from tabserve.service.core.explain.settings import ExplainSettings
from tabserve.service.core.loading import LoadingConfig, relative_paths
from tabserve.service.core.served import LaneKey, ServedModel
from tabserve.service.core.validation import ValidatedBatch

log = logging.getLogger("tabserve.explain")

CHECK_ROWS = 8
"""Rows drawn from the manifest (the first with every feature that may be missing
missing) that an explainer must explain exactly before it answers. Every call is
checked too; these refuse a model before anyone is answered, and cost the first call
one explanation of this many rows (0.4 s for the benchmark forest)."""


class LazyExplainer:
    """One version's explainer, built by the first call that needs it (once, under a lock)."""

    def __init__(self, model: ServedModel, loading: LoadingConfig) -> None:
        self._model = model
        self._loading = loading
        self._lock = threading.Lock()
        self._built: ModelExplainer | NotExplainableError | None = None

    def get(self) -> ModelExplainer:
        """The explainer, or the NotExplainableError that building it gave (kept too)."""
        with self._lock:
            if self._built is None:
                try:
                    self._built = self._build()
                except _TransientError:
                    raise
                except NotExplainableError as exc:
                    self._built = exc
            if isinstance(self._built, NotExplainableError):
                raise self._built
            return self._built

    def _build(self) -> ModelExplainer:
        model, config = self._model, self._loading
        try:
            loaded = load_artifact(
                model.path,
                allow_version_mismatch=config.allow_version_mismatch,
                root=config.models_dir,
                public_key=config.public_key,
            )
        except (ArtifactError, OSError) as exc:
            reason = relative_paths(str(exc), config.models_dir)
            raise _transient(model, f"its artifact could not be read again: {reason}") from exc
        if loaded.manifest.artifact.sha256 != model.manifest.artifact.sha256:
            raise _transient(model, "its artifact changed on disk since it was loaded")
        try:
            return ModelExplainer(model.manifest, loaded.estimator, _check_rows(model))
        except NotExplainableError:
            raise
        except Exception as exc:
            # A model shape nothing here foresaw: refused (and logged), never a 500.
            log.warning(
                "explainer of %s version %s failed", model.name, model.version, exc_info=True
            )
            reason = f"building its explainer failed: {type(exc).__name__}: {exc}"
            raise NotExplainableError(model.name, model.version, reason) from exc


class _TransientError(NotExplainableError):
    """A refusal that a later call may not meet (the artifact can be restored): not kept."""


def _transient(model: ServedModel, reason: str) -> _TransientError:
    return _TransientError(model.name, model.version, reason)


def _check_rows(model: ServedModel) -> npt.NDArray[Any]:
    try:
        return parity_rows(model.manifest, rows=CHECK_ROWS)[:CHECK_ROWS]
    except UnsupportedModelError:  # no training statistics: the schema's example row
        return model.schema.example_batch().features


EXPLAINER: LaneKey[LazyExplainer] = LaneKey("explainer")


class Explanations:
    """Explains served models' predictions: a start/stop component of the app."""

    def __init__(
        self, settings: ExplainSettings, loading: LoadingConfig, metrics: ExplainMetrics
    ) -> None:
        self.settings = settings
        self.loading = loading
        self.metrics = metrics
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Create the explanation threads."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.settings.threads, thread_name_prefix="explain"
            )

    async def stop(self) -> None:
        """Let running explanations finish, then stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def check_rows(self, rows: int) -> None:
        """Refuse (413) a call with more rows than `max_rows`, before any validation."""
        limit = self.settings.max_rows
        if rows > limit:
            raise TooLargeError(
                f"request has {rows} rows; at most {limit} may be explained per call "
                "(TABSERVE_EXPLAIN_MAX_ROWS)",
                [Problem("rows", f"at most {limit} rows (TABSERVE_EXPLAIN_MAX_ROWS)", rows)],
            )

    async def explain(self, model: ServedModel, batch: ValidatedBatch) -> Explanation:
        """Exact attributions of a validated batch, computed on the explanation threads."""
        if self._executor is None:
            raise RuntimeError("the explanation threads are not started")
        lazy = model.lanes.get(EXPLAINER, lambda: LazyExplainer(model, self.loading))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            explanation = await loop.run_in_executor(self._executor, _explain, lazy, batch.features)
        except NotExplainableError:
            self.metrics.refused(model.name, model.version)
            raise
        seconds = time.perf_counter() - started
        self.metrics.observe(model.name, model.version, batch.rows, seconds)
        return explanation


def _explain(lazy: LazyExplainer, features: npt.NDArray[Any]) -> Explanation:
    return lazy.get().explain(features)
