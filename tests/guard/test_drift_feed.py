"""The guard feeds the real drift monitor with what it forwarded, without waiting for it."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.drift import config as drift_config
from modelshield.drift import monitoring, profiles
from modelshield.drift import server as drift_server
from modelshield.guard import server
from tests.support import guardstack, modelserver
from tests.support.guardstack import KEY, KEYS_POLICY, call, guard_config, write_secret

pytestmark = pytest.mark.integration


def _monitor() -> drift_server.Service:
    data = load_breast_cancer()
    columns = {f"f{i}": [float(v) for v in data.data[:400, i]] for i in range(data.data.shape[1])}
    settings = drift_config.MonitorConfig(profile="unused", window=50)
    return drift_server.Service(settings, monitoring.Monitor(settings, profiles.build(columns)))


async def test_forwarded_bodies_reach_the_drift_monitor_and_refused_ones_do_not(
    tmp_path: pathlib.Path,
) -> None:
    keys = tmp_path / "api-keys"
    write_secret(keys, "fraud-keys", {"batch": KEY})
    monitor = _monitor()
    model = modelserver.ModelServer(modelserver.train())
    rows = modelserver.sample_rows(3)
    body = json.dumps({"instances": rows}).encode()
    async with (
        modelserver.serving(drift_server.build_app(monitor)) as drift,
        modelserver.serving(model.app()) as upstream,
    ):
        settings = guard_config(upstream, keys, KEYS_POLICY, driftMonitor=drift + "/")
        pipeline = server.pipeline_from_config(settings)
        async with guardstack.serving_guard(pipeline) as guard:
            for _ in range(4):
                status, _, _ = await call(
                    guard, "/v1/models/fraud:predict", body=body, headers={"X-Api-Key": KEY}
                )
                assert status == 200
            refused, _, _ = await call(guard, "/v1/models/fraud:predict", body=body)
            assert refused == 401
            assert pipeline.feed is not None
            await pipeline.feed.drain()
    registry: Any = pipeline.metrics.registry
    assert (
        registry.get_sample_value("modelshield_guard_drift_feed_total", {"outcome": "sent"}) == 4.0
    )
    accepted = monitor.metrics.registry.get_sample_value(
        "modelshield_drift_events_total", {"stream": "request"}
    )
    assert accepted == 4.0
