"""Linear models: exact attributions in closed form, against the training means.

For a model `w . z + b` on the columns `z` it takes, the attribution of column c is
`w_c * (z_c - mean_c)` and the base value is `w . mean + b`: the expected output over
the training data, as every column's expectation is known. Classifiers are explained in
margin space (`decision_function`: log-odds for binary, per-class scores before
softmax), where they are linear; their probabilities are not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

from tabserve.service.core.explain.attribution import Attribution, Floats, Space, column_of
from tabserve.service.core.explain.methods import Method, UnsupportedError

LINEAR = (LogisticRegression, LinearRegression, Ridge, Lasso, ElasticNet)
TOLERANCE = 1e-9


def is_linear(final: Any) -> bool:
    """Whether `final` is one of the linear models explained here."""
    return isinstance(final, LINEAR)


def linear_method(final: Any, means: Floats) -> Method:
    """Closed-form attributions of `final` around `means` (one per column it takes)."""
    classifier = isinstance(final, LogisticRegression)
    coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
    if not classifier and coef.shape[0] != 1:
        raise UnsupportedError(f"{type(final).__name__} with {coef.shape[0]} targets")
    intercept = np.broadcast_to(
        np.asarray(final.intercept_, dtype=np.float64).reshape(-1), (coef.shape[0],)
    )
    base = coef @ means + intercept
    output = final.decision_function if classifier else final.predict

    def explain(x: Floats) -> Attribution:
        rows = x.shape[0]
        values = coef[np.newaxis, :, :] * (x - means)[:, np.newaxis, :]
        return Attribution(
            values, np.broadcast_to(base, (rows, base.size)), column_of(output(x), rows)
        )

    space: Space = "margin" if classifier else "value"
    return Method("linear", space, explain, TOLERANCE, outputs=int(coef.shape[0]))
