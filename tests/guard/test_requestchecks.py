"""Request bodies: media type, JSON syntax, depth and protocol shape."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.guard import requestchecks

JSON = frozenset({"application/json"})


@pytest.mark.parametrize("header", ["application/json", "Application/JSON; charset=utf-8"])
def test_allowed_media_types(header: str) -> None:
    assert requestchecks.check_media_type(header, JSON) is None


@pytest.mark.parametrize(
    "header", [None, "", "text/plain", "application/json-seq", "multipart/form-data"]
)
def test_other_media_types_are_415(header: str | None) -> None:
    error = requestchecks.check_media_type(header, JSON)
    assert error is not None
    assert error.status == 415


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"[1,]",
        b'{"instances": [NaN]}',
        b'{"instances": [Infinity]}',
        b'{"instances": [1e999]}',
        b"\xff\xfe",
        b"1" * 5000,
        '{"instances": [[1]]}'.encode("utf-16"),
        b"\xef\xbb\xbf" + b'{"instances": [[1]]}',
    ],
)
def test_malformed_json_is_400(body: bytes) -> None:
    parsed = requestchecks.parse_json(body)
    assert isinstance(parsed, requestchecks.BodyError)
    assert parsed.status == 400


@pytest.mark.parametrize(
    "number",
    [
        "1.8e308",
        "1E+309",
        "1e0000309",
        "-1e999",
        "1" + "0" * 400 + ".0",
        "1" + "0" * 260 + ".5e60",
        "0.5e310",
    ],
)
def test_numbers_beyond_a_double_are_400_however_spelled(number: str) -> None:
    parsed = requestchecks.parse_json(f'{{"instances": [[1.5, {number}]]}}'.encode())
    assert isinstance(parsed, requestchecks.BodyError)
    assert "too large for a double" in parsed.reason


@pytest.mark.parametrize(
    "number",
    ["1.7976931348623157e308", "1e99", "9" * 199 + ".9e98", "1e-999", "-2.5E-400", "0.1e0099"],
)
def test_numbers_within_a_double_are_read_as_floats(number: str) -> None:
    parsed = requestchecks.parse_json(f'{{"instances": [[{number}]]}}'.encode())
    assert parsed == {"instances": [[float(number)]]}


def test_a_number_is_refused_exactly_when_it_exceeds_a_double() -> None:
    generator = random.Random(14)  # noqa: S311 (test data, not secrets)
    for _ in range(1000):
        digits = "".join(generator.choice("0123456789") for _ in range(generator.randint(1, 260)))
        mantissa = digits.lstrip("0") or "0"
        fraction = "." + str(generator.randint(0, 10**6)) if generator.random() < 0.5 else ""
        exponent = (
            generator.choice("eE")
            + generator.choice(["", "+", "-"])
            + str(generator.randint(0, 420))
            if generator.random() < 0.7
            else ""
        )
        number = mantissa + fraction + exponent
        if not fraction and not exponent:
            continue  # an integer, not a float
        parsed = requestchecks.parse_json(f'[{number}, "e{generator.randint(0, 999)}"]'.encode())
        if math.isinf(float(number)):
            assert isinstance(parsed, requestchecks.BodyError), number
        else:
            assert isinstance(parsed, list), number
            assert parsed[0] == float(number), number


def test_deep_nesting_is_refused_without_recursion() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    parsed = requestchecks.parse_json(body)
    assert isinstance(parsed, requestchecks.BodyError)
    nested = json.loads("[" * 20 + "]" * 20)
    error = requestchecks.check_shape(
        {"instances": nested}, Protocol.KSERVE_V1, Verb.PREDICT, max_depth=16, max_instances=10
    )
    assert error is not None
    assert "nested deeper than 16" in error.reason


def _v1(document: object, max_instances: int = 3) -> requestchecks.BodyError | None:
    return requestchecks.check_shape(
        document, Protocol.KSERVE_V1, Verb.PREDICT, max_depth=8, max_instances=max_instances
    )


def test_v1_shapes() -> None:
    assert _v1({"instances": [[1, 2], [3, 4]]}) is None
    assert _v1({"inputs": [[1, 2]]}) is None
    bad: object
    for bad in (
        [],
        {"instances": []},
        {"instances": {"a": 1}},
        {"instances": [[1]], "inputs": [[1]]},
        {"rows": [[1]]},
        {"instances": [[1]] * 4},
    ):
        error = _v1(bad)
        assert error is not None, bad
        assert error.status == 400


def _v2(document: object) -> requestchecks.BodyError | None:
    return requestchecks.check_shape(
        document, Protocol.OPEN_INFERENCE_V2, Verb.INFER, max_depth=8, max_instances=3
    )


def test_v2_shapes() -> None:
    good = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    assert _v2(good) is None
    tensor = good["inputs"][0]
    change: dict[str, Any]
    for change in (
        {"name": ""},
        {"datatype": "FLOAT"},
        {"shape": [-1, 2]},
        {"shape": [True, 2]},
        {"shape": []},
        {"shape": [4, 2]},
    ):
        error = _v2({"inputs": [{**tensor, **change}]})
        assert error is not None, change
    assert _v2({"inputs": [{k: v for k, v in tensor.items() if k != "data"}]}) is not None
    assert _v2({"inputs": []}) is not None
    assert _v2({"instances": [[1]]}) is not None


def test_a_key_twice_is_refused() -> None:
    # Parsers disagree on which duplicate wins: the model must read what the guard checked.
    parsed = requestchecks.parse_json(b'{"instances": [[1]], "instances": [[1], [2], [3], [4]]}')
    assert isinstance(parsed, requestchecks.BodyError)
    assert "appears twice" in parsed.reason
    nested = requestchecks.parse_json(b'{"a": {"x": 1}, "b": {"x": 2}}')
    assert nested == {"a": {"x": 1}, "b": {"x": 2}}


FEATURES = (
    requestchecks.Feature("age", numeric=True),
    requestchecks.Feature("country", numeric=False),
)


def _rows(document: object) -> requestchecks.BodyError | None:
    return requestchecks.check_profile(document, Protocol.KSERVE_V1, Verb.PREDICT, FEATURES)


def test_rows_that_match_the_reference_profile() -> None:
    assert _rows({"instances": [[41, "DE"], [None, None], [3.5, "FR"]]}) is None
    assert _rows({"inputs": [{"age": 1, "country": "DE"}]}) is None


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"instances": [[41]]}, "instances[0] has 1 values; the model takes 2"),
        ({"instances": [[41, "DE", 3]]}, "has 3 values"),
        ({"instances": [["41", "DE"]]}, "instances[0][0] (age) must be a number"),
        ({"instances": [[True, "DE"]]}, "(age) must be a number"),
        ({"instances": [[41, 7]]}, "(country) must be a string"),
        ({"instances": [{"age": 1}]}, "missing ['country']"),
        ({"instances": [{"age": 1, "country": "DE", "salary": 3}]}, "unknown features ['salary']"),
        ({"instances": [[1, "DE"], "row"]}, "instances[1] must be a list"),
    ],
)
def test_rows_that_do_not(document: object, reason: str) -> None:
    error = _rows(document)
    assert error is not None
    assert reason in error.reason


def test_open_inference_tensors_against_the_profile() -> None:
    def infer(document: object) -> requestchecks.BodyError | None:
        return requestchecks.check_profile(
            document, Protocol.OPEN_INFERENCE_V2, Verb.INFER, FEATURES
        )

    one = {"name": "x", "shape": [3, 2], "datatype": "BYTES", "data": []}
    assert infer({"inputs": [one]}) is None
    assert infer({"inputs": [{**one, "shape": [3, 5]}]}) is not None
    assert infer({"inputs": [{**one, "shape": [6]}]}) is not None
    per_feature = [{**one, "name": "age", "shape": [3]}, {**one, "name": "country", "shape": [3]}]
    assert infer({"inputs": per_feature}) is None
    assert infer({"inputs": [per_feature[0], {**one, "name": "salary", "shape": [3]}]}) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": {"b": [1, {"c": 1e999}]}}',
        b'{"instances": [[1, 2], [3, [4, -1e999]]]}',
        b'[[[[[["x", 2.5, null, true, 1e400]]]]]]',
        b'{"a": 1e999, "a": 2}',
        b'{"instances": [1e999, NaN]}',
    ],
)
def test_a_number_beyond_a_double_is_found_at_any_depth_with_the_first_reason(
    body: bytes,
) -> None:
    parsed = requestchecks.parse_json(body)
    assert isinstance(parsed, requestchecks.BodyError)
    assert "too large for a double" in parsed.reason


def test_the_parse_gives_what_the_strict_decoder_gives() -> None:
    """Random documents, some with a number beyond a double, a repeated key or bad syntax
    somewhere: the same document or the same reason as the strict decoder alone."""
    generator = random.Random(1414)  # noqa: S311 (test data, not secrets)

    def value(level: int) -> str:
        pick = generator.random()
        if level < 5 and pick < 0.3:
            return "[" + ", ".join(value(level + 1) for _ in range(generator.randint(0, 4))) + "]"
        if level < 5 and pick < 0.5:
            keys = [generator.choice("abcd") for _ in range(generator.randint(0, 3))]
            return "{" + ", ".join(f'"{key}": {value(level + 1)}' for key in keys) + "}"
        return generator.choice(
            ["1", "-2.5", "1e999", "-1E400", "0.1", '"e"', "null", "true", "1e308", "[1,]"]
        )

    for _ in range(2000):
        body = value(0).encode()
        parsed, measured = requestchecks.parse_json_measured(body)
        strict = requestchecks._parse_strictly(body)
        assert parsed == strict, body
        assert requestchecks.parse_json(body) == strict, body
        if measured is not None:
            # The depth measured while parsing is the depth walk's, and judged the same.
            assert measured == requestchecks.depth(parsed, 1000), body
            for limit in (1, 2, 3):
                for verb in (Verb.PREDICT, Verb.METADATA):
                    assert requestchecks.check_shape(
                        parsed, Protocol.KSERVE_V1, verb, max_depth=limit, max_instances=3
                    ) == requestchecks.check_shape(
                        parsed,
                        Protocol.KSERVE_V1,
                        verb,
                        max_depth=limit,
                        max_instances=3,
                        measured_depth=measured,
                    ), body


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (1.5, 0),
        ([], 1),
        ([1, "x", None, True, 2.5], 1),
        ([1, [2, [3]], {"a": {"b": []}}], 4),
        ({"a": [1, 2], "b": {"c": [[{"d": 1}]]}}, 5),
    ],
)
def test_depth_counts_containers_among_scalars(document: Any, expected: int) -> None:
    assert requestchecks.depth(document, 16) == expected
