"""The monitor as a real process over real HTTP: KServe events, alarms, restarts, load shedding."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.support import driftprocesses as processes
from tests.support import driftsynthetic as synthetic

pytestmark = pytest.mark.integration

WINDOW = 500


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Training data and the profile built from it by the real `modelshield drift profile`."""
    directory = tmp_path_factory.mktemp("drift")
    columns = synthetic.training_columns(5000)
    names = list(columns)
    lines = [",".join(names)] + [
        ",".join(str(columns[name][i]) for name in names) for i in range(5000)
    ]
    (directory / "train.csv").write_text("\n".join(lines) + "\n")
    done = processes.modelshield(
        "drift", "profile", str(directory / "train.csv"), "--out", str(directory / "profile.json")
    )
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture
def monitor(workdir: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[processes.MonitorProcess]:
    """A monitor process with windows of 500 rows."""
    running = processes.start(
        processes.write_config(workdir, window=WINDOW), tmp_path / "monitor.log"
    )
    yield running
    assert running.stop() == 0


def _send_windows(
    monitor: processes.MonitorProcess, count: int, rng: np.random.Generator, **shift: Any
) -> None:
    """count windows as binary-mode CloudEvents of 50 rows, alternating with structured mode."""
    for i in range(count * WINDOW // 50):
        row_list = synthetic.rows(50, rng, **shift)
        if i % 2:
            status, body = monitor.post(
                synthetic.structured("request", {"instances": row_list}),
                {"Content-Type": "application/cloudevents+json"},
            )
        else:
            status, body = monitor.post(
                synthetic.body(row_list), synthetic.binary_headers("request")
            )
        assert status == 202, body


def test_kserve_events_in_both_modes_raise_and_log_drift(monitor: processes.MonitorProcess) -> None:
    rng = np.random.default_rng(0)
    _send_windows(monitor, 2, rng)
    monitor.wait_for('modelshield_drift_windows_total{stream="request"}', 2)
    assert monitor.metric('modelshield_drift_detected{feature="x2"}') == 0
    _send_windows(monitor, 1, rng, shift={"x2": 1.5})
    monitor.wait_for('modelshield_drift_windows_total{stream="request"}', 3)
    assert monitor.metric('modelshield_drift_detected{feature="x2"}') == 1
    assert monitor.metric('modelshield_drift_detected{feature="x1"}') == 0
    assert monitor.metric('modelshield_drift_events_total{stream="request"}') == 30
    log = monitor.log.read_text()
    assert "drift detected: stream=request feature=x2 statistic=PSI" in log
    assert "window=3" in log


def test_malformed_events_are_refused_with_a_reason_and_counted(
    monitor: processes.MonitorProcess,
) -> None:
    status, body = monitor.post(b'{"instances": [[1, 2, 3]]}', synthetic.binary_headers("request"))
    assert status == 400
    reason = json.loads(body)
    assert reason["reason"] == "width-mismatch"
    assert "x0, x1, x2, x3, x4, x5, colour" in reason["message"]
    status, body = monitor.post(b"\x00\x01", {"Content-Type": "application/cloudevents+json"})
    assert (status, json.loads(body)["reason"]) == (400, "invalid-json")
    assert monitor.metric('modelshield_drift_rejected_total{reason="width-mismatch"}') == 1
    assert monitor.metric('modelshield_drift_rejected_total{reason="invalid-json"}') == 1
    assert monitor.get("/healthz")[0] == 200


def test_a_restart_rebuilds_from_the_next_full_window_without_false_alarms(
    workdir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    config_file = processes.write_config(workdir, window=WINDOW)
    rng = np.random.default_rng(1)
    first = processes.start(config_file, tmp_path / "first.log")
    try:
        _send_windows(first, 1, rng, shift={"x0": 2.0})
        first.wait_for('modelshield_drift_detected{feature="x0"}', 1)
        # Half a window of shifted rows that the restart loses.
        for _ in range(5):
            first.post(synthetic.body(synthetic.rows(50, rng, shift={"x0": 2.0})))
    finally:
        assert first.stop() == 0
    second = processes.start(config_file, tmp_path / "second.log")
    try:
        assert second.metric('modelshield_drift_detected{feature="x0"}') == 0
        assert second.metric('modelshield_drift_windows_total{stream="request"}') == 0
        # The first 450 clean rows complete no window: nothing is scored from a partial one.
        for _ in range(9):
            second.post(synthetic.body(synthetic.rows(50, rng)))
        second.wait_for('modelshield_drift_rows_total{stream="request"}', 450)
        assert second.metric('modelshield_drift_windows_total{stream="request"}') == 0
        _send_windows(second, 4, rng)
        second.wait_for('modelshield_drift_windows_total{stream="request"}', 4)
        assert (
            second.metric('modelshield_drift_alarms_total{feature="x0",transition="Raised"}') == 0
        )
        assert "drift detected" not in second.log.read_text()
    finally:
        assert second.stop() == 0


def test_a_full_queue_sheds_load_with_429_and_counts_every_drop(
    workdir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    config_file = processes.write_config(workdir, window=WINDOW, queueSize=2)
    monitor = processes.start(config_file, tmp_path / "monitor.log")
    rng = np.random.default_rng(2)
    bodies = [synthetic.body(synthetic.rows(100, rng)) for _ in range(20)]

    async def flood() -> list[int]:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(body: bytes) -> int:
                async with session.post(monitor.url + "/", data=body) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one(bodies[i % 20]) for i in range(600)))

    try:
        statuses = asyncio.run(flood())
        accepted, refused = statuses.count(202), statuses.count(429)
        assert accepted + refused == 600
        assert refused > 0
        assert monitor.metric("modelshield_drift_dropped_total") == refused
        assert monitor.metric('modelshield_drift_events_total{stream="request"}') == accepted
        monitor.wait_for('modelshield_drift_rows_total{stream="request"}', accepted * 100)
        assert monitor.get("/readyz")[0] == 200
    finally:
        assert monitor.stop() == 0


def test_a_profile_that_does_not_fit_the_config_is_reported(
    workdir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(
        json.dumps({"profile": str(workdir / "profile.json"), "features": ["x0", "age"]})
    )
    done = processes.modelshield("drift-monitor", "--config", str(config_file))
    assert done.returncode == 2
    assert (
        "feature 'age' is not in the profile (it has: x0, x1, x2, x3, x4, x5, colour)"
        in done.stderr
    )
    config_file.write_text(
        json.dumps({"profile": str(workdir / "profile.json"), "statistic": "Median"})
    )
    done = processes.modelshield("drift-monitor", "--config", str(config_file))
    assert done.returncode == 2
    assert "statistic: Input should be 'PSI'" in done.stderr
