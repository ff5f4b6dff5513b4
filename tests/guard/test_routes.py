"""Request paths are read strictly: one path, one model, one verb."""

from __future__ import annotations

import pytest

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.guard import routes


@pytest.mark.parametrize(
    ("method", "path", "protocol", "verb", "model"),
    [
        ("POST", "/v1/models/fraud:predict", Protocol.KSERVE_V1, Verb.PREDICT, "fraud"),
        ("POST", "/v1/models/fraud:explain", Protocol.KSERVE_V1, Verb.EXPLAIN, "fraud"),
        ("GET", "/v1/models/fraud", Protocol.KSERVE_V1, Verb.METADATA, "fraud"),
        ("GET", "/v1/models", Protocol.KSERVE_V1, Verb.HEALTH, None),
        ("GET", "/", Protocol.KSERVE_V1, Verb.HEALTH, None),
        ("POST", "/v2/models/fraud/infer", Protocol.OPEN_INFERENCE_V2, Verb.INFER, "fraud"),
        (
            "POST",
            "/v2/models/fraud/versions/3/infer",
            Protocol.OPEN_INFERENCE_V2,
            Verb.INFER,
            "fraud",
        ),
        ("GET", "/v2/models/fraud", Protocol.OPEN_INFERENCE_V2, Verb.METADATA, "fraud"),
        ("GET", "/v2/models/fraud/ready", Protocol.OPEN_INFERENCE_V2, Verb.METADATA, "fraud"),
        ("GET", "/v2/health/ready", Protocol.OPEN_INFERENCE_V2, Verb.HEALTH, None),
    ],
)
def test_canonical_paths_name_their_route(
    method: str, path: str, protocol: Protocol, verb: Verb, model: str | None
) -> None:
    assert routes.parse(method, path) == routes.Route(protocol, verb, model)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/other%3Apredict",  # percent-encoded colon
        "/v1/models/%66raud:predict",  # percent-encoded letter
        "/v1/models//fraud:predict",  # empty segment
        "//v1/models/fraud:predict",
        "/v1/models/fraud/../other:predict",  # dot segments
        "/v1/models/./fraud:predict",
        "/v1/models/fraud:predict/",
        "/v1/models/fraud:predict:explain",
        "/v1/models/fraud:PREDICT",
        "/V1/models/fraud:predict",
        "/v1/models/fraud;x=1:predict",
        "/v1/models/fraud%00:predict",
        "/v2/models/fraud/infer/",
        "/v2/models/fraud/versions//infer",
        "/v2/models/fraud/generate",
        "/metrics",
        "/v1/models/fraud:predict\\..\\other",
    ],
)
def test_path_tricks_name_no_route(path: str) -> None:
    parsed = routes.parse("POST", path)
    assert isinstance(parsed, routes.RouteError)
    assert parsed.status == 404


def test_query_strings_are_refused() -> None:
    for path in ("/v1/models/fraud:predict?model=other", "/v1/models/fraud:predict?"):
        parsed = routes.parse("POST", path)
        assert isinstance(parsed, routes.RouteError)
        assert parsed.status == 400


def test_wrong_method_is_405() -> None:
    parsed = routes.parse("GET", "/v1/models/fraud:predict")
    assert parsed == routes.RouteError(405, "Predict takes POST, not GET")
    assert isinstance(routes.parse("DELETE", "/v2/models/fraud"), routes.RouteError)


def test_reason_of_an_unprintable_path_is_bounded() -> None:
    parsed = routes.parse("GET", "/\x1b[31m" + "a" * 500)
    assert isinstance(parsed, routes.RouteError)
    assert "\x1b" not in parsed.reason
    assert len(parsed.reason) < 200


def test_known_routes_are_kept_within_a_bound_and_judged_the_same() -> None:
    assert routes.parse("POST", "/v1/models/fraud:predict") is routes.parse(
        "POST", "/v1/models/fraud:predict"
    )
    # Kept per method: the same path with another method is still refused.
    refused = routes.parse("GET", "/v1/models/fraud:predict")
    assert isinstance(refused, routes.RouteError)
    assert refused.status == 405
    for index in range(2 * routes._KNOWN_LIMIT):
        route = routes.parse("POST", f"/v1/models/model-{index}:predict")
        assert route == routes.Route(Protocol.KSERVE_V1, Verb.PREDICT, f"model-{index}")
    assert len(routes._KNOWN) <= routes._KNOWN_LIMIT
    # Errors are never kept.
    assert isinstance(routes.parse("POST", "/v1/models/x:predict?a=1"), routes.RouteError)
    assert ("POST", "/v1/models/x:predict?a=1") not in routes._KNOWN
