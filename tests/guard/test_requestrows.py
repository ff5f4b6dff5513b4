"""The rows of a request as the outlier model's features (``guard/requestrows.py``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.guard import outliermodel, requestrows

NAMES = ["a", "b", "c"]


def _fitted(categorical: bool = False) -> Any:
    columns: dict[str, list[Any]] = {
        "a": [float(i) for i in range(40)],
        "b": [float(i % 7) for i in range(40)],
        "c": [["x", "y"][i % 2] if categorical else float(i * i) for i in range(40)],
    }
    return outliermodel.build(columns, NAMES, ["c"] if categorical else []).fitted


def _first_numbers(values: list[Any], where: str) -> list[float]:
    """Each value as ``_number`` read it before the all-numbers path: NaN for None."""
    found = []
    for index, value in enumerate(values):
        if value is None:
            found.append(math.nan)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise requestrows.RowError(f"{where}[{index}] must be a number")
        else:
            found.append(float(value))
    return found


@pytest.mark.parametrize(
    "row",
    [
        [1.5, 2, 3.25],
        [0, 0, 0],
        [1e308, -1e308, 5e-324],
        [1.5, None, 3.0],
        [None, None, None],
        [2**60 + 1, 1, 2.0],
    ],
)
def test_numeric_rows_are_the_values_as_floats(row: list[Any]) -> None:
    fitted = _fitted()
    assert fitted.all_numeric
    rows = requestrows.extract(fitted, {"instances": [row, row]}, Protocol.KSERVE_V1, Verb.PREDICT)
    assert rows is not None
    assert rows.categorical == []
    expected = np.asarray([_first_numbers(row, "instances[0]")] * 2)
    assert rows.numeric.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0, True, 3.0], "instances[0][1] must be a number"),
        ([1.0, 2.0, "3"], "instances[0][2] must be a number"),
        ([[1.0], 2.0, 3.0], "instances[0][0] must be a number"),
        ([1.0, 2.0], "instances[0] has 2 values; the model takes 3"),
    ],
)
def test_values_that_are_not_numbers_are_errors_naming_where(row: list[Any], message: str) -> None:
    with pytest.raises(requestrows.RowError, match=message.replace("[", r"\[").replace("]", r"\]")):
        requestrows.extract(_fitted(), {"instances": [row]}, Protocol.KSERVE_V1, Verb.PREDICT)


def test_categorical_features_keep_their_column() -> None:
    fitted = _fitted(categorical=True)
    assert not fitted.all_numeric
    rows = requestrows.extract(
        fitted, {"instances": [[1.0, 2, "x"], [3, None, None]]}, Protocol.KSERVE_V1, Verb.PREDICT
    )
    assert rows is not None
    assert rows.numeric.tolist()[0] == [1.0, 2.0]
    assert rows.numeric[1, 0] == 3.0
    assert math.isnan(rows.numeric[1, 1])
    assert rows.categorical == [["x", None]]


def test_one_row_and_no_rows_keep_their_shape() -> None:
    fitted = _fitted()
    row = [1.5, 2.5, 3.5]
    document = {"instances": [row]}
    one = requestrows.extract(fitted, document, Protocol.KSERVE_V1, Verb.PREDICT)
    assert one is not None
    assert one.numeric.shape == (1, 3)
    assert one.numeric.dtype == np.float64
    assert one.numeric.tolist() == [row]
    one.numeric[0, 0] = 9.0  # the matrix is its own, not a view of the document
    assert document == {"instances": [[1.5, 2.5, 3.5]]}
    none = requestrows.extract(fitted, {"instances": []}, Protocol.KSERVE_V1, Verb.PREDICT)
    assert none is not None
    assert none.numeric.shape == (0, 3)
    assert none.categorical == []
