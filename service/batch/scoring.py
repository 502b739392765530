"""Score one chunk or partition: check it with the model's schema, predict, name the answers.

A chunk that fails its checks either stops the run (`fail`, naming the source, row,
feature, value and what was expected) or loses only its refused rows (`skip`), which
come back with their reasons for the side file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from tabserve.service.batch.columns import feature_columns
from tabserve.service.batch.errors import BatchError
from tabserve.service.batch.model import BatchModel
from tabserve.service.core.errors import InvalidInputError, Problem
from tabserve.service.core.validation import ValidatedBatch
from tabserve.service.protocol.records import record_columns

OnError = Literal["fail", "skip"]
# Refused rows are found in blocks this long: a block is checked again after each
# failing check drops the rows it named, so one bad row costs a block, not the chunk.
_BLOCK_ROWS = 512
_SHOWN = 5


@dataclass(frozen=True)
class Scored:
    """A chunk's answers (carried columns, then predictions) and its refused rows."""

    output: pd.DataFrame
    refused: pd.DataFrame


class Scorer:
    """Scores chunks of one input with one model; `carried` columns go to the output."""

    def __init__(
        self, model: BatchModel, carried: tuple[str, ...], on_error: OnError, *, textual: bool
    ) -> None:
        self.model = model
        self.carried = carried
        self.on_error = on_error
        self.textual = textual

    def score(self, frame: pd.DataFrame, source: str, first_row: int = 0) -> Scored:
        """The answers for `frame`, whose first row is row `first_row` of `source`.

        Raises BatchError for a refused row (with `fail`) or a chunk that cannot be
        checked at all (a feature's column missing).
        """
        if frame.empty:
            return Scored(self.output_meta(frame), self.refused_meta(frame))
        columns = feature_columns(frame, self.model.schema, textual=self.textual)
        try:
            batch = self.model.schema.from_columns(columns)
        except InvalidInputError as exc:
            self._refuse_or_go_on(exc, source, first_row)
            refused = self._refused_rows(columns, len(frame))
            side = self._refused(frame, refused, source, first_row)
            keep = np.ones(len(frame), dtype=bool)
            keep[list(refused)] = False
            if not keep.any():
                return Scored(self.output_meta(frame), side)
            batch = self.model.schema.from_columns({n: v[keep] for n, v in columns.items()})
            return Scored(self._answers(frame[keep], batch), side)
        return Scored(self._answers(frame, batch), self.refused_meta(frame))

    def output_meta(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """The output's columns and types, with no rows (what Dask calls `meta`)."""
        labels, proba = self.model.example_prediction()
        answers = record_columns(labels[:0], None if proba is None else proba[:0], self._classes)
        carried = inputs[list(self.carried)].iloc[:0].reset_index(drop=True)
        return carried.assign(**answers)

    def refused_meta(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """The side file's columns and types, with no rows."""
        return self._refused(inputs.iloc[:0], {}, "", 0)

    @property
    def _classes(self) -> list[str]:
        return self.model.classes

    def _answers(self, frame: pd.DataFrame, batch: ValidatedBatch) -> pd.DataFrame:
        prediction = self.model.predict(batch)
        answers = record_columns(prediction.predict, prediction.proba, self._classes)
        return frame[list(self.carried)].reset_index(drop=True).assign(**answers)

    def _refuse_or_go_on(self, exc: InvalidInputError, source: str, first_row: int) -> None:
        """Raise unless the run skips refused rows and every problem names its row."""
        if any(p.row is None for p in exc.problems):
            raise BatchError(f"{source}: {exc.message}") from exc
        if self.on_error == "fail":
            shown = "; ".join(describe(p, source, first_row) for p in exc.problems[:_SHOWN])
            more = len(exc.problems) - _SHOWN
            raise BatchError(
                f"refused: {shown}{f' (and {more} more)' if more > 0 else ''}. "
                "With --on-error skip, refused rows and their reasons go to a side file "
                "and the others are scored"
            ) from exc

    def _refused_rows(
        self, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> dict[int, list[Problem]]:
        """Every refused row of the chunk (by position) with its problems."""
        refused: dict[int, list[Problem]] = {}
        for start in range(0, rows, _BLOCK_ROWS):
            left = np.arange(start, min(rows, start + _BLOCK_ROWS))
            while left.size:
                try:
                    self.model.schema.from_columns({n: v[left] for n, v in columns.items()})
                    break
                except InvalidInputError as exc:
                    named = sorted({p.row for p in exc.problems if p.row is not None})
                    for p in exc.problems:
                        assert p.row is not None  # a rowless problem failed the whole chunk
                        refused.setdefault(int(left[p.row]), []).append(p)
                    left = np.delete(left, named)
        return dict(sorted(refused.items()))

    def _refused(
        self, frame: pd.DataFrame, refused: dict[int, list[Problem]], source: str, first_row: int
    ) -> pd.DataFrame:
        """The side file's rows: where, the carried columns, the first problem, all of them."""
        positions = list(refused)
        first = [problems[0] for problems in refused.values()]
        where = {
            "source": pd.Series([source] * len(positions), dtype="string"),
            "row": pd.Series([first_row + p for p in positions], dtype="int64"),
        }
        carried = frame[list(self.carried)].iloc[positions].reset_index(drop=True)
        reasons = {
            "feature": [p.field for p in first],
            "value": [repr(p.value) for p in first],
            "expected": [p.expected for p in first],
            "error": ["; ".join(describe(p) for p in ps) for ps in refused.values()],
        }
        text = {k: pd.Series(v, dtype="string") for k, v in reasons.items()}
        return pd.concat([pd.DataFrame(where), carried, pd.DataFrame(text)], axis=1)


def describe(problem: Problem, source: str | None = None, first_row: int = 0) -> str:
    """A problem as the API words it, at its row of the source when one is given."""
    text = replace(problem, row=None).describe()
    if source is None or problem.row is None:
        return text
    return f"{source}, row {first_row + problem.row}: {text}"
