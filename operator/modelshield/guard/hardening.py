"""Response hardening: less information per answer, same shape. Pure.

Against extraction and inversion, an answer should carry no more than the client needs:
``round_decimals`` rounds every floating-point number of the predictions, ``top_k`` keeps
the k largest values of each row of class probabilities and returns the others as 0.
KServe v1: the numbers of ``predictions`` (a row: a list of numbers). Open Inference v2:
the ``data`` of each FP16/FP32/FP64 output (a row: the last dimension of a 2-D shape).
Integers (class labels) and everything else are left as they are; a body that is not
JSON of these shapes is returned unchanged (the guard only rewrites what it understands).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import orjson

from modelshield.api.v1alpha1.apiprotection import Protocol

FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
#: ``json.dumps(..., separators=(",", ":"))`` builds this encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: Where orjson's encoding may differ from json's (ensure_ascii, ``repr`` of floats): a
#: float in exponent form (orjson writes 1e-7 and 1e16, json 1e-07 and 1e+16) or written
#: out where json uses an exponent (orjson 0.00001 for json's 1e-05), an escape other than
#: the short ones both write, DEL (json escapes it). With none of these in orjson's ASCII
#: bytes they are json's (checked on millions of floats of every magnitude: the tests).
_ORJSON_MAY_DIFFER = re.compile(rb"[0-9][eE]|\.0000|\\u|\x7f")


@dataclasses.dataclass(frozen=True, slots=True)
class Hardening:
    """What to do to answers (None: not that)."""

    round_decimals: int | None = None
    top_k: int | None = None

    def stricter(self, other: Hardening) -> Hardening:
        """Both applied: the fewer decimals and the smaller k."""

        def least(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Hardening(
            least(self.round_decimals, other.round_decimals), least(self.top_k, other.top_k)
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _all_numbers(values: list[Any]) -> bool:
    """``all(_is_number(v) for v in values)``, a plain float or int decided by its type
    alone (a call per value cost more than the rest of the hardening)."""
    for value in values:
        kind = type(value)
        if kind is not float and kind is not int and not _is_number(value):
            return False
    return True


def _top_k(row: list[Any], k: int, *, numbers: bool = False) -> list[Any]:
    """The row with all but its k largest values made 0 (``numbers``: the caller found
    every value a number already)."""
    if len(row) <= k or not (numbers or _all_numbers(row)):
        return row
    if any(v != v for v in row):
        # NaN orders nothing: the sort as first written decides, whatever it does.
        keep = set(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])
    elif k == 1:
        best = 0
        for index in range(1, len(row)):
            if row[index] > row[best]:
                best = index
        keep = {best}
    else:
        # Largest first, ties in their order (a reversed sort is still stable): the same
        # k as sorting by (-value, index), without a tuple per value.
        keep = set(sorted(range(len(row)), key=row.__getitem__, reverse=True)[:k])
    return [v if i in keep else 0.0 * v for i, v in enumerate(row)]


def _round(value: Any, decimals: int) -> Any:
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, list):
        return [round(v, decimals) if isinstance(v, float) else _round(v, decimals) for v in value]
    return value


def _visit(node: Any, hardening: Hardening) -> Any:
    # A module-level function, not a closure: a nested function that calls itself is a
    # reference cycle (function, cell, closure tuple), so each answer left 4 objects to the
    # garbage collector, and the guard's young collections then promoted the requests in
    # flight towards full collections of every object in the process.
    if isinstance(node, list):
        if hardening.top_k is not None and node and _all_numbers(node):
            node = _top_k(node, hardening.top_k, numbers=True)
            if hardening.round_decimals is not None:
                # A row of numbers (floats and ints only): round() of each is what
                # _round gives (an int is its own rounding), without its type tests.
                decimals = hardening.round_decimals
                return [round(v, decimals) for v in node]
            return node
        else:
            # Each element visited is rounded already (rounding twice changes nothing).
            return [_visit(v, hardening) for v in node]
    if hardening.round_decimals is not None:
        node = _round(node, hardening.round_decimals)
    return node


def _v1(predictions: Any, hardening: Hardening) -> Any:
    # A list of rows: each row is hardened; a flat list of numbers is one value per
    # instance (labels or regression outputs), not a row of classes.
    if isinstance(predictions, list) and _all_numbers(predictions):
        return (
            _round(predictions, hardening.round_decimals)
            if hardening.round_decimals is not None
            else predictions
        )
    return _visit(predictions, hardening)


def _v2(output: dict[str, Any], hardening: Hardening) -> dict[str, Any]:
    if output.get("datatype") not in FLOAT_DATATYPES or not isinstance(output.get("data"), list):
        return output
    data = output["data"]
    shape = output.get("shape")
    if hardening.top_k is not None and isinstance(shape, list) and len(shape) == 2:
        width = shape[1]
        flat = isinstance(width, int) and width > 0 and _all_numbers(data)
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


def _dumps(document: Any) -> bytes:
    """``json.dumps(document, separators=(",", ":")).encode()`` for a document orjson
    parsed (no NaN or infinity, integers within 64 bits, keys all strings): orjson's bytes
    where they cannot differ from json's, json's otherwise."""
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:  # nesting deeper than orjson writes
        return _ENCODER.encode(document).encode()
    if encoded.isascii() and _ORJSON_MAY_DIFFER.search(encoded) is None:
        return encoded
    return _ENCODER.encode(document).encode()


def harden(body: bytes, protocol: Protocol, hardening: Hardening) -> bytes:
    """The answer with probabilities rounded and truncated; unchanged if not understood."""
    # orjson's parse where it accepts the body (the same objects as json's: correctly
    # rounded floats, the last of duplicate keys in the first one's place), json's where it
    # refuses (NaN and Infinity, integers past 64 bits, UTF-16 or -32, a byte-order mark,
    # lone surrogates, deep nesting), so every body gives what json gave.
    encode = _dumps
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        encode = _json_bytes
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
    return encode(document)


def _json_bytes(document: Any) -> bytes:
    return _ENCODER.encode(document).encode()
