"""The predicted class of each row, read from the model's answer. Pure.

PRADA keeps its growing sets per predicted class (``probing``); the guard reads the class
from the answer it relays. KServe v1: each item of ``predictions`` — an integer or a
string is the class, a row of numbers (class probabilities or scores) gives the index of
its largest. Open Inference v2: the first output with one value per row — integer or
BYTES data is the class, a floating-point ``[rows, k]`` output (k > 1) gives the index of
each row's largest. A plain float is a regression output, not a class. Anything else (not
JSON, other shapes, a count that is not the request's) reads as no class (None): the
query then joins the client's class-less set.
"""

from __future__ import annotations

import json
from typing import Any

from modelshield.api.v1alpha1.apiprotection import Protocol

#: Longer strings are not taken for class names.
MAX_LABEL = 64
INT_DATATYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _largest(row: list[Any]) -> str | None:
    if len(row) < 2 or not all(_number(v) for v in row):
        return None
    return f"#{max(range(len(row)), key=lambda i: row[i])}"


def _label(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and len(value) <= MAX_LABEL:
        return value
    if isinstance(value, list):
        if len(value) == 1:
            return _label(value[0])
        return _largest(value)
    return None


def _v2(output: Any, rows: int) -> list[str | None] | None:
    if not isinstance(output, dict) or not isinstance(output.get("data"), list):
        return None
    data, shape, datatype = output["data"], output.get("shape"), output.get("datatype")
    if not isinstance(shape, list) or not shape or shape[0] != rows:
        return None
    if datatype in INT_DATATYPES or datatype == "BYTES":
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            return None
        flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
        if len(flat) != rows:
            return None
        return [_label(v) if not isinstance(v, float) else None for v in flat]
    if datatype in FLOAT_DATATYPES and len(shape) == 2 and isinstance(shape[1], int):
        width = shape[1]
        if width < 2:
            return None
        if len(data) == rows * width and all(_number(v) for v in data):
            return [_largest(data[i : i + width]) for i in range(0, len(data), width)]
        if len(data) == rows and all(isinstance(row, list) for row in data):
            return [_largest(row) for row in data]
    return None


def predicted_classes(body: bytes, protocol: Protocol, rows: int) -> list[str | None] | None:
    """One class (or None) per request row, or None when the answer names no classes."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    if protocol is Protocol.KSERVE_V1:
        predictions = document.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != rows:
            return None
        return [_label(p) for p in predictions]
    if protocol is Protocol.OPEN_INFERENCE_V2 and isinstance(document.get("outputs"), list):
        for output in document["outputs"]:
            found = _v2(output, rows)
            if found is not None and any(label is not None for label in found):
                return found
    return None
