"""Response hardening keeps the protocols' shapes."""

from __future__ import annotations

import gc
import json
import math
import random
import struct

import pytest

from modelshield.api.v1alpha1.apiprotection import Protocol
from modelshield.guard import hardening
from tests.guard import hardening_reference

TOP1 = hardening.Hardening(round_decimals=2, top_k=1)


def test_v1_probability_rows_rounded_and_truncated() -> None:
    body = json.dumps({"predictions": [[0.12345, 0.87655], [0.6, 0.3, 0.1]]}).encode()
    out = json.loads(hardening.harden(body, Protocol.KSERVE_V1, TOP1))
    assert out == {"predictions": [[0.0, 0.88], [0.6, 0.0, 0.0]]}


def test_v1_labels_and_unknown_bodies_are_left_alone() -> None:
    labels = json.dumps({"predictions": [1, 0, 1]}).encode()
    assert json.loads(hardening.harden(labels, Protocol.KSERVE_V1, TOP1)) == {
        "predictions": [1, 0, 1]
    }
    assert hardening.harden(b"not json", Protocol.KSERVE_V1, TOP1) == b"not json"
    other = json.dumps({"explanations": [0.123]}).encode()
    assert hardening.harden(other, Protocol.KSERVE_V1, TOP1) == other


def test_v2_float_outputs_keep_their_shape_and_integers_are_untouched() -> None:
    body = json.dumps(
        {
            "model_name": "m",
            "outputs": [
                {
                    "name": "p",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "data": [0.2, 0.5, 0.3, 0.7, 0.1, 0.2],
                },
                {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
            ],
        }
    ).encode()
    out = json.loads(hardening.harden(body, Protocol.OPEN_INFERENCE_V2, TOP1))
    assert out["outputs"][0] == {
        "name": "p",
        "shape": [2, 3],
        "datatype": "FP32",
        "data": [0.0, 0.5, 0.0, 0.7, 0.0, 0.0],
    }
    assert out["outputs"][1]["data"] == [1, 0]
    assert out["model_name"] == "m"


def test_policies_combine_to_the_stricter() -> None:
    combined = hardening.Hardening(3, None).stricter(hardening.Hardening(5, 2))
    assert combined == hardening.Hardening(3, 2)


def _random_value(rng: random.Random, depth: int) -> object:
    kind = rng.random()
    if depth < 3 and kind < 0.3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    choices: list[object] = [
        rng.random(),
        -rng.random(),
        rng.choice([0.0, -0.0, 0.5, 0.25, 1e300, -1e-300, 123456789.123456789]),
        rng.randint(-3, 3),
        rng.choice([True, False, None, "a"]),
        rng.choice([float("nan"), float("inf"), float("-inf")]),
        round(rng.random(), 1),
    ]
    return rng.choices(choices, weights=[8, 3, 3, 3, 1, 1, 4])[0]


def _random_row(rng: random.Random) -> list[object]:
    width = rng.randint(1, 12)
    # Ties: values drawn from few, as rounded probabilities are.
    if rng.random() < 0.5:
        return [round(rng.random(), 1) for _ in range(width)]
    return [_random_value(rng, 3) for _ in range(width)]


def test_answers_are_the_first_formulas_bytes() -> None:
    """Random v1 and v2 answers (nested rows, ties, integers, booleans, NaN, infinities,
    negative zero) hardened every way give the bytes the first formula gave
    (tests/guard/hardening_reference.py)."""
    rng = random.Random(15)  # noqa: S311 - test data
    settings = [
        hardening.Hardening(decimals, k)
        for decimals in (None, 0, 2, 3)
        for k in (None, 1, 2, 3)
        if decimals is not None or k is not None
    ]
    for _ in range(400):
        rows = [_random_row(rng) for _ in range(rng.randint(0, 4))]
        width = rng.randint(1, 5)
        flat = [rng.random() for _ in range(width * 2)]
        answers = [
            (Protocol.KSERVE_V1, {"predictions": rows}),
            (Protocol.KSERVE_V1, {"predictions": _random_value(rng, 0)}),
            (Protocol.KSERVE_V1, {"predictions": [rng.random() for _ in range(4)]}),
            (
                Protocol.OPEN_INFERENCE_V2,
                {
                    "outputs": [
                        {"name": "p", "datatype": "FP32", "shape": [2, width], "data": flat},
                        {"name": "q", "datatype": "FP64", "shape": [len(rows), 3], "data": rows},
                        {"name": "l", "datatype": "INT64", "shape": [2], "data": [1, 2]},
                    ]
                },
            ),
        ]
        for protocol, document in answers:
            body = json.dumps(document).encode()
            for setting in settings:
                expected = hardening_reference.first_harden(body, protocol, setting)
                assert hardening.harden(body, protocol, setting) == expected, (document, setting)


def test_bodies_orjson_refuses_give_what_json_gave() -> None:
    """The parse is orjson's where it accepts the body and json's where it does not: bodies
    on either side of that line give the first formula's bytes."""
    v1 = b'{"predictions":[[0.25,0.5,0.125]]}'
    bodies = [
        v1,
        b'{"predictions":[[NaN,0.5,Infinity]]}',
        b'{"predictions":[[0.1,0.7,-Infinity]],"n":123456789012345678901234567890}',
        b"\xef\xbb\xbf" + v1,
        v1.decode().encode("utf-16"),
        v1.decode().encode("utf-32-le"),
        b'{"predictions":[[0.3,0.6]],"s":"\\ud800"}',
        b'{"predictions":[[0.3,0.6]],"predictions":[[0.9,0.05]]}',
        b'{"predictions":[[0.3,0.6]],"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"predictions":[[1e-7,2.5e300,0.5]]}',
        b'{"predictions":[[0.3,0.6]]',
        b"\xff\xfe\x00",
        b'["predictions"]',
    ]
    for body in bodies:
        for setting in (hardening.Hardening(3, 1), hardening.Hardening(None, 2)):
            try:
                expected: bytes | type[BaseException] = hardening_reference.first_harden(
                    body, Protocol.KSERVE_V1, setting
                )
            except RecursionError:
                expected = RecursionError
            if expected is RecursionError:
                with pytest.raises(RecursionError):
                    hardening.harden(body, Protocol.KSERVE_V1, setting)
            else:
                assert hardening.harden(body, Protocol.KSERVE_V1, setting) == expected, body


def test_hardening_leaves_nothing_to_the_garbage_collector() -> None:
    """Every object an answer's hardening makes is freed when it returns: garbage only the
    collector frees (reference cycles) makes the guard's collections more frequent, and
    each promotes the objects of the requests in flight towards a full collection."""
    answers = [
        (Protocol.KSERVE_V1, b'{"predictions":[[0.9731846022605896,0.0268153977394104]]}'),
        (Protocol.KSERVE_V1, b'{"predictions":[[[0.2,0.8]],[[0.6,0.4]]]}'),
        (
            Protocol.OPEN_INFERENCE_V2,
            b'{"outputs":[{"name":"p","datatype":"FP32","shape":[1,3],"data":[0.2,0.3,0.5]}]}',
        ),
    ]
    gc.collect()
    gc.disable()
    try:
        for protocol, body in answers:
            for _ in range(50):
                hardening.harden(body, protocol, hardening.Hardening(3, 1))
        assert gc.collect() == 0
    finally:
        gc.enable()


def _float_of_any_magnitude(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.3:
        # Any finite double: subnormals, huge, every exponent.
        while True:
            value: float = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if math.isfinite(value):
                return value
    if kind < 0.8:
        return rng.choice((1, -1)) * rng.random() * 10.0 ** rng.randint(-30, 30)
    return float(rng.randint(0, 10 ** rng.randint(1, 25)))


def test_answers_encoded_by_orjson_are_jsons_bytes() -> None:
    """Answers orjson parses are encoded by orjson where its bytes cannot differ from json's:
    floats of every magnitude (exponents, 1e-5 written out), strings with escapes, non-ASCII
    and DEL, integers up to 64 bits, nesting past what orjson writes: the first formula's
    bytes every time."""
    rng = random.Random(19)  # noqa: S311 - test data
    texts = ['a\nb\t"\\', "\x01\x1f", "é", "\x7f", "\u2028", "model-1e3", "plain"]
    settings = (hardening.Hardening(3, 1), hardening.Hardening(None, 2), hardening.Hardening(6))
    for _ in range(3000):
        width = rng.randint(1, 4)
        rows = [[_float_of_any_magnitude(rng) for _ in range(width)] for _ in range(2)]
        document = {
            "predictions": rows,
            "model": rng.choice(texts),
            "n": rng.choice((0, -1, 2**63 - 1, -(2**63), 2**64 - 1)),
        }
        body = json.dumps(document).encode()
        for setting in settings:
            expected = hardening_reference.first_harden(body, Protocol.KSERVE_V1, setting)
            assert hardening.harden(body, Protocol.KSERVE_V1, setting) == expected, document
    deep = b'{"predictions":[[0.25,0.75]],"x":' + b"[" * 600 + b"]" * 600 + b"}"
    assert hardening.harden(deep, Protocol.KSERVE_V1, TOP1) == hardening_reference.first_harden(
        deep, Protocol.KSERVE_V1, TOP1
    )
