"""cosign's simple-signing payload checks and .sig/.att manifest parsing."""

from __future__ import annotations

import base64
import json

import pytest

from modelshield.supplychain.images import cosignsignatures

DIGEST = "sha256:" + "cd" * 32


def payload(digest: str = DIGEST, kind: str = "cosign container image signature") -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": "registry.example.com/ml/server"},
                "image": {"docker-manifest-digest": digest},
                "type": kind,
            },
            "optional": None,
        }
    ).encode()


def test_payload_for_this_digest_passes() -> None:
    assert cosignsignatures.check_payload(payload(), DIGEST) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (payload("sha256:" + "00" * 32), "not for this image"),
        (payload(kind="something else"), "payload type"),
        (b"not json", "not JSON"),
        (b"[]", "no critical section"),
        (
            json.dumps({"critical": {"type": "cosign container image signature"}}).encode(),
            "names no image digest",
        ),
    ],
)
def test_payload_problems(body: bytes, reason: str) -> None:
    problem = cosignsignatures.check_payload(body, DIGEST)
    assert problem is not None
    assert reason in problem


def test_signature_layers_skip_malformed_ones() -> None:
    good = {
        "mediaType": cosignsignatures.SIMPLE_SIGNING,
        "digest": "sha256:" + "11" * 32,
        "size": 10,
        "annotations": {cosignsignatures.SIGNATURE_ANNOTATION: base64.b64encode(b"sig").decode()},
    }
    manifest = {
        "layers": [
            good,
            {**good, "annotations": {cosignsignatures.SIGNATURE_ANNOTATION: "***"}},
            {**good, "mediaType": "application/octet-stream"},
            {**good, "annotations": {}},
            "garbage",
        ]
    }
    [layer] = cosignsignatures.signature_layers(manifest)
    assert layer.signature == b"sig"
    assert layer.certificate_pem is None
    assert cosignsignatures.signature_layers({"layers": "x"}) == []


def test_layer_count_is_bounded() -> None:
    layer = {
        "mediaType": "application/vnd.dsse.envelope.v1+json",
        "digest": "sha256:" + "22" * 32,
        "size": 5,
    }
    assert (
        len(cosignsignatures.envelope_layers({"layers": [layer] * 1000}))
        == cosignsignatures.MAX_LAYERS
    )
