"""The in-range shortcuts of validation agree with the full check, on and off the bounds."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tabserve.service.core.validation import FeatureSchema


def iris_schema(client: TestClient) -> FeatureSchema:
    schema = client.app.state.tabserve.dataplane.model("iris").schema  # type: ignore[attr-defined]
    assert schema is not None
    return schema


def test_flat_lists_and_matrices_agree_with_the_full_check(client: TestClient) -> None:
    schema = iris_schema(client)
    rng = np.random.default_rng(0)
    low, high = schema.low, schema.high
    for rows in range(1, 8):  # both sides of the Python/numpy switch
        for trial in range(40):
            matrix = rng.uniform(low - 0.3, high + 0.3, size=(rows, schema.width))
            if trial % 4 == 0:  # exactly on the bounds
                matrix = np.where(rng.random(matrix.shape) < 0.5, low, high)
            values = matrix.ravel().tolist()
            if trial % 5 == 0:
                values = [round(v) for v in values]  # JSON integers
                matrix = np.asarray(values, dtype=np.float64).reshape(rows, schema.width)
            full = schema.from_matrix(matrix.copy())
            inside = not full.any_out_of_range
            assert inside == (not full.out_of_range.any())
            flat = schema.accept_flat(values, rows)
            direct = schema.accept_in_range(matrix.copy())
            assert (flat is not None) == inside == (direct is not None), (rows, values)
            if flat is not None:
                np.testing.assert_array_equal(flat.features, full.features)
                assert flat.rows == rows
                assert not flat.out_of_range.any()


def test_an_integer_beyond_float64_is_left_to_the_full_check(client: TestClient) -> None:
    schema = iris_schema(client)
    huge = 10**400
    assert schema.accept_flat([huge, 3.0, 1.0, 0.2], 1) is None
    assert schema.accept_flat([huge, 3.0, 1.0, 0.2] * 6, 6) is None
