"""What an exact method gives for a batch, in the columns the final estimator sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Space = Literal["probability", "margin", "value"]
"""What attributions add up to: `predict_proba`'s probabilities, the raw score before the
link (log-odds; per-class scores before softmax), or the regression prediction itself."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Attribution:
    """Per row and output: the base value, one attribution per column, the model's output.

    `output` is computed by the model itself, not as a sum, so `base + values.sum(-1)`
    against it is a real check of exactness.
    """

    values: Floats
    """[rows, outputs, columns]"""
    base: Floats
    """[rows, outputs]: the expected output (the same for every row)."""
    output: Floats
    """[rows, outputs]"""

    def worst_gap(self) -> tuple[int, float]:
        """The row whose attributions miss its output the most, and by how much (relative)."""
        gap = np.abs(self.base + self.values.sum(axis=2) - self.output)
        relative = (gap / np.maximum(1.0, np.abs(self.output))).max(axis=1)
        row = int(relative.argmax())
        return row, float(relative[row])


def per_output(values: npt.ArrayLike, rows: int, outputs: int) -> Floats:
    """Attributions shaped [rows, outputs, columns] from the [rows, columns] of one output
    or the [rows, outputs, columns] of several."""
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(rows, outputs, -1)


def column_of(values: npt.ArrayLike, rows: int) -> Floats:
    """A model's outputs as [rows, outputs] (one output: a column)."""
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(rows, -1)
