"""Response hardening as first written, before it was made faster: the equivalence test
feeds the same answers to this and to the guard's and compares the bytes. Not used by the
guard."""

from __future__ import annotations

import json
from typing import Any

from modelshield.api.v1alpha1.apiprotection import Protocol
from modelshield.guard import hardening as guard_hardening


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _top_k(row: list[Any], k: int) -> list[Any]:
    if len(row) <= k or not all(_is_number(v) for v in row):
        return row
    keep = set(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])
    return [v if i in keep else 0.0 * v for i, v in enumerate(row)]


def _round(value: Any, decimals: int) -> Any:
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, list):
        return [_round(v, decimals) for v in value]
    return value


def _v1(predictions: Any, hardening: guard_hardening.Hardening) -> Any:
    def visit(node: Any) -> Any:
        if isinstance(node, list):
            if hardening.top_k is not None and node and all(_is_number(v) for v in node):
                node = _top_k(node, hardening.top_k)
            else:
                node = [visit(v) for v in node]
        if hardening.round_decimals is not None:
            node = _round(node, hardening.round_decimals)
        return node

    # A list of rows: each row is hardened; a flat list of numbers is one value per
    # instance (labels or regression outputs), not a row of classes.
    if isinstance(predictions, list) and all(_is_number(v) for v in predictions):
        return (
            _round(predictions, hardening.round_decimals)
            if hardening.round_decimals is not None
            else predictions
        )
    return visit(predictions)


def _v2(output: dict[str, Any], hardening: guard_hardening.Hardening) -> dict[str, Any]:
    if output.get("datatype") not in guard_hardening.FLOAT_DATATYPES or not isinstance(
        output.get("data"), list
    ):
        return output
    data = output["data"]
    shape = output.get("shape")
    if hardening.top_k is not None and isinstance(shape, list) and len(shape) == 2:
        width = shape[1]
        flat = isinstance(width, int) and width > 0 and all(_is_number(v) for v in data)
        if flat and len(data) == shape[0] * width:
            data = [
                v
                for i in range(0, len(data), width)
                for v in _top_k(data[i : i + width], hardening.top_k)
            ]
        elif all(isinstance(row, list) for row in data):
            data = [_top_k(row, hardening.top_k) for row in data]
    if hardening.round_decimals is not None:
        data = _round(data, hardening.round_decimals)
    return {**output, "data": data}


def first_harden(body: bytes, protocol: Protocol, hardening: guard_hardening.Hardening) -> bytes:
    """The answer with probabilities rounded and truncated; unchanged if not understood."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if not isinstance(document, dict):
        return body
    if protocol is Protocol.KSERVE_V1 and "predictions" in document:
        document["predictions"] = _v1(document["predictions"], hardening)
    elif protocol is Protocol.OPEN_INFERENCE_V2 and isinstance(document.get("outputs"), list):
        document["outputs"] = [
            _v2(output, hardening) if isinstance(output, dict) else output
            for output in document["outputs"]
        ]
    else:
        return body
    return json.dumps(document, separators=(",", ":")).encode()
