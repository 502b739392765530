"""A chunk of a file as the feature columns `FeatureSchema.from_columns` checks.

Parquet columns keep their types, so a number stored as text is refused as the
API refuses `"5.1"` for a number. CSV has no types: its cells are read as text,
cells that training counts as missing become missing, and numeric features are
parsed; a cell that is no number stays text so the check names it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tabserve.service.core.validation import FeatureSchema

MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
"""CSV cells (stripped, lower-cased) that are missing values: training's own list
(`training.csv_table.MISSING_MARKERS`, which the service may not import; a test
holds the two equal)."""


def feature_columns(
    frame: pd.DataFrame, schema: FeatureSchema, *, textual: bool
) -> dict[str, npt.NDArray[Any]]:
    """One array per feature, keyed by name; `textual` for CSV (every cell a string)."""
    numeric = set(schema.numeric)
    columns = {}
    for index, name in enumerate(schema.names):
        series = frame[name]
        if textual:
            missing = _missing_cells(series)
            columns[name] = (
                _numbers_from_text(series, missing)
                if index in numeric
                else _objects(series.mask(missing))
            )
        elif index in numeric and _is_number_dtype(series.dtype):
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            columns[name] = _objects(series)
    return columns


def _missing_cells(text: pd.Series) -> pd.Series:
    return text.isna() | text.astype(str).str.strip().str.lower().isin(MISSING_MARKERS)


def _numbers_from_text(text: pd.Series, missing: pd.Series) -> npt.NDArray[Any]:
    """Parsed numbers (missing cells as NaN); unparseable cells stay strings.

    Parsed as Python parses them (correctly rounded), so a CSV cell gives the float
    that the same digits in a JSON request give; `pandas.to_numeric` may differ in
    the last bit.
    """
    cells = text.mask(missing)
    try:
        values: npt.NDArray[Any] = cells.astype(np.float64).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        return values
    except (ValueError, TypeError):
        pass  # a cell is no number: parse cell by cell to keep it for the check
    mixed: npt.NDArray[Any] = np.empty(len(cells), dtype=object)
    for i, (cell, absent) in enumerate(zip(cells.tolist(), missing.tolist(), strict=True)):
        mixed[i] = math.nan if absent else _number_or_text(cell)
    return mixed


def _number_or_text(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


def _objects(series: pd.Series) -> npt.NDArray[Any]:
    """Python values, with every kind of missing (NaN, NA, None) as None."""
    values: npt.NDArray[Any] = series.to_numpy(dtype=object)
    values[series.isna().to_numpy()] = None
    return values


def _is_number_dtype(dtype: Any) -> bool:
    # A boolean is no number: the API refuses `true` for a numeric feature too.
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))
