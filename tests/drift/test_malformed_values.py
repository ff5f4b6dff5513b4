"""No value gives a 500: any JSON in any position of any payload shape is a Batch or a 4xx.

On the code of issue 18 a record whose value was a list (``{"x0": [1, 2]}``) raised a
numpy broadcasting error out of the parser: HTTP 500 with a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies
from multidict import CIMultiDict

from modelshield.drift import layouts, payloads
from tests.support import driftsynthetic as synthetic

PROFILE = synthetic.profile()
LAYOUT = layouts.build(PROFILE, synthetic.COLUMNS)
LAYOUTS: dict[payloads.Stream, layouts.Layout] = {"request": LAYOUT}
NUMERIC_ONLY: dict[payloads.Stream, layouts.Layout] = {
    "request": layouts.build(PROFILE, synthetic.NUMERIC)
}

JSON_VALUES = strategies.recursive(
    strategies.none()
    | strategies.booleans()
    | strategies.integers(min_value=-(2**70), max_value=2**70)
    | strategies.floats(allow_nan=False, allow_infinity=False)
    | strategies.text(max_size=5),
    lambda children: (
        strategies.lists(children, max_size=3)
        | strategies.dictionaries(strategies.text(max_size=3), children, max_size=3)
    ),
    max_leaves=6,
)


def _check(body: object, layouts_by_stream: dict[payloads.Stream, layouts.Layout]) -> None:
    raw = json.dumps(body).encode()
    try:
        batch = payloads.parse(CIMultiDict(), raw, layouts_by_stream)
    except payloads.PayloadError as error:
        status = error.status
    else:
        status = 202
    assert 400 <= status < 500 or status == 202
    if status != 202:
        return
    assert batch is not None
    layout = layouts_by_stream["request"]
    assert batch.numeric.shape == (batch.rows, len(layout.numeric_columns))
    assert batch.categorical.shape == (batch.rows, len(layout.categorical_columns))


@pytest.mark.parametrize(
    "value",
    [[1, 2], [[1.0]], {"a": 1}, [], [None], "1,2", True, 10**400],
    ids=["list", "nested", "object", "empty-list", "list-of-null", "text", "bool", "huge"],
)
@pytest.mark.parametrize("layout", [LAYOUTS, NUMERIC_ONLY], ids=["mixed", "numeric"])
@pytest.mark.parametrize("shape", ["record", "row", "columns", "tensor"])
def test_a_malformed_value_in_any_shape_is_a_4xx_or_a_batch(
    value: Any, layout: dict[payloads.Stream, layouts.Layout], shape: str
) -> None:
    for position, name in enumerate(synthetic.COLUMNS[:7]):
        row: list[Any] = [0.5] * 6 + ["red"]
        row[position] = value
        record = dict(zip(synthetic.COLUMNS, row, strict=True))
        if shape == "record":
            body: object = {"instances": [record, dict(record)]}
        elif shape == "row":
            width = len(layout["request"].columns)
            body = {"instances": [row[:width], row[:width]]}
        elif shape == "columns":
            body = {"inputs": {key: [item, item] for key, item in record.items()}}
        else:
            body = {
                "inputs": [{"name": name, "shape": [2], "datatype": "FP64", "data": [value, value]}]
            }
        _check(body, layout)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(values=strategies.lists(JSON_VALUES, min_size=7, max_size=7))
def test_any_json_values_in_records_and_rows(values: list[Any]) -> None:
    record = dict(zip(synthetic.COLUMNS, values, strict=True))
    _check({"instances": [record]}, LAYOUTS)
    _check({"instances": [values, values]}, LAYOUTS)
    _check({"instances": [values[:6]]}, NUMERIC_ONLY)
    _check([record], LAYOUTS)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(body=JSON_VALUES, data=JSON_VALUES, shape=JSON_VALUES)
def test_any_json_body_or_tensor(body: Any, data: Any, shape: Any) -> None:
    _check(body, LAYOUTS)
    _check({"inputs": [{"name": "x0", "shape": shape, "datatype": "FP64", "data": data}]}, LAYOUTS)
    _check({"inputs": [{"name": "t", "shape": shape, "datatype": "BYTES", "data": data}]}, LAYOUTS)
