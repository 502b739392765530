"""The runtime interface (`load` / `predict` / `unload`) and its scikit-learn implementation.

The compiled implementation (ONNX Runtime, numpy) lives in `tabserve.service.core.engines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tabserve.artifact.frames import FrameBuilder
from tabserve.artifact.manifest import Manifest
from tabserve.artifact.store import LoadedArtifact, load_artifact


@dataclass(frozen=True, slots=True)
class Prediction:
    """Model output for a batch: labels or values, and class probabilities for classifiers."""

    predict: npt.NDArray[Any]
    proba: npt.NDArray[np.float64] | None = None


class Runtime(Protocol):
    """What the core needs of a model engine. Weights load in `load()`, never earlier."""

    engine: str

    def load(self) -> Manifest:
        """Load and verify the model; return its manifest."""
        ...

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        """Predict a validated batch. Runs on a worker thread, never on the event loop."""
        ...

    def unload(self) -> None:
        """Release the model."""
        ...


class SklearnRuntime:
    """Serves the artifact's scikit-learn pipeline as it was trained."""

    engine = "sklearn"

    def __init__(
        self,
        folder: Path,
        *,
        allow_version_mismatch: bool = False,
        root: Path | None = None,
        public_key: Ed25519PublicKey | Path | None = None,
    ) -> None:
        self._folder = folder
        self._allow_version_mismatch = allow_version_mismatch
        self._root = root  # the models directory: files resolving outside it are refused
        self._public_key = public_key  # set: only artifacts it signed load (a Path: its PEM file)
        self._model: Any = None
        self._classes: npt.NDArray[Any] | None = None
        self._frame: FrameBuilder | None = None  # for a model fitted on a DataFrame

    def load(self) -> Manifest:
        """Verify and unpickle the artifact (see `tabserve.artifact.store.load_artifact`)."""
        return self.adopt(
            load_artifact(
                self._folder,
                allow_version_mismatch=self._allow_version_mismatch,
                root=self._root,
                public_key=self._public_key,
            )
        )

    def adopt(self, loaded: LoadedArtifact) -> Manifest:
        """Serve an artifact already loaded and verified (the compiled runtime's fallback)."""
        self._model = loaded.estimator
        has_proba = loaded.manifest.task == "classification" and hasattr(
            loaded.estimator, "predict_proba"
        )
        self._classes = np.asarray(loaded.estimator.classes_) if has_proba else None
        frame = loaded.manifest.estimator.input == "frame"
        self._frame = FrameBuilder(loaded.manifest.features) if frame else None
        return loaded.manifest

    def predict(self, features: npt.NDArray[Any]) -> Prediction:
        """Classifiers: one `predict_proba` pass; labels are its argmax (what `predict` does)."""
        if self._model is None:
            raise RuntimeError(f"model at {self._folder} is not loaded")
        if self._frame is not None:
            features = self._frame(features)
        if self._classes is None:
            return Prediction(np.asarray(self._model.predict(features)))
        proba = np.asarray(self._model.predict_proba(features), dtype=np.float64)
        return Prediction(self._classes[proba.argmax(axis=1)], proba)

    def unload(self) -> None:
        """Drop the estimator so its memory can be freed."""
        self._model = None
        self._classes = None
