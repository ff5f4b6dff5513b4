"""KServe CloudEvents (binary and structured), v1 and v2 bodies, plain batches, bad input."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from multidict import CIMultiDict

from modelshield.drift import layouts, payloads, profiles
from tests.support import driftsynthetic as synthetic

PROFILE = synthetic.iris_profile()
REQUEST = layouts.build(PROFILE, synthetic.IRIS_FEATURES)
RESPONSE = layouts.build(PROFILE, ["prediction"])
BOTH: dict[payloads.Stream, layouts.Layout] = {"request": REQUEST, "response": RESPONSE}
EXPECTED_ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


def _parse(headers: dict[str, str], body: Any) -> payloads.Batch:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    batch = payloads.parse(CIMultiDict(headers), raw, BOTH)
    assert batch is not None
    return batch


def _prediction_slot(value: str) -> int:
    return RESPONSE.codes[0][value]


@pytest.mark.parametrize("body", [synthetic.IRIS_REQUEST_V1, synthetic.IRIS_REQUEST_V2])
def test_binary_mode_request(body: dict[str, Any]) -> None:
    batch = _parse(synthetic.binary_headers("request"), body)
    assert batch.stream == "request"
    np.testing.assert_allclose(batch.numeric, EXPECTED_ROWS, rtol=1e-6)


@pytest.mark.parametrize("body", [synthetic.IRIS_RESPONSE_V1, synthetic.IRIS_RESPONSE_V2])
def test_binary_mode_response(body: dict[str, Any]) -> None:
    batch = _parse(synthetic.binary_headers("response"), body)
    assert batch.stream == "response"
    assert batch.categorical[:, 0].tolist() == [_prediction_slot("1")] * 2


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("request", synthetic.IRIS_REQUEST_V1),
        ("request", synthetic.IRIS_REQUEST_V2),
        ("response", synthetic.IRIS_RESPONSE_V1),
        ("response", synthetic.IRIS_RESPONSE_V2),
    ],
)
def test_structured_mode(kind: str, data: dict[str, Any]) -> None:
    batch = _parse(
        {"Content-Type": "application/cloudevents+json"}, synthetic.structured(kind, data)
    )
    assert batch.stream == kind
    assert batch.rows == 2


def test_structured_mode_with_base64_data() -> None:
    document = json.loads(synthetic.structured("request", None))
    del document["data"]
    document["data_base64"] = base64.b64encode(
        json.dumps(synthetic.IRIS_REQUEST_V1).encode()
    ).decode()
    batch = _parse({"Content-Type": "application/cloudevents+json; charset=utf-8"}, document)
    np.testing.assert_allclose(batch.numeric, EXPECTED_ROWS)


def test_plain_batches_records_and_missing_values() -> None:
    records = [
        {"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "petal_width": 1.4},
        {"sepal_length": 6.0, "sepal_width": None, "petal_length": 4.5, "petal_width": 1.6},
    ]
    for body in (records, {"instances": records}):
        batch = _parse({"Content-Type": "application/json"}, body)
        assert batch.stream == "request"
        assert math.isnan(batch.numeric[1, 1])
        assert batch.mismatches == ()


def test_records_report_missing_and_extra_features() -> None:
    records = [{"sepal_length": 6.8, "sepal_width": 2.8, "petal_length": 4.8, "colour": "red"}]
    batch = _parse({}, records)
    assert set(batch.mismatches) == {("petal_width", "missing"), ("colour", "extra")}
    assert math.isnan(batch.numeric[0, 3])


def test_v2_named_tensors_and_bytes() -> None:
    profile = profiles.build({"age": [20.0, 30.0, 40.0], "country": ["DE", "FR", "DE"]})
    layout = layouts.build(profile, ["age", "country"])
    body = {
        "inputs": [
            {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [25.0, 35.0]},
            {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["FR", "IT"]},
        ]
    }
    batch = payloads.to_batch(payloads.Event("request", body), layout)
    assert batch.numeric[:, 0].tolist() == [25.0, 35.0]
    assert batch.categorical[:, 0].tolist() == [layout.codes[0]["FR"], layouts.OTHER_SLOT]


def test_lists_with_categories() -> None:
    layout = layouts.build(synthetic.profile(), synthetic.COLUMNS)
    row_list = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, "blue"], [None, 0, 0, 0, 0, 0, None]]
    batch = payloads.to_batch(payloads.Event("request", {"instances": row_list}), layout)
    assert batch.categorical[:, 0].tolist() == [layout.codes[0]["blue"], layouts.MISSING_SLOT]
    assert math.isnan(batch.numeric[1, 0])


def test_response_events_are_ignored_without_outputs() -> None:
    only_requests: dict[payloads.Stream, layouts.Layout] = {"request": REQUEST}
    headers = CIMultiDict(synthetic.binary_headers("response"))
    assert (
        payloads.parse(headers, json.dumps(synthetic.IRIS_RESPONSE_V1).encode(), only_requests)
        is None
    )


@pytest.mark.parametrize(
    ("headers", "body", "reason", "status"),
    [
        ({}, b"{not json", "invalid-json", 400),
        (synthetic.binary_headers("request"), b"\xff\xfe", "invalid-json", 400),
        (
            {**synthetic.binary_headers("request"), "Ce-Type": "com.example.other"},
            synthetic.IRIS_REQUEST_V1,
            "unknown-event-type",
            400,
        ),
        (
            {**synthetic.binary_headers("request"), "Ce-Specversion": "0.3"},
            synthetic.IRIS_REQUEST_V1,
            "invalid-cloudevent",
            400,
        ),
        (
            {"Content-Type": "application/cloudevents+json"},
            {"specversion": "1.0", "type": "x.request"},
            "invalid-cloudevent",
            400,
        ),
        ({"Content-Type": "application/cloudevents+json"}, [1, 2], "invalid-cloudevent", 400),
        (
            {"Content-Type": "application/cloudevents+json"},
            {
                "specversion": "1.0",
                "type": "x.request",
                "datacontenttype": "text/csv",
                "data": "1,2",
            },
            "unsupported-media-type",
            415,
        ),
        (
            {"Content-Type": "application/cloudevents-batch+json"},
            [],
            "unsupported-content-mode",
            415,
        ),
        ({}, {"instances": [[1.0, 2.0]]}, "width-mismatch", 400),
        ({}, {"instances": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]}, "width-mismatch", 400),
        ({}, {"instances": [[1.0, "abc", 3.0, 4.0]]}, "wrong-type", 400),
        ({}, {"instances": [[1.0, {}, 3.0, 4.0]]}, "wrong-type", 400),
        ({}, {"instances": "all of them"}, "unrecognised-shape", 400),
        ({}, {"rows": []}, "unrecognised-shape", 400),
        ({}, {"instances": [[1.0, 2.0, 3.0, 4.0], {"sepal_length": 1}]}, "width-mismatch", 400),
        (
            {},
            {
                "inputs": [
                    {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}
                ]
            },
            "bad-tensor",
            400,
        ),
        (
            {},
            {
                "inputs": [
                    {"name": "nothing-known", "shape": [2], "datatype": "FP32", "data": [1, 2]}
                ]
            },
            "unrecognised-shape",
            400,
        ),
        ({}, 42, "unrecognised-shape", 400),
    ],
)
def test_malformed_payloads_have_a_reason(
    headers: dict[str, str], body: Any, reason: str, status: int
) -> None:
    with pytest.raises(payloads.PayloadError) as caught:
        _parse(headers, body)
    assert (caught.value.reason, caught.value.status) == (reason, status)
    assert caught.value.message
