"""The input rows of a parsed inference request, as the outlier model's features. Pure.

KServe v1: ``instances`` (or ``inputs``) rows, each a list of values in feature order or
an object keyed by feature name. Open Inference v2: one tensor of shape ``[rows,
features]`` (or ``[features]``, one row), or one tensor per feature, named as the
feature, of shape ``[rows]`` or ``[rows, 1]``. Numeric features become a float matrix
(NaN for missing), categorical ones lists of strings (None for missing). A row that does
not fit the features is an error naming where, never a guess.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.guard.outliermodel import category_text
from modelshield.guard.outliertypes import Fitted, FloatArray


@dataclasses.dataclass(frozen=True)
class Rows:
    """Numeric features (rows x numeric features) and categorical columns."""

    numeric: FloatArray
    categorical: list[list[str | None]]

    @property
    def count(self) -> int:
        """How many rows."""
        return int(self.numeric.shape[0])


class RowError(ValueError):
    """Rows that do not fit the model's features."""


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(f"{where} must be a number")
    return float(value)


def _split(fitted: Fitted, values: list[Any], where: str) -> tuple[list[float], list[str | None]]:
    if len(values) != len(fitted.names):
        raise RowError(f"{where} has {len(values)} values; the model takes {len(fitted.names)}")
    if fitted.all_numeric:
        # The usual row, every value a plain float or int: what ``_number`` gives each,
        # without a call and a message per value (and without a copy when all are floats:
        # the matrix is built from the list, never changed).
        floats = True
        for value in values:
            kind = type(value)
            if kind is not float:
                if kind is not int:
                    break
                floats = False
        else:
            return (values if floats else [float(value) for value in values]), []
    numbers: list[float] = []
    categories: list[str | None] = []
    for index, (value, numeric) in enumerate(zip(values, fitted.numeric, strict=True)):
        if numeric:
            numbers.append(_number(value, f"{where}[{index}]"))
        else:
            categories.append(category_text(value))
    return numbers, categories


def _assemble(fitted: Fitted, split: list[tuple[list[float], list[str | None]]]) -> Rows:
    if fitted.all_numeric and split:
        # Rows of equal length (``_split`` checked each), no categorical column.
        return Rows(np.asarray([numbers for numbers, _ in split], dtype=np.float64), [])
    width = sum(fitted.numeric)
    numeric = np.asarray([numbers for numbers, _ in split], dtype=np.float64).reshape(
        len(split), width
    )
    columns = [list(c) for c in zip(*(cats for _, cats in split), strict=True)] if split else []
    if not columns:
        columns = [[] for _ in range(len(fitted.names) - width)]
    return Rows(numeric, columns)


def _v1(fitted: Fitted, document: dict[str, Any]) -> Rows:
    key = "instances" if "instances" in document else "inputs"
    split = []
    for index, row in enumerate(document[key]):
        where = f"{key}[{index}]"
        if isinstance(row, dict):
            missing = [name for name in fitted.names if name not in row][:3]
            if missing:
                raise RowError(f"{where}: missing features {missing}")
            row = [row[name] for name in fitted.names]
        if not isinstance(row, list):
            raise RowError(f"{where} must be a list of values or an object of features")
        split.append(_split(fitted, row, where))
    return _assemble(fitted, split)


def _flat(data: Any, where: str) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    if not out:
        raise RowError(f"{where} is empty")
    return out


def _v2(fitted: Fitted, document: dict[str, Any]) -> Rows:
    inputs = document["inputs"]
    width = len(fitted.names)
    if (len(inputs) == 1 and inputs[0].get("name") not in fitted.names) or width == 1:
        tensor = inputs[0]
        values = _flat(tensor["data"], "inputs[0].data")
        if len(values) % width:
            raise RowError(f"inputs[0] has {len(values)} values, not rows of {width} features")
        rows = [values[i : i + width] for i in range(0, len(values), width)]
        return _assemble(
            fitted, [_split(fitted, r, f"inputs[0] row {i}") for i, r in enumerate(rows)]
        )
    by_name = {tensor.get("name"): tensor for tensor in inputs}
    missing = [name for name in fitted.names if name not in by_name][:3]
    if missing:
        raise RowError(f"inputs: one tensor per feature; missing {missing}")
    columns = [_flat(by_name[name]["data"], f"input {name!r}") for name in fitted.names]
    count = len(columns[0])
    if any(len(column) != count for column in columns):
        raise RowError("inputs: every feature's tensor has the same number of rows")
    return _assemble(
        fitted,
        [_split(fitted, [c[row] for c in columns], f"row {row}") for row in range(count)],
    )


def extract(fitted: Fitted, document: Any, protocol: Protocol, verb: Verb) -> Rows | None:
    """The rows of a prediction request (after check_shape); None for other requests."""
    if not isinstance(document, dict):
        return None
    if protocol is Protocol.KSERVE_V1 and verb in (Verb.PREDICT, Verb.EXPLAIN):
        return _v1(fitted, document)
    if protocol is Protocol.OPEN_INFERENCE_V2 and verb is Verb.INFER:
        return _v2(fitted, document)
    return None
