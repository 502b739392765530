"""Turn client data into the exact array a model takes, or say precisely what is wrong.

A `FeatureSchema` is built once per model version from its manifest. Checks are
vectorised over the whole batch; the per-value slow path runs only for object
(mixed-type) input or to describe a failure.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import le
from typing import Any

import numpy as np
import numpy.typing as npt

from tabserve.artifact.manifest import CategoryStats, Feature, Manifest, NumericStats
from tabserve.service.core.errors import InvalidInputError, Problem, TooLargeError

MAX_PROBLEMS = 20
# The largest magnitude a number may have. Tree models compute in float32, where a
# larger value becomes infinity and scikit-learn raises; no tabular feature needs more.
MAX_MAGNITUDE = float(np.finfo(np.float32).max)
# Up to this many rows, comparing a flat list of JSON numbers in Python beats numpy's
# per-call overhead (1.1 against 4.5 µs for one row of 20 features).
_PYTHON_CHECK_ROWS = 4
_RANGE = f"a number between {-MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g}"
RECORD = "an object keyed by feature name"


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    """Rows ready for the model, with per-feature counts of out-of-range values."""

    features: npt.NDArray[Any]
    rows: int
    out_of_range: npt.NDArray[np.intp]
    any_out_of_range: bool = True
    """False when no value is out of range (then `out_of_range` is all zeros)."""


class FeatureSchema:
    """A model version's inputs: names, order, types, categories and training ranges."""

    def __init__(self, manifest: Manifest, *, max_rows: int, reject_out_of_range: bool) -> None:
        self.names = manifest.feature_names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.width = len(self.names)
        self.max_rows = max_rows
        self.reject_out_of_range = reject_out_of_range
        self.missing_allowed = np.asarray(manifest.missing_allowed, dtype=bool)
        self.supports_missing = bool(self.missing_allowed.any())
        self.numeric = [i for i, f in enumerate(manifest.features) if f.type == "number"]
        self.categorical = [i for i, f in enumerate(manifest.features) if f.type == "category"]
        self.all_numeric = not self.categorical
        self.categories: dict[int, frozenset[str] | None] = {}
        """Known categories per categorical feature; None: any string (no statistics)."""
        self.low = np.full(self.width, -np.inf)
        self.high = np.full(self.width, np.inf)
        self.example: list[float | str] = []
        for i, feature in enumerate(manifest.features):
            stats = feature.stats
            if isinstance(stats, NumericStats):
                self.low[i], self.high[i] = stats.min, stats.max
                self.example.append(stats.quantiles["p50"])
            elif isinstance(stats, CategoryStats):
                self.categories[i] = frozenset(stats.categories)
                top = int(np.argmax(stats.frequencies)) if stats.frequencies else 0
                self.example.append(stats.categories[top] if stats.categories else "")
            else:
                self._without_statistics(i, feature)
        self._numeric_idx = np.asarray(self.numeric, dtype=np.intp)
        self._all_columns = np.arange(self.width)
        # When every training range is finite and bounded, a value inside its range is
        # also finite, present and bounded: one comparison accepts the common batch.
        self._ranges_bounded = bool(
            self.all_numeric
            and np.isfinite(self.low).all()
            and np.isfinite(self.high).all()
            and np.abs(self.low).max(initial=0.0) <= MAX_MAGNITUDE
            and np.abs(self.high).max(initial=0.0) <= MAX_MAGNITUDE
        )
        self._no_counts = np.zeros(self.width, dtype=np.intp)
        self._no_counts.flags.writeable = False
        self._low_rows = [self.low.tolist() * n for n in range(_PYTHON_CHECK_ROWS + 1)]
        self._high_rows = [self.high.tolist() * n for n in range(_PYTHON_CHECK_ROWS + 1)]

    def _without_statistics(self, i: int, feature: Feature) -> None:
        """A feature imported without reference data: its type alone, no range or list.

        The example is what the import checked the model takes: 0 and the empty string.
        """
        if feature.type == "number":
            self.example.append(0.0)
            return
        boolean = feature.dtype is not None and feature.dtype.name in {"bool", "boolean"}
        self.categories[i] = frozenset({"False", "True"}) if boolean else None
        self.example.append("False" if boolean else "")

    def example_batch(self) -> ValidatedBatch:
        """One typical row (medians, most frequent categories): used to warm models up."""
        return self.from_rows([self.example])

    # --- entry points, one per input layout -------------------------------------------

    def from_matrix(self, data: npt.NDArray[Any]) -> ValidatedBatch:
        """A [rows, features] array in manifest order (numeric, or object for mixed types)."""
        if data.ndim != 2 or data.shape[1] != self.width:
            raise InvalidInputError.of(
                "shape",
                [
                    Problem(
                        "input shape",
                        f"[rows, {self.width}] with features in the order "
                        f"{', '.join(self.names[:8])}{', ...' if self.width > 8 else ''}",
                        list(data.shape),
                    )
                ],
            )
        self._check_rows(data.shape[0])
        if data.dtype == object or data.dtype.kind in "US":
            return self._from_objects(np.asarray(data, dtype=object))
        if data.dtype.kind not in "fiub":
            raise InvalidInputError.of(
                "type", [Problem("input datatype", "numbers", str(data.dtype))]
            )
        if not self.all_numeric:
            column = self.categorical[0]
            raise InvalidInputError.of(
                "type",
                [
                    Problem(
                        self.names[column],
                        "a category as a string; send one tensor per feature (BYTES for "
                        "categorical ones) or records by name",
                        "a numeric tensor",
                        index=column,
                    )
                ],
            )
        return self._finish_numeric(np.asarray(data, dtype=np.float64))

    def from_columns(self, columns: Mapping[str, npt.NDArray[Any]]) -> ValidatedBatch:
        """One 1-D array per feature, keyed by feature name."""
        self._check_names(columns.keys())
        lengths = {name: len(values) for name, values in columns.items()}
        rows = next(iter(lengths.values()))
        uneven = [n for n, length in lengths.items() if length != rows]
        if uneven:
            raise InvalidInputError.of(
                "shape",
                [
                    Problem(n, f"{rows} values like {self.names[0]!r}", f"{lengths[n]} values")
                    for n in uneven
                ],
            )
        self._check_rows(rows)
        if self.all_numeric and all(columns[n].dtype.kind in "fiub" for n in self.names):
            matrix = np.empty((rows, self.width), dtype=np.float64)
            for i, name in enumerate(self.names):
                matrix[:, i] = columns[name]
            return self._finish_numeric(matrix)
        mixed = np.empty((rows, self.width), dtype=object)
        for i, name in enumerate(self.names):
            mixed[:, i] = columns[name]
        return self._from_objects(mixed)

    def from_records(self, records: Sequence[Any]) -> ValidatedBatch:
        """Rows as objects keyed by feature name (anything else is refused, by row)."""
        self._check_rows(len(records))
        problems: list[Problem] = []
        for row, record in enumerate(records):
            if isinstance(record, Mapping):
                problems += self._name_problems(record.keys(), row)
            else:
                problems.append(Problem("record", RECORD, record, row=row))
            if len(problems) >= MAX_PROBLEMS:
                break
        if problems:
            raise InvalidInputError.of(_names_reason(problems), problems[:MAX_PROBLEMS])
        return self._from_objects(
            np.asarray([[r[n] for n in self.names] for r in records], dtype=object).reshape(
                len(records), self.width
            )
        )

    def from_rows(self, rows: Sequence[Sequence[Any]]) -> ValidatedBatch:
        """Rows as lists in manifest order (JSON values)."""
        self._check_rows(len(rows))
        bad = [i for i, row in enumerate(rows) if not isinstance(row, list | tuple)]
        bad += [i for i, row in enumerate(rows) if i not in bad and len(row) != self.width]
        if bad:
            got = rows[bad[0]]
            raise InvalidInputError.of(
                "shape",
                [Problem(f"row {bad[0]}", f"a list of {self.width} values", got)],
            )
        matrix = np.empty((len(rows), self.width), dtype=object)
        for i, row in enumerate(rows):
            matrix[i, :] = list(row)
        return self._from_objects(matrix)

    # --- checks -------------------------------------------------------------------------

    def _check_rows(self, rows: int) -> None:
        if rows == 0:
            raise InvalidInputError.of("shape", [Problem("rows", "at least one row", 0)])
        if rows > self.max_rows:
            raise TooLargeError(
                f"request has {rows} rows; at most {self.max_rows} are allowed per request"
            )

    def _check_names(self, given: Any) -> None:
        problems = self._name_problems(given, None)
        if problems:
            raise InvalidInputError.of(_names_reason(problems), problems)

    def _name_problems(self, given: Any, row: int | None) -> list[Problem]:
        """The features missing from `given` and its names that are no feature."""
        names = set(given)
        missing = [n for n in self.names if n not in names]
        unknown = sorted(names - set(self.index), key=str)
        problems = [
            Problem(n, "a value (the feature is required)", None, index=self.index[n], row=row)
            for n in missing
        ]
        # The first few only: a body of a million unknown keys must not cost a million
        # suggestions (or details).
        problems += [
            Problem("feature name", f"one of {self.names}{did_you_mean(n, self.names)}", n, row=row)
            for n in unknown[:MAX_PROBLEMS]
        ]
        return problems

    def _from_objects(self, data: npt.NDArray[np.object_]) -> ValidatedBatch:
        """Check each value of a mixed-type matrix; numbers become floats."""
        problems: list[Problem] = []
        numbers = np.empty((data.shape[0], len(self.numeric)), dtype=np.float64)
        for j, i in enumerate(self.numeric):
            for row, value in enumerate(data[:, i]):
                number = _as_number(value)
                if number is None:
                    expected = _RANGE if _is_whole(value) else "a number"
                    problems.append(Problem(self.names[i], expected, value, index=i, row=row))
                else:
                    numbers[row, j] = number
                if len(problems) >= MAX_PROBLEMS:
                    break
        for i in self.categorical:
            allowed = self.categories[i]
            for row, value in enumerate(data[:, i]):
                if value is None and self.missing_allowed[i]:
                    continue
                if allowed is None:
                    if not isinstance(value, str):
                        problems.append(Problem(self.names[i], "a string", value, index=i, row=row))
                elif not isinstance(value, str) or value not in allowed:
                    what = "a string" if not isinstance(value, str) else "a known category"
                    problems.append(
                        Problem(
                            self.names[i],
                            f"{what}: one of {sorted(allowed)}",
                            value,
                            index=i,
                            row=row,
                        )
                    )
                if len(problems) >= MAX_PROBLEMS:
                    break
        if problems:
            raise InvalidInputError.of(_reason(problems, self.categories), problems)
        if self.all_numeric:
            return self._finish_numeric(numbers)
        checked = self._check_numbers(numbers, self._numeric_idx)
        out = data.copy()
        for j, i in enumerate(self.numeric):
            out[:, i] = numbers[:, j]
        return ValidatedBatch(out, data.shape[0], checked, bool(checked.any()))

    def accept_in_range(self, matrix: npt.NDArray[np.float64]) -> ValidatedBatch | None:
        """The batch when every value lies within its training range, else None.

        `matrix` must be float64 of shape [1..max_rows, width]. A None says only that
        this shortcut does not apply (out of range, missing, non-finite, or a schema
        with categories or unbounded ranges): `from_matrix` then checks in full.
        """
        if self._ranges_bounded and ((matrix >= self.low) & (matrix <= self.high)).all():
            return ValidatedBatch(matrix, matrix.shape[0], self._no_counts, False)
        return None

    def accept_flat(self, values: list[int | float], rows: int) -> ValidatedBatch | None:
        """`accept_in_range` for a row-major list of `rows * width` JSON numbers.

        The values must be int or float (not bool); None means only that the shortcut
        does not apply. Python compares ints with floats exactly, so a value that
        passes here stays within its range as float64.
        """
        if not self._ranges_bounded:
            return None
        if rows <= _PYTHON_CHECK_ROWS:
            if not (
                all(map(le, self._low_rows[rows], values))
                and all(map(le, values, self._high_rows[rows]))
            ):
                return None
            matrix = np.asarray(values, dtype=np.float64).reshape(rows, self.width)
            return ValidatedBatch(matrix, rows, self._no_counts, False)
        try:
            matrix = np.asarray(values, dtype=np.float64).reshape(rows, self.width)
        except OverflowError:  # an integer beyond float64
            return None
        return self.accept_in_range(matrix)

    def _finish_numeric(self, matrix: npt.NDArray[np.float64]) -> ValidatedBatch:
        accepted = self.accept_in_range(matrix)
        if accepted is not None:
            return accepted
        counts = self._check_numbers(matrix, self._all_columns)
        return ValidatedBatch(matrix, matrix.shape[0], counts, bool(counts.any()))

    def _check_numbers(
        self, numbers: npt.NDArray[np.float64], columns: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.intp]:
        """Finite-ness, missing values and training ranges; returns out-of-range counts."""
        counts = np.zeros(self.width, dtype=np.intp)
        if numbers.size == 0:
            return counts
        bounded = np.abs(numbers) <= MAX_MAGNITUDE  # False for NaN and infinities too
        if not bounded.all():
            missing = np.isnan(numbers)
            infinite = np.isinf(numbers)
            if infinite.any():
                raise InvalidInputError.of(
                    "non_finite", self._where(numbers, infinite, columns, "a finite number")
                )
            huge = ~bounded & ~missing
            if huge.any():
                raise InvalidInputError.of(
                    "too_large_number", self._where(numbers, huge, columns, _RANGE)
                )
            refused = missing & ~self.missing_allowed[columns]
            if refused.any():
                raise InvalidInputError.of(
                    "missing_value",
                    self._where(
                        numbers,
                        refused,
                        columns,
                        "a number (this model does not accept missing values)"
                        if not self.supports_missing
                        else "a number (the model cannot take this feature missing)",
                    ),
                )
        outside = (numbers < self.low[columns]) | (numbers > self.high[columns])
        if outside.any():
            if self.reject_out_of_range:
                problems = self._where(numbers, outside, columns, "")
                for k, p in enumerate(problems):
                    i = p.index if p.index is not None else 0
                    problems[k] = Problem(
                        p.field,
                        f"a value within the training range [{self.low[i]:g}, {self.high[i]:g}]",
                        p.value,
                        index=p.index,
                        row=p.row,
                    )
                raise InvalidInputError.of("out_of_range", problems)
            counts[columns] = outside.sum(axis=0)
        return counts

    def _where(
        self,
        numbers: npt.NDArray[np.float64],
        mask: npt.NDArray[np.bool_],
        columns: npt.NDArray[np.intp],
        expected: str,
    ) -> list[Problem]:
        rows, cols = np.nonzero(mask)
        problems = []
        for row, col in zip(
            rows[:MAX_PROBLEMS].tolist(), cols[:MAX_PROBLEMS].tolist(), strict=True
        ):
            i = int(columns[col])
            value = float(numbers[row, col])
            problems.append(Problem(self.names[i], expected, _json_number(value), index=i, row=row))
        return problems


def did_you_mean(name: Any, names: Sequence[str]) -> str:
    """` (did you mean 'sepal_width_cm'?)` for the feature name closest to a typo, else ``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _names_reason(problems: list[Problem]) -> str:
    """The rejection metric's label for records whose names or shape do not fit."""
    if any(p.field == "record" for p in problems):
        return "shape"
    if any(p.index is not None for p in problems):
        return "missing_feature"
    return "unknown_feature"


def _as_number(value: Any) -> float | None:
    """A JSON number (or None/NaN for missing) as float; None for anything else.

    None too for an integer beyond float64 (JSON has no limit on digits): it could
    only become infinity.
    """
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _is_whole(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _reason(problems: list[Problem], categories: Mapping[int, Any]) -> str:
    """The rejection metric's label for problems found value by value."""
    if any(isinstance(p.value, str) for p in problems if p.index in categories):
        return "unknown_category"
    if all(p.expected == _RANGE for p in problems):
        return "too_large_number"
    return "type"


def _json_number(value: float) -> float | str | None:
    """A checked value as the error repeats it: a missing one (NaN) as null, as sent."""
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else str(value)
