"""Training data: the datasets scikit-learn ships, or a CSV file.

A `Dataset` keeps features as a 2-D array in column order: float64 when every
column is numeric, otherwise object with floats (NaN for missing) in numeric
columns and strings (None for missing) in categorical ones. That is exactly what
the exported pipeline takes, so the service can pass raw values through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn import datasets as sk_datasets

from tabserve.artifact.manifest import LogSource, Task
from tabserve.training.csv_table import is_missing, read_table
from tabserve.training.errors import TrainingError

FeatureType = Literal["number", "category"]
MAX_CLASSES_FOR_AUTO = 20


@dataclass(frozen=True)
class Column:
    """A feature's name and type."""

    name: str
    type: FeatureType


@dataclass(frozen=True)
class Dataset:
    """Features, target and what they are."""

    name: str
    source: str
    columns: list[Column]
    features: npt.NDArray[Any]
    target: npt.NDArray[Any]
    target_name: str
    task: Task
    log: LogSource | None = None
    """Set for data read from the prediction log: where it came from."""

    @property
    def has_categories(self) -> bool:
        """Whether any feature is categorical."""
        return any(c.type == "category" for c in self.columns)

    def has_missing(self) -> bool:
        """Whether any feature value is missing."""
        for index, column in enumerate(self.columns):
            values = self.features[:, index]
            if column.type == "number":
                if np.isnan(values.astype(np.float64)).any():
                    return True
            elif any(v is None for v in values):
                return True
        return False


_BUNDLED: dict[str, tuple[Callable[..., Any], Task]] = {
    "iris": (sk_datasets.load_iris, "classification"),
    "wine": (sk_datasets.load_wine, "classification"),
    "breast_cancer": (sk_datasets.load_breast_cancer, "classification"),
    "digits": (sk_datasets.load_digits, "classification"),
    "diabetes": (sk_datasets.load_diabetes, "regression"),
}
BUNDLED_DATASETS = tuple(_BUNDLED)


def load_bundled(name: str) -> Dataset:
    """One of the datasets scikit-learn ships; class labels become their names."""
    if name not in _BUNDLED:
        raise TrainingError(
            f"unknown dataset {name!r}; expected one of: {', '.join(BUNDLED_DATASETS)} "
            "(or --csv PATH --target COLUMN)"
        )
    loader, task = _BUNDLED[name]
    bunch = loader()
    features = np.asarray(bunch.data, dtype=np.float64)
    target: npt.NDArray[Any] = np.asarray(bunch.target)
    if task == "classification":
        names = getattr(bunch, "target_names", None)
        if names is not None:
            target = np.asarray([str(n) for n in names])[target]
        else:
            target = target.astype(np.int64)
    columns = [Column(_feature_name(n), "number") for n in bunch.feature_names]
    return Dataset(
        name=name,
        source=f"sklearn:{name}",
        columns=columns,
        features=features,
        target=target,
        target_name="target",
        task=task,
    )


def _feature_name(raw: str) -> str:
    # "sepal length (cm)" -> "sepal_length_cm": names that are JSON keys and identifiers.
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in raw.strip().lower())
    return "_".join(part for part in cleaned.split("_") if part)


def load_csv(
    path: Path,
    target: str,
    *,
    task: Task | None = None,
    categorical: frozenset[str] = frozenset(),
    numeric: frozenset[str] = frozenset(),
) -> Dataset:
    """A CSV file with a header row; `target` names the column to predict.

    Column types are inferred: a column whose present values all parse as numbers
    is numeric, one where none do is categorical. A column that mixes both is an
    error naming the first bad value, unless `categorical` or `numeric` says which.
    """
    header, rows, lines = read_table(path)
    if target not in header:
        raise TrainingError(
            f"{path}: target column {target!r} not found; columns are: {', '.join(header)}"
        )
    for declared in sorted(categorical | numeric):
        if declared not in header:
            raise TrainingError(f"{path}: column {declared!r} given on the command line not found")
        if declared == target:
            raise TrainingError(
                f"{path}: column {declared!r} is the target; --categorical and --numeric "
                "set the type of feature columns only (use --task for the target)"
            )
        if declared in categorical and declared in numeric:
            raise TrainingError(
                f"{path}: column {declared!r} is given as both --categorical and --numeric; "
                "choose one"
            )
    target_index = header.index(target)
    columns: list[Column] = []
    values: list[list[Any]] = []
    for index, name in enumerate(header):
        if index == target_index:
            continue
        cells = [row[index] for row in rows]
        kind = _column_type(path, name, cells, lines, categorical, numeric)
        columns.append(Column(name, kind))
        values.append(_convert(path, name, cells, lines, kind))
    if not columns:
        raise TrainingError(f"{path}: no feature columns besides the target {target!r}")
    all_numeric = all(c.type == "number" for c in columns)
    features = np.empty((len(rows), len(columns)), dtype=np.float64 if all_numeric else object)
    for index, column_values in enumerate(values):
        features[:, index] = column_values
    target_cells = [row[target_index] for row in rows]
    missing_target = [n for n, cell in zip(lines, target_cells, strict=True) if is_missing(cell)]
    if missing_target:
        raise TrainingError(
            f"{path}: target column {target!r} is empty on line {missing_target[0]} "
            f"({len(missing_target)} rows in all); drop those rows or fill them in"
        )
    resolved_task, target_values = _target(path, target, target_cells, task)
    return Dataset(
        name=path.stem,
        source=f"csv:{path}",
        columns=columns,
        features=features,
        target=target_values,
        target_name=target,
        task=resolved_task,
    )


def _parse_number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _column_type(
    path: Path,
    name: str,
    cells: list[str],
    lines: list[int],
    categorical: frozenset[str],
    numeric: frozenset[str],
) -> FeatureType:
    if name in categorical:
        return "category"
    if name in numeric:
        return "number"
    present = [(line, c) for line, c in zip(lines, cells, strict=True) if not is_missing(c)]
    if not present:
        raise TrainingError(f"{path}: column {name!r} has no values")
    bad = [(line, c) for line, c in present if _parse_number(c) is None]
    if not bad:
        return "number"
    if len(bad) == len(present):
        return "category"
    line, value = bad[0]
    share = 100 * (len(present) - len(bad)) // len(present)
    raise TrainingError(
        f"{path}: column {name!r} is {share}% numbers but line {line} has non-numeric "
        f"value {value!r}; fix the value, or pass --categorical {name} to treat the column "
        "as categories"
    )


def _convert(
    path: Path, name: str, cells: list[str], lines: list[int], kind: FeatureType
) -> list[Any]:
    if kind == "category":
        return [None if is_missing(c) else c.strip() for c in cells]
    out: list[float] = []
    for line, cell in zip(lines, cells, strict=True):
        if is_missing(cell):
            out.append(math.nan)
            continue
        value = _parse_number(cell)
        if value is None:
            raise TrainingError(
                f"{path}: numeric column {name!r} has non-numeric value {cell!r} on line {line}"
            )
        out.append(value)
    return out


def _target(
    path: Path, name: str, cells: list[str], task: Task | None
) -> tuple[Task, npt.NDArray[Any]]:
    stripped = [c.strip() for c in cells]
    numbers = [_parse_number(c) for c in stripped]
    all_numeric = all(n is not None for n in numbers)
    integral = all_numeric and all(float(n).is_integer() for n in numbers if n is not None)
    if task is None:
        few = len(set(stripped)) <= MAX_CLASSES_FOR_AUTO
        task = "classification" if not all_numeric or (integral and few) else "regression"
    if task == "regression":
        if not all_numeric:
            bad = next(c for c, n in zip(stripped, numbers, strict=True) if n is None)
            raise TrainingError(f"{path}: regression target {name!r} has non-numeric value {bad!r}")
        return task, np.asarray(numbers, dtype=np.float64)
    if integral:
        labels = [int(float(c)) for c in stripped]
        # Integers only when no two labels become one: "01" and "1" are two account
        # codes, not one class (while "1.0" and "2.0" are the classes 1 and 2).
        if len(set(labels)) == len(set(stripped)):
            return task, np.asarray(labels, dtype=np.int64)
    return task, np.asarray(stripped, dtype=str)
