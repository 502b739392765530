"""The compiled runtime: the artifact's pipeline evaluated without scikit-learn's overhead.

At load, the pipeline is split into its preprocessing (re-evaluated in numpy, see
`preparation`) and its final estimator, which is scored by the engine measured
fastest for its kind (`bench/engines.py`, `docs/engines.md`): linear models by a
float64 matrix product, tree ensembles by ONNX Runtime. The result must match
scikit-learn on rows drawn from the manifest and, for trees, at the split
thresholds (`parity`) before it serves; on any mismatch, conversion error or
unsupported step the runtime serves with scikit-learn instead and logs one line
saying why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from tabserve.artifact.manifest import Feature, Manifest
from tabserve.artifact.store import LoadedArtifact, load_artifact
from tabserve.service.core.engines.cache import CompiledCache
from tabserve.service.core.engines.linear import LinearScorer
from tabserve.service.core.engines.onnx import (
    OnnxScorer,
    convert,
    is_tree_ensemble,
    library_versions,
)
from tabserve.service.core.engines.parity import parity_failure, parity_rows, split_probes
from tabserve.service.core.engines.preparation import (
    Preparer,
    UnsupportedModelError,
    split_pipeline,
)
from tabserve.service.core.runtime import Prediction, SklearnRuntime

log = logging.getLogger("tabserve.models")

EngineName = Literal["onnx", "numpy"]
Features = npt.NDArray[Any]
Scores = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]

# Largest difference from scikit-learn accepted at load (see docs/engines.md): ONNX
# Runtime computes in float32; the numpy engine repeats scikit-learn's float64 maths.
TOLERANCE: dict[EngineName, float] = {"onnx": 1e-5, "numpy": 1e-12}


def engine_for(final: Any) -> EngineName:
    """The engine that serves this kind of final estimator, chosen by measurement."""
    if isinstance(final, LogisticRegression | LinearRegression | Ridge):
        return "numpy"
    if is_tree_ensemble(final):
        return "onnx"
    raise UnsupportedModelError(f"{type(final).__name__} has no compiled engine")


@dataclass(frozen=True)
class CompiledModel:
    """A pipeline turned into one `predict` callable, and the engine behind it.

    `prepare` and `predict_prepared` are its two halves (preprocessing, final
    estimator), and `final` the scikit-learn estimator it replaces: the parity
    check probes the final estimator on its own, at its split thresholds.
    """

    engine: EngineName
    predict: Callable[[Features], Prediction]
    prepare: Preparer
    predict_prepared: Callable[[npt.NDArray[np.float64]], Prediction]
    final: Any


def compile_model(
    pipeline: Any,
    engine: EngineName,
    *,
    classify: bool,
    graph: bytes | None = None,
    frame: Sequence[Feature] | None = None,
) -> CompiledModel:
    """Compile a fitted pipeline for `engine` (ONNX: from `graph`, else converted now).

    `frame`: the features of a pipeline fitted on a DataFrame (see `split_pipeline`).
    """
    preparer, final = split_pipeline(pipeline, frame)
    if classify and not hasattr(final, "predict_proba"):
        raise UnsupportedModelError(f"{type(final).__name__} has no predict_proba")
    if engine == "numpy":
        linear = LinearScorer(final)
        score: Scores = linear.proba if classify else linear.values
    else:
        score = OnnxScorer(graph or convert(final), classifier=classify).scores
    scorer: _Classifier | _Regressor
    if classify:
        scorer = _Classifier(preparer, score, np.asarray(pipeline.classes_))
    else:
        scorer = _Regressor(preparer, score)
    return CompiledModel(engine, scorer.predict, preparer, scorer.predict_prepared, final)


class _Classifier:
    __slots__ = ("_classes", "_prepare", "_score")

    def __init__(self, prepare: Preparer, score: Scores, classes: npt.NDArray[Any]) -> None:
        self._prepare = prepare
        self._score = score
        self._classes = classes

    def predict(self, features: Features) -> Prediction:
        proba = self._score(self._prepare(features))
        return Prediction(self._classes[proba.argmax(axis=1)], proba)

    def predict_prepared(self, x: npt.NDArray[np.float64]) -> Prediction:
        proba = self._score(x)
        return Prediction(self._classes[proba.argmax(axis=1)], proba)


class _Regressor:
    __slots__ = ("_prepare", "_score")

    def __init__(self, prepare: Preparer, score: Scores) -> None:
        self._prepare = prepare
        self._score = score

    def predict(self, features: Features) -> Prediction:
        return Prediction(self._score(self._prepare(features)).reshape(-1))

    def predict_prepared(self, x: npt.NDArray[np.float64]) -> Prediction:
        return Prediction(self._score(x).reshape(-1))


def _final_reference(final: Any, classify: bool) -> Callable[[npt.NDArray[np.float64]], Prediction]:
    """scikit-learn's final estimator alone, answering as `SklearnRuntime` does."""
    if not classify:
        return lambda x: Prediction(np.asarray(final.predict(x), dtype=np.float64))
    classes = np.asarray(final.classes_)

    def predict(x: npt.NDArray[np.float64]) -> Prediction:
        proba = np.asarray(final.predict_proba(x), dtype=np.float64)
        return Prediction(classes[proba.argmax(axis=1)], proba)

    return predict


def check_parity(
    compiled: CompiledModel,
    reference: Callable[[Features], Prediction],
    rows: Features,
    tolerance: float,
    *,
    classify: bool,
) -> str | None:
    """None if `compiled` answers like scikit-learn on `rows` and at its split thresholds.

    Otherwise the first difference found, in words.
    """
    failure = parity_failure(reference, compiled.predict, rows, tolerance)
    if failure is not None:
        return failure
    probes = split_probes(compiled.final, compiled.prepare(rows))
    if probes is None:
        return None
    final = _final_reference(compiled.final, classify)
    failure = parity_failure(final, compiled.predict_prepared, probes, tolerance)
    return None if failure is None else f"at split thresholds: {failure}"


class CompiledRuntime:
    """Serves a model version with its compiled engine, or with scikit-learn if it must.

    `engine` says which one serves after `load()`: "onnx", "numpy" or "sklearn".
    """

    def __init__(
        self,
        folder: Path,
        *,
        allow_version_mismatch: bool = False,
        tolerance: float | None = None,
        root: Path | None = None,
        public_key: Ed25519PublicKey | Path | None = None,
    ) -> None:
        self.engine = "auto"
        self._folder = folder
        self._allow_version_mismatch = allow_version_mismatch
        self._tolerance = tolerance
        self._root = root  # the models directory: files resolving outside it are refused
        self._public_key = public_key  # set: only artifacts it signed load (a Path: its PEM file)
        self._sklearn = SklearnRuntime(
            folder, allow_version_mismatch=allow_version_mismatch, root=root, public_key=public_key
        )
        self._predict: Callable[[Features], Prediction] | None = None

    def load(self) -> Manifest:
        """Verify the artifact, compile it, check parity; fall back to scikit-learn if needed."""
        loaded = load_artifact(
            self._folder,
            allow_version_mismatch=self._allow_version_mismatch,
            root=self._root,
            public_key=self._public_key,
        )
        manifest = self._sklearn.adopt(loaded)
        where = f"model {manifest.name} version {manifest.version}"
        try:
            compiled, graph, how = self._compile(loaded)
            tolerance = TOLERANCE[compiled.engine] if self._tolerance is None else self._tolerance
            rows = parity_rows(manifest)
            classify = manifest.task == "classification"
            # One OpenMP thread for scikit-learn's side: HistGradientBoosting would
            # otherwise spin a team per call, slow on a busy node (10x here on 2 cores).
            with threadpool_limits(limits=1, user_api="openmp"):
                failure = check_parity(
                    compiled, self._sklearn.predict, rows, tolerance, classify=classify
                )
        except UnsupportedModelError as exc:
            return self._fall_back(manifest, logging.INFO, f"{where}: {exc}")
        except Exception as exc:
            reason = f"{where}: compiled model failed: {type(exc).__name__}: {exc}"
            return self._fall_back(manifest, logging.WARNING, reason)
        if failure is not None:
            return self._fall_back(manifest, logging.WARNING, f"{where}: parity check: {failure}")
        if graph is not None:
            how += self._store(loaded, graph, where)
        log.info(
            "%s compiled for %s (%s; parity within %g on %d rows%s)",
            where,
            compiled.engine,
            how,
            tolerance,
            len(rows),
            " and at split thresholds" if compiled.engine == "onnx" else "",
        )
        self.engine = compiled.engine
        self._predict = compiled.predict
        self._sklearn.unload()
        return manifest

    def predict(self, features: Features) -> Prediction:
        """Predict with whichever engine `load()` settled on."""
        if self._predict is None:
            raise RuntimeError(f"model at {self._folder} is not loaded")
        return self._predict(features)

    def unload(self) -> None:
        """Drop the compiled model (and scikit-learn's, if it was serving)."""
        self._predict = None
        self._sklearn.unload()

    def _compile(self, loaded: LoadedArtifact) -> tuple[CompiledModel, bytes | None, str]:
        """The compiled model, a newly converted graph to cache (or None), and how it was made."""
        manifest = loaded.manifest
        frame = manifest.features if manifest.estimator.input == "frame" else None
        _, final = split_pipeline(loaded.estimator, frame)
        engine = engine_for(final)
        classify = manifest.task == "classification"
        if engine == "numpy":
            model = compile_model(loaded.estimator, engine, classify=classify, frame=frame)
            return model, None, "no conversion"
        cache = CompiledCache(self._folder)
        found = cache.read(manifest.artifact.sha256, library_versions(final))
        if found.graph is not None:
            model = compile_model(
                loaded.estimator, engine, classify=classify, graph=found.graph, frame=frame
            )
            return model, None, f"graph reused from {cache.folder}"
        started = time.perf_counter()
        graph = convert(final)
        how = f"converted in {time.perf_counter() - started:.2f}s, {found.reason}"
        model = compile_model(loaded.estimator, engine, classify=classify, graph=graph, frame=frame)
        return model, graph, how

    def _store(self, loaded: LoadedArtifact, graph: bytes, where: str) -> str:
        """Cache a graph that passed parity; a read-only folder only costs a later conversion."""
        cache = CompiledCache(self._folder)
        _, final = split_pipeline(loaded.estimator)
        try:
            cache.write(
                graph,
                source_sha256=loaded.manifest.artifact.sha256,
                estimator=loaded.manifest.estimator.class_name,
                libraries=library_versions(final),
            )
        except OSError as exc:
            log.warning(
                "%s: compiled cache could not be written to %s (%s); "
                "serving the in-memory conversion, the next load converts again",
                where,
                cache.folder,
                exc.strerror or exc,
            )
            return ", not cached"
        return f", cached in {cache.folder}"

    def _fall_back(self, manifest: Manifest, level: int, reason: str) -> Manifest:
        log.log(level, "%s; serving with scikit-learn", reason)
        self.engine = self._sklearn.engine
        self._predict = self._sklearn.predict
        return manifest
