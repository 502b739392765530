"""Open one model version for scoring, exactly as the service loads it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import Manifest
from tabserve.artifact.repository import list_models, list_versions, version_path
from tabserve.service.batch.errors import BatchError
from tabserve.service.core.loading import LoadingConfig, prepare_version, runtime_for
from tabserve.service.core.runtime import Prediction, Runtime
from tabserve.service.core.validation import FeatureSchema, ValidatedBatch

UNBOUNDED_ROWS = 2**62
"""A file has as many rows as it has: the batch reader bounds memory, not the schema."""


@dataclass(frozen=True)
class BatchModel:
    """A loaded, verified and warmed-up version with the schema that checks its inputs."""

    name: str
    version: int
    manifest: Manifest
    schema: FeatureSchema
    runtime: Runtime

    @property
    def classes(self) -> list[str]:
        """Class labels as the records answer keys probabilities (empty for regressors)."""
        return [str(c) for c in self.manifest.target.classes or []]

    def predict(self, batch: ValidatedBatch) -> Prediction:
        """The runtime's answer for checked rows."""
        return self.runtime.predict(batch.features)

    def example_prediction(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64] | None]:
        """Labels and probabilities for the schema's typical row (their dtypes shape outputs)."""
        answer = self.predict(self.schema.example_batch())
        return answer.predict, answer.proba


def resolve_version(config: LoadingConfig, name: str, version: int | None) -> int:
    """`version`, or the highest one (what the service serves by default), if it exists."""
    versions = list_versions(config.models_dir, name)
    if not versions:
        known = ", ".join(sorted(list_models(config.models_dir))) or "none"
        raise BatchError(f"no model {name!r} under {config.models_dir} (models there: {known})")
    if version is None:
        return versions[-1]
    if version not in versions:
        listed = ", ".join(map(str, versions))
        raise BatchError(f"model {name!r} has no version {version} (versions: {listed})")
    return version


def open_model(config: LoadingConfig, name: str, version: int) -> BatchModel:
    """Load `name` `version` with the service's runtime, checks and warm-up.

    Raises BatchError saying why a version cannot load (a changed sealed manifest,
    a wrong sha256, another scikit-learn, ...), as `GET /models` would show it.
    """
    path = version_path(config.models_dir, name, version)
    runtime = runtime_for(path, config)
    try:
        manifest, schema = prepare_version(
            runtime, name, version, replace(config, max_rows=UNBOUNDED_ROWS)
        )
    except Exception as exc:
        runtime.unload()
        raise BatchError(f"model {name!r} version {version} cannot be loaded: {exc}") from exc
    return BatchModel(name, version, manifest, schema, runtime)
