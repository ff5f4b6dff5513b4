"""Response hardening keeps the protocols' shapes."""

from __future__ import annotations

import json

from modelshield.api.v1alpha1.apiprotection import Protocol
from modelshield.guard import hardening

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
