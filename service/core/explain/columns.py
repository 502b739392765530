"""Which input feature each column of a fitted preprocessing comes from.

Attributions computed on the columns the final estimator sees are summed back to
the input features: a one-hot encoded `city` gets the sum of its indicator columns'
attributions. That is exact (the sum of all attributions is unchanged) as long as
every column comes from exactly one input feature, which is what this module
establishes, step by step: Pipelines compose, a ColumnTransformer routes its
branches, and any other step must name one input in each output column's name
(`get_feature_names_out`, asked with tokens for names). A step that mixes inputs
(PCA, PolynomialFeatures) has no such map, and is refused by name.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

Sources = npt.NDArray[np.intp]
_TOKEN = re.compile(r"__tabserve(\d+)__")


class MixedColumnsError(Exception):
    """A preprocessing step whose output columns do not each come from one input."""


def feature_sources(steps: list[Any], width: int) -> Sources:
    """For each column after `steps` (applied in order to `width` inputs), its input's index."""
    sources: Sources = np.arange(width, dtype=np.intp)
    for step in steps:
        sources = sources[_step_sources(step, len(sources))]
    return sources


def _step_sources(step: Any, width: int) -> Sources:
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return np.arange(width, dtype=np.intp)
    if isinstance(step, Pipeline):
        return feature_sources([s for _, s in step.steps], width)
    if isinstance(step, ColumnTransformer):
        return _routed(step, width)
    return _named(step, width)


def _routed(transformer: ColumnTransformer, width: int) -> Sources:
    """A ColumnTransformer's output: each branch's columns, in the order of `transformers_`."""
    parts: list[Sources] = []
    for name, inner, columns in transformer.transformers_:
        if isinstance(inner, str) and inner == "drop":
            continue
        selected = _positions(transformer, name, columns, width)
        if selected.size == 0:
            continue
        parts.append(selected[_step_sources(inner, selected.size)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)


def _positions(transformer: ColumnTransformer, name: str, columns: Any, width: int) -> Sources:
    fitted = getattr(transformer, "feature_names_in_", None)
    names = isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)
    if fitted is not None and names:
        position = {str(n): i for i, n in enumerate(fitted)}
        return np.asarray([position[c] for c in columns], dtype=np.intp)
    try:
        selected = np.arange(width)[columns]
    except (IndexError, TypeError, ValueError) as exc:
        raise MixedColumnsError(
            f"ColumnTransformer branch {name!r} selects columns by {columns!r}"
        ) from exc
    return np.atleast_1d(selected).astype(np.intp)


def _named(step: Any, width: int) -> Sources:
    """A leaf step's map, read from the names it gives its outputs for token-named inputs."""
    kind = type(step).__name__
    if not hasattr(step, "get_feature_names_out"):
        raise MixedColumnsError(f"preprocessing step {kind} does not name its output columns")
    shallow = copy.copy(step)  # the served object is shared by threads: never touch it
    if hasattr(shallow, "feature_names_in_"):
        del shallow.feature_names_in_
    tokens = [f"__tabserve{i}__" for i in range(width)]
    try:
        names = [str(n) for n in shallow.get_feature_names_out(tokens)]
    except Exception as exc:
        raise MixedColumnsError(f"preprocessing step {kind} cannot name its outputs") from exc
    sources = []
    for name in names:
        found = set(_TOKEN.findall(name))
        if len(found) != 1:
            raise MixedColumnsError(
                f"preprocessing step {kind} makes columns that do not each come from one "
                "input feature"
            )
        sources.append(int(found.pop()))
    return np.asarray(sources, dtype=np.intp)
