"""Models by name and version: their state, the default version, and lookups."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.core.batching import Batcher
from service.core.errors import ModelNotFoundError, ModelNotReadyError
from service.core.metrics import ModelMetrics
from service.core.runtime import Runtime
from service.core.validation import FeatureSchema
from training.manifest import Manifest


class ModelState(StrEnum):
    """Where a model version is in its life."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModelVersion:
    """One version of a model, loaded or not, with everything serving needs."""

    name: str
    version: int
    path: Path
    runtime: Runtime
    state: ModelState = ModelState.LOADING
    manifest: Manifest | None = None
    schema: FeatureSchema | None = None
    metrics: ModelMetrics | None = None
    error: str | None = None
    load_seconds: float | None = None
    batcher: Batcher | None = None

    @property
    def ready(self) -> bool:
        """Whether it can serve."""
        return self.state is ModelState.READY


class ModelRegistry:
    """Every known model version; the highest version of a name is its default."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelVersion]] = {}

    def add(self, model: ModelVersion) -> None:
        """Register (or replace) one version."""
        self._models.setdefault(model.name, {})[model.version] = model

    def names(self) -> list[str]:
        """Model names, sorted."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """Versions of `name`, ascending; ModelNotFoundError if there is no such model."""
        found = self._models.get(name)
        if not found:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFoundError(f"model {name!r} not found; models served: {known}")
        return [found[v] for v in sorted(found)]

    def all(self) -> list[ModelVersion]:
        """Every version of every model."""
        return [m for name in self.names() for m in self.versions(name)]

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """A version (the default when `version` is None), whatever its state."""
        versions = self.versions(name)
        if version is None:
            return versions[-1]
        for model in versions:
            if model.version == version:
                return model
        listed = ", ".join(str(m.version) for m in versions)
        raise ModelNotFoundError(f"model {name!r} has no version {version}; versions: {listed}")

    def ready(self, name: str, version: int | None = None) -> ModelVersion:
        """A version that can serve, or ModelNotReadyError saying why not."""
        model = self.get(name, version)
        if not model.ready:
            why = f": {model.error}" if model.error else ""
            raise ModelNotReadyError(
                f"model {name!r} version {model.version} is {model.state.value}{why}"
            )
        return model

    def all_ready(self) -> bool:
        """The server is ready when it has models and every one of them is."""
        models = self.all()
        return bool(models) and all(m.ready for m in models)
