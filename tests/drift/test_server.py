"""The monitor's HTTP service in-process, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp import test_utils

from modelshield.drift import config, monitoring, server
from tests.support import driftsynthetic as synthetic

pytestmark = pytest.mark.integration


def _service(**settings: Any) -> server.Service:
    monitor_config = config.MonitorConfig(profile="unused", **settings)
    return server.Service(monitor_config, monitoring.Monitor(monitor_config, synthetic.profile()))


async def _client(
    service: server.Service, *, start_worker: bool
) -> test_utils.TestClient[Any, Any]:
    client: test_utils.TestClient[Any, Any] = test_utils.TestClient(
        test_utils.TestServer(
            server.build_app(service, start_worker=start_worker), host="127.0.0.1"
        )
    )
    await client.start_server()
    return client


def metric(text: str, name: str) -> float:
    """The value of one sample of the Prometheus text (labels included in name)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


@pytest.fixture
async def stalled() -> AsyncIterator[tuple[server.Service, test_utils.TestClient[Any, Any]]]:
    """A monitor whose window worker is not running, with a queue of 3."""
    service = _service(queue_size=3)
    client = await _client(service, start_worker=False)
    yield service, client
    await client.close()


async def test_a_full_queue_answers_429_and_counts_the_drops(
    stalled: tuple[server.Service, test_utils.TestClient[Any, Any]],
) -> None:
    _, client = stalled
    rng = np.random.default_rng(0)
    statuses = []
    for _ in range(5):
        response = await client.post(
            "/",
            data=synthetic.body(synthetic.rows(2, rng)),
            headers=synthetic.binary_headers("request"),
        )
        statuses.append(response.status)
        if response.status == 429:
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["reason"] == "queue-full"
    assert statuses == [202, 202, 202, 429, 429]
    text = await (await client.get("/metrics")).text()
    assert metric(text, "modelshield_drift_dropped_total") == 2
    assert metric(text, 'modelshield_drift_events_total{stream="request"}') == 3
    assert metric(text, "modelshield_drift_queue_depth") == 3
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


async def test_the_queue_is_bounded_in_values_too() -> None:
    service = _service(queue_size=100, max_queued_values=100)
    client = await _client(service, start_worker=False)
    rng = np.random.default_rng(3)
    try:
        statuses = []
        # 7 features: 140 values are more than one event may carry (413, unqueued), 70 pass,
        # then 35 more do not fit (429).
        for rows in (20, 10, 5):
            response = await client.post("/", data=synthetic.body(synthetic.rows(rows, rng)))
            statuses.append(response.status)
        assert statuses == [413, 202, 429]
        assert service.queued_values == 70
        text = await (await client.get("/metrics")).text()
        assert metric(text, "modelshield_drift_dropped_total") == 1
        assert metric(text, 'modelshield_drift_rejected_total{reason="too-many-values"}') == 1
    finally:
        await client.close()


async def test_malformed_payloads_get_a_reason_and_are_counted() -> None:
    service = _service(max_body_bytes=4096)
    client = await _client(service, start_worker=True)
    try:
        cases = [
            (b"{oops", {}, 400, "invalid-json"),
            (b'{"instances": [[1, 2]]}', {}, 400, "width-mismatch"),
            (
                b'{"instances": [[1, 2]]}',
                {**synthetic.binary_headers("request"), "Ce-Type": "x"},
                400,
                "unknown-event-type",
            ),
            (b"[" + b"1.0," * 2000 + b"1.0]", {}, 413, "too-large"),
        ]
        for body, headers, status, reason in cases:
            response = await client.post("/", data=body, headers=headers)
            assert response.status == status
            assert (await response.json())["reason"] == reason
        text = await (await client.get("/metrics")).text()
        for _, _, _, reason in cases:
            assert metric(text, f'modelshield_drift_rejected_total{{reason="{reason}"}}') == 1
        assert (await client.get("/readyz")).status == 200
    finally:
        await client.close()


async def test_windows_scores_and_detection_reach_the_metrics() -> None:
    service = _service(window=500)
    client = await _client(service, start_worker=True)
    rng = np.random.default_rng(1)
    try:
        for shift in (0.0, 0.0, 2.0):
            for _ in range(5):
                body = synthetic.body(synthetic.rows(100, rng, shift={"x1": shift}))
                assert (await client.post("/events", data=body)).status == 202
            await _drained(service)
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert metric(text, 'modelshield_drift_windows_total{stream="request"}') == 3
    assert metric(text, 'modelshield_drift_rows_total{stream="request"}') == 1500
    assert metric(text, 'modelshield_drift_detected{feature="x1"}') == 1
    assert metric(text, 'modelshield_drift_detected{feature="x0"}') == 0
    assert metric(text, 'modelshield_drift_score{feature="x1",statistic="PSI"}') > 0.2
    assert metric(text, 'modelshield_drift_score{feature="colour",statistic="JensenShannon"}') < 0.1
    assert metric(text, 'modelshield_drift_threshold{feature="x1",statistic="PSI"}') == 0.2
    assert metric(text, 'modelshield_drift_alarms_total{feature="x1",transition="Raised"}') == 1
    assert metric(text, 'modelshield_drift_window_fill_ratio{stream="request"}') == 0


async def test_schema_mismatches_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    service = _service()
    client = await _client(service, start_worker=True)
    records = [
        {"x0": 1.0, "x1": 1.0, "x2": 1.0, "x3": 1.0, "x4": 1.0, "colour": "red", "shoe_size": 44}
    ]
    try:
        for _ in range(2):
            response = await client.post("/", data=json.dumps(records))
            assert response.status == 202
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    assert (
        metric(text, 'modelshield_drift_schema_mismatch_total{feature="x5",problem="missing"}') == 2
    )
    assert (
        metric(text, 'modelshield_drift_schema_mismatch_total{feature="shoe_size",problem="extra"}')
        == 2
    )
    warnings = [
        r.getMessage() for r in caplog.records if "does not match the profile" in r.getMessage()
    ]
    assert len(warnings) == 2


async def _drained(service: server.Service) -> None:
    """Wait until the worker has taken everything from the queue and counted it."""
    for _ in range(200):
        if service.queue.empty():
            await asyncio.sleep(server.GATHER_SECONDS * 3)
            if service.queue.empty():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker did not drain the queue")


async def test_client_chosen_feature_names_cannot_grow_the_metrics_without_bound() -> None:
    service = _service()
    client = await _client(service, start_worker=True)
    base = {"x0": 1.0, "x1": 1.0, "x2": 1.0, "x3": 1.0, "x4": 1.0, "x5": 1.0, "colour": "red"}
    try:
        for i in range(server.MISMATCH_LABELS + 50):
            response = await client.post("/", data=json.dumps([{**base, f"junk{i}": 1}]))
            assert response.status == 202
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    labelled = [
        line
        for line in text.splitlines()
        if line.startswith("modelshield_drift_schema_mismatch_total{")
    ]
    assert len(labelled) == server.MISMATCH_LABELS + 1
    other = f'modelshield_drift_schema_mismatch_total{{feature="{server.OTHER_FEATURES}",problem="extra"}}'
    assert metric(text, other) == 50
