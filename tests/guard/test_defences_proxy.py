"""Model-aware defences through the guard over real HTTP, in front of a real
scikit-learn model server, with an outlier model built by `modelshield drift profile`'s
code from the model's own training rows."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.guard import outliermodel
from tests.support import modelserver
from tests.support.guardstack import KEY, _stack, call, keys_dir, trained  # noqa: F401

pytestmark = pytest.mark.integration

DATA = load_breast_cancer().data
NAMES = [f"f{i}" for i in range(DATA.shape[1])]
AUTH = {"X-Api-Key": KEY}


@pytest.fixture(scope="module")
def outlier_document() -> dict[str, Any]:
    """The outlier model of the rows the served model was trained on (the first 400)."""
    columns = {name: DATA[:400, i].tolist() for i, name in enumerate(NAMES)}
    return outliermodel.to_document(outliermodel.build(columns, NAMES))


def policy(**api: Any) -> dict[str, Any]:
    return {
        "api": {
            "authentication": {"apiKeys": {"secretRef": {"name": "fraud-keys"}}},
            "authorization": {"allow": [{"apiKeyClients": ["batch"], "models": ["fraud"]}]},
            **api,
        }
    }


def predict(rows: list[list[float]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def far_row() -> list[float]:
    row = [float(v) for v in DATA[450]]
    row[0] = float(DATA[:400, 0].max()) * 3
    return row


async def test_reject_refuses_an_outlier_with_422_and_the_model_never_sees_it(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
    outlier_document: dict[str, Any],
) -> None:
    rejecting = policy(outliers={"action": "Reject", "falseFlagRate": 0.02})
    async with _stack(trained, keys_dir, rejecting, outlierModel=outlier_document) as running:
        status, _, body = await call(
            running.url, "/v1/models/fraud:predict", body=predict([far_row()]), headers=AUTH
        )
        assert status == 422, body
        answer = json.loads(body)
        assert answer["reason"] == "OutOfDistribution"
        assert "row 0: feature 'f0'" in answer["error"]
        assert "outside the reference range" in answer["error"]
        assert running.model.seen == []
        status, _, body = await call(
            running.url,
            "/v1/models/fraud:predict",
            body=predict(modelserver.sample_rows(3)),
            headers=AUTH,
        )
        assert status == 200, body
        assert len(running.model.seen) == 1
        # Open Inference, one tensor of rows: the same check.
        v2 = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": far_row()}]}
        status, _, body = await call(
            running.url, "/v2/models/fraud/infer", body=json.dumps(v2).encode(), headers=AUTH
        )
        assert status == 422
        assert b"OutOfDistribution" in body


async def test_flag_forwards_with_a_header_and_counts(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
    outlier_document: dict[str, Any],
) -> None:
    flagging = policy(outliers={"action": "Flag"})
    async with _stack(trained, keys_dir, flagging, outlierModel=outlier_document) as running:
        status, headers, _ = await call(
            running.url, "/v1/models/fraud:predict", body=predict([far_row()]), headers=AUTH
        )
        assert status == 200
        assert "feature 'f0'" in headers["X-Modelshield-Outlier"]
        assert len(running.model.seen) == 1
        metrics = running.pipeline.metrics.registry.get_sample_value(
            "modelshield_guard_outliers_total",
            {"policy": "ModelSecurityPolicy ml/p0", "action": "Flag"},
        )
        assert metrics == 1


async def test_without_an_outlier_model_the_guard_fails_closed(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
) -> None:
    async with _stack(trained, keys_dir, policy(outliers={"action": "Flag"})) as running:
        status, _, body = await call(
            running.url,
            "/v1/models/fraud:predict",
            body=predict(modelserver.sample_rows(1)),
            headers=AUTH,
        )
        assert status == 503
        assert b"no outlier model" in body
        assert running.model.seen == []


async def test_a_sweeping_client_is_blocked_and_named(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
    outlier_document: dict[str, Any],
) -> None:
    blocking = policy(probing={"action": "Block", "detectors": ["Sweep"], "coolDown": "5m"})
    async with _stack(trained, keys_dir, blocking, outlierModel=outlier_document) as running:
        seed = DATA[420]
        statuses = []
        for value in np.linspace(DATA[:400, 1].min(), DATA[:400, 1].max(), 80):
            row = [float(v) for v in seed]
            row[1] = float(value)
            status, _, _body = await call(
                running.url, "/v1/models/fraud:predict", body=predict([row]), headers=AUTH
            )
            statuses.append(status)
        assert 403 in statuses, statuses
        first = statuses.index(403)
        assert set(statuses[:first]) == {200}
        assert set(statuses[first:]) == {403}
        assert len(running.model.seen) == first
        alarms = running.pipeline.metrics.registry.get_sample_value(
            "modelshield_guard_probing_alarms_total",
            {"client": "apikey:batch", "detector": "Sweep", "policy": "ModelSecurityPolicy ml/p0"},
        )
        assert alarms == 1


async def test_a_client_stepping_like_jacobian_augmentation_is_blocked(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
    outlier_document: dict[str, Any],
) -> None:
    blocking = policy(probing={"action": "Block", "detectors": ["FixedSteps"], "coolDown": "5m"})
    async with _stack(trained, keys_dir, blocking, outlierModel=outlier_document) as running:
        rng = np.random.default_rng(5)
        scale = DATA[:400].std(0)
        points = [*DATA[420:425]]
        while len(points) < 60:
            direction = np.sign(rng.normal(size=DATA.shape[1]))
            points.extend([point + 0.1 * scale * direction for point in points])
        statuses = []
        for point in points[:60]:
            status, _, _body = await call(
                running.url,
                "/v1/models/fraud:predict",
                body=predict([[float(v) for v in point]]),
                headers=AUTH,
            )
            statuses.append(status)
        assert 403 in statuses, statuses
        first = statuses.index(403)
        assert first <= 20
        assert set(statuses[:first]) == {200}
        assert set(statuses[first:]) == {403}
        alarms = running.pipeline.metrics.registry.get_sample_value(
            "modelshield_guard_probing_alarms_total",
            {
                "client": "apikey:batch",
                "detector": "FixedSteps",
                "policy": "ModelSecurityPolicy ml/p0",
            },
        )
        assert alarms == 1


async def test_top1_answers_keep_the_v1_shape(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
) -> None:
    hardened = policy(responses={"topK": 1, "roundDecimals": 1})
    async with _stack(trained, keys_dir, hardened) as running:
        status, headers, body = await call(
            running.url,
            "/v1/models/fraud:predict",
            body=predict(modelserver.sample_rows(4)),
            headers=AUTH,
        )
        assert status == 200
        predictions = json.loads(body)["predictions"]
        assert len(predictions) == 4
        assert all(len(p) == 2 for p in predictions)
        assert all(sorted(p)[0] == 0.0 and round(p[0] + p[1], 1) == max(p) for p in predictions)
        assert int(headers["Content-Length"]) == len(body)


async def test_probing_alone_works_with_a_small_profile(
    trained: Any,  # noqa: F811
    keys_dir: pathlib.Path,  # noqa: F811
) -> None:
    # 50 reference rows cannot calibrate a 1% outlier rate; probing alone needs it only
    # for OutlierShare and uses a rate the rows can honour instead of failing.
    columns = {name: DATA[:50, i].tolist() for i, name in enumerate(NAMES)}
    small = outliermodel.to_document(outliermodel.build(columns, NAMES))
    async with _stack(trained, keys_dir, policy(probing={}), outlierModel=small) as running:
        status, _, body = await call(
            running.url,
            "/v1/models/fraud:predict",
            body=predict(modelserver.sample_rows(1)),
            headers=AUTH,
        )
        assert status == 200, body
