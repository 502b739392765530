"""The model libraries an estimator is made of, their versions, and which versions may load it.

A pickled model is only as good as the library versions that unpickle it: another
scikit-learn minor, or another XGBoost major, may fail to load it or, worse, load it
and predict differently. So an artifact records the version of every library its
steps come from (found by each step's class's top-level module), and the loader
refuses a version that differs in a part that matters (`COMPATIBLE_PARTS`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from tabserve.artifact.errors import ArtifactError

SCIKIT_LEARN = "scikit-learn"
# A step's class's top-level module -> the distribution whose version is recorded.
LIBRARIES: dict[str, str] = {
    "sklearn": SCIKIT_LEARN,
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
}
# How many leading parts of a version must match for a pickle to load and predict the
# same: scikit-learn changes estimators' internals between minors; XGBoost and LightGBM
# keep their model formats within a major; CatBoost (1.x for years) changes within minors.
COMPATIBLE_PARTS: dict[str, int] = {SCIKIT_LEARN: 2, "xgboost": 1, "lightgbm": 1, "catboost": 2}
OVERRIDE = "TABSERVE_ALLOW_VERSION_MISMATCH=true"
_MAX_DEPTH = 32


def steps_of(model: Any) -> Iterator[Any]:
    """The model and every estimator inside it: pipeline steps, column-transformer and
    feature-union branches, at any depth."""
    yield from _walk(model, 0)


def _walk(obj: Any, depth: int) -> Iterator[Any]:
    if depth > _MAX_DEPTH or obj is None or isinstance(obj, str):
        return
    yield obj
    for child in _children(obj):
        yield from _walk(child, depth + 1)


def _children(obj: Any) -> list[Any]:
    """The sub-estimators a composite holds, fitted ones first where it has both."""
    if hasattr(obj, "steps"):  # Pipeline
        return [step for _, step in obj.steps]
    if hasattr(obj, "transformer_list"):  # FeatureUnion
        return [step for _, step in obj.transformer_list]
    branches = getattr(obj, "transformers_", None) or getattr(obj, "transformers", None)
    if isinstance(branches, list):  # ColumnTransformer
        return [branch[1] for branch in branches if len(branch) >= 2]
    # A meta-estimator wrapping one (e.g. LabelEncodedClassifier around XGBoost).
    inner = getattr(obj, "estimator_", None) or getattr(obj, "estimator", None)
    return [inner] if hasattr(inner, "get_params") else []


def library_of(step: Any) -> str | None:
    """The distribution a step's class comes from, if it is one we record."""
    return LIBRARIES.get(type(step).__module__.split(".")[0])


def installed_version(library: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def libraries_of(model: Any) -> dict[str, str]:
    """Installed versions of the libraries beyond scikit-learn that `model`'s steps use."""
    found: dict[str, str] = {}
    for step in steps_of(model):
        library = library_of(step)
        if library is None or library == SCIKIT_LEARN or library in found:
            continue
        version = installed_version(library)
        if version is not None:
            found[library] = version
    return found


def compatible(library: str, recorded: str, installed: str) -> bool:
    """Whether `installed` may load a model pickled with `recorded`."""
    parts = COMPATIBLE_PARTS.get(library, 2)
    return recorded.split(".")[:parts] == installed.split(".")[:parts]


def check_versions(recorded: Mapping[str, str], source: str, *, allow_mismatch: bool) -> None:
    """Refuse when a recorded library is missing here, or (unless allowed) another version.

    The message names both versions and both ways out: re-export the model where it
    will be served, or the documented override.
    """
    for library, version in recorded.items():
        installed = installed_version(library)
        if installed is None:
            raise ArtifactError(
                f"{source}: the model needs {library} {version}, which is not installed here; "
                f"install it in the serving environment (pip install '{library}=={version}')"
            )
        if allow_mismatch or compatible(library, version, installed):
            continue
        span = "major" if COMPATIBLE_PARTS.get(library, 2) == 1 else "minor"
        raise ArtifactError(
            f"{source}: made with {library} {version}, but this process has {installed}; a "
            f"pickled model may fail or silently predict differently across {span} versions. "
            f"Retrain or re-export it where it is served (with {library} {installed}), or set "
            f"{OVERRIDE} to serve it anyway."
        )
