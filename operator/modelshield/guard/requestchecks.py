"""What a request body must look like before it reaches the model. Pure.

Checks, cheapest first: the media type, the JSON syntax (UTF-8 only; no NaN, Infinity
or number too large for a double; no key twice in one object, since parsers disagree on
which duplicate wins and the model server's must read what the guard checked), the
nesting depth, and the
shape the protocol prescribes: KServe v1 ``{"instances": [...]}`` or ``{"inputs": [...]}``;
Open Inference Protocol v2 ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``
with the rows (first dimension) bounded. A failed check is a 400/415 with the reason;
the model server never sees the request.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import Any

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb

#: Open Inference Protocol tensor data types.
V2_DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class BodyError:
    """Why a body is refused: 400 (malformed), 415 (media type)."""

    status: int
    reason: str


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None, allowed: frozenset[str]) -> BodyError | None:
    """415 unless the body's media type is allowed."""
    found = media_type(content_type)
    if found in allowed:
        return None
    shown = found or "none"
    return BodyError(415, f"content type {shown!r} is not accepted ({', '.join(sorted(allowed))})")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is too large for a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice[:40]!r} appears twice in one object")
    return document


#: What ``json.loads`` with these options builds on each call, built once: the strict
#: decoder, whose errors (and the first of them in the text) are the reasons given.
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite, object_pairs_hook=_unique_keys
)
#: The same without the hook per number: the C scanner reads floats itself, so a number
#: beyond a double becomes an infinity, which ``_survey`` finds afterwards. Any
#: error or infinity sends the body through ``_DECODER`` again, so both give the same
#: document or the same reason (the per-number hook was a fifth of the guard's own work).
_FAST_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
_INFINITY = math.inf
_MINUS_INFINITY = -math.inf
#: What a decoded document holds besides dicts and lists (none of them a container).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _survey(document: Any) -> tuple[int, bool]:
    """A decoded document's nesting depth, and whether an infinite float is anywhere in it,
    in one walk (the decoder's own recursion limit bounds the depth)."""
    return _walk(document, sys.maxsize, look_for_infinity=True)


def _walk(document: Any, limit: int, *, look_for_infinity: bool) -> tuple[int, bool]:
    """Nesting depth counted up to ``limit + 1`` (then it stops), and, when asked, whether
    an infinite float is anywhere (then it stops too), without recursion. Each container's
    values are looked at in C: their set of types (values that are all scalars, a row of
    numbers, hold no container), and, when floats are among them, an equality test with
    each infinity, instead of an isinstance per value."""
    deepest = 0
    # The values of each container, with the container's level (the document's: 0).
    stack: list[tuple[Any, int]] = [([document], 0)]
    while stack:
        children, level = stack.pop()
        kinds = set(map(type, children))
        if (
            look_for_infinity
            and float in kinds
            and (_INFINITY in children or _MINUS_INFINITY in children)
        ):
            return deepest, True
        if kinds <= _SCALARS:
            continue
        for child in children:
            if isinstance(child, dict):
                values: Any = child.values()
            elif isinstance(child, list):
                values = child
            else:
                continue
            if level >= deepest:
                deepest = level + 1
                if deepest > limit:
                    return deepest, False
            stack.append((values, level + 1))
    return deepest, False


def _parse_strictly(body: bytes) -> Any | BodyError:
    try:
        text = body.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads says
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except RecursionError:
        return BodyError(400, "the JSON body is nested too deeply")
    except (ValueError, UnicodeDecodeError) as error:
        # json.JSONDecodeError is a ValueError; its message names line and column only.
        return BodyError(400, f"the body is not valid JSON: {str(error)[:200]}")


def parse_json(body: bytes) -> Any | BodyError:
    """The parsed body, or why it is not JSON."""
    return parse_json_measured(body)[0]


def parse_json_measured(body: bytes) -> tuple[Any | BodyError, int | None]:
    """The parsed body (or why it is not JSON), and its nesting depth when that was
    measured on the way (``check_shape`` takes it instead of walking the document again)."""
    try:
        text = body.decode("utf-8")
        if text.startswith("\ufeff"):
            return _parse_strictly(body), None
        document = _FAST_DECODER.decode(text)
    except (RecursionError, ValueError, UnicodeDecodeError):
        return _parse_strictly(body), None
    found, infinite = _survey(document)
    return (_parse_strictly(body), None) if infinite else (document, found)


def depth(document: Any, limit: int) -> int:
    """Nesting depth of arrays and objects, counted up to ``limit + 1`` (then it stops)."""
    return _walk(document, limit, look_for_infinity=False)[0]


def check_shape(
    document: Any,
    protocol: Protocol,
    verb: Verb,
    *,
    max_depth: int,
    max_instances: int,
    measured_depth: int | None = None,
) -> BodyError | None:
    """400 unless the document has the shape its protocol and verb prescribe
    (``measured_depth``: the document's depth, from ``parse_json_measured``)."""
    found = depth(document, max_depth) if measured_depth is None else measured_depth
    if found > max_depth:
        return BodyError(400, f"the JSON body is nested deeper than {max_depth}")
    if not isinstance(document, dict):
        return BodyError(400, "the body must be a JSON object")
    if protocol is Protocol.KSERVE_V1 and verb in (Verb.PREDICT, Verb.EXPLAIN):
        return _check_v1(document, max_instances)
    if protocol is Protocol.OPEN_INFERENCE_V2 and verb is Verb.INFER:
        return _check_v2(document, max_instances)
    return None


def _check_v1(document: dict[str, Any], max_instances: int) -> BodyError | None:
    keys = [key for key in ("instances", "inputs") if key in document]
    if len(keys) != 1:
        return BodyError(400, "a KServe v1 request has exactly one of 'instances' and 'inputs'")
    rows = document[keys[0]]
    if not isinstance(rows, list) or not rows:
        return BodyError(400, f"'{keys[0]}' must be a non-empty list")
    if len(rows) > max_instances:
        return BodyError(400, f"'{keys[0]}' has {len(rows)} rows; at most {max_instances}")
    return None


def _check_v2(document: dict[str, Any], max_instances: int) -> BodyError | None:
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return BodyError(400, "an Open Inference request needs a non-empty 'inputs' list")
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            return BodyError(400, f"{where} must be an object")
        name, shape = tensor.get("name"), tensor.get("shape")
        if not isinstance(name, str) or not name:
            return BodyError(400, f"{where}.name must be a non-empty string")
        if tensor.get("datatype") not in V2_DATATYPES:
            return BodyError(
                400, f"{where}.datatype must be one of {', '.join(sorted(V2_DATATYPES))}"
            )
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            return BodyError(
                400, f"{where}.shape must be a non-empty list of non-negative integers"
            )
        if shape[0] > max_instances:
            return BodyError(400, f"{where} has {shape[0]} rows; at most {max_instances}")
        if "data" not in tensor:
            return BodyError(400, f"{where}.data is missing")
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Feature:
    """One feature of the reference profile: its name and whether it is numeric."""

    name: str
    numeric: bool


def _value_error(value: Any, feature: Feature, where: str) -> BodyError | None:
    if value is None:
        return None
    if feature.numeric:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return BodyError(400, f"{where} ({feature.name}) must be a number")
    elif not isinstance(value, str):
        return BodyError(400, f"{where} ({feature.name}) must be a string")
    return None


def _row_error(row: Any, features: tuple[Feature, ...], where: str) -> BodyError | None:
    if isinstance(row, list):
        if len(row) != len(features):
            return BodyError(400, f"{where} has {len(row)} values; the model takes {len(features)}")
        for index, (value, feature) in enumerate(zip(row, features, strict=True)):
            if (error := _value_error(value, feature, f"{where}[{index}]")) is not None:
                return error
        return None
    if isinstance(row, dict):
        names = {feature.name for feature in features}
        unknown = sorted(set(row) - names)[:3]
        missing = sorted(names - set(row))[:3]
        if unknown or missing:
            return BodyError(400, f"{where}: unknown features {unknown}, missing {missing}")
        for feature in features:
            if (
                error := _value_error(row[feature.name], feature, f"{where}.{feature.name}")
            ) is not None:
                return error
        return None
    return BodyError(400, f"{where} must be a list of values or an object of features")


def check_profile(
    document: Any, protocol: Protocol, verb: Verb, features: tuple[Feature, ...]
) -> BodyError | None:
    """400 unless every row matches the reference profile's features (after check_shape)."""
    if protocol is Protocol.KSERVE_V1 and verb in (Verb.PREDICT, Verb.EXPLAIN):
        key = "instances" if "instances" in document else "inputs"
        for index, row in enumerate(document[key]):
            if (error := _row_error(row, features, f"{key}[{index}]")) is not None:
                return error
        return None
    if protocol is Protocol.OPEN_INFERENCE_V2 and verb is Verb.INFER:
        inputs = document["inputs"]
        if len(inputs) == 1:
            shape = inputs[0]["shape"]
            if len(shape) != 2 or shape[1] != len(features):
                return BodyError(
                    400, f"inputs[0].shape must be [rows, {len(features)}], not {shape}"
                )
            if inputs[0]["datatype"] == "BYTES" and all(f.numeric for f in features):
                return BodyError(400, "inputs[0] must be numeric: every feature is")
            return None
        names = [tensor["name"] for tensor in inputs]
        expected = [feature.name for feature in features]
        if sorted(names) != sorted(expected):
            return BodyError(400, "one input per feature, named as in the reference profile")
    return None
