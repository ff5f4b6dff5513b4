"""Memory per request is bounded: the largest body the monitor accepts keeps it under 150 MB.

On the code of issue 18 one accepted 8 MiB body of short numbers (``0,`` is two bytes per
value, so about four million values) raised the peak resident memory from about 80 to
over 150 MiB: the parsed lists, a float matrix, its transpose and the slot indices were
all held at once, and several such bodies could be read at the same time.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib

import numpy as np
import pytest

from modelshield.drift import config, datasets, profiles
from tests.support import driftprocesses as processes

pytestmark = pytest.mark.integration

FEATURES = 20
LIMIT_MIB = 150


def _peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _body(limit: int, value: str) -> bytes:
    """A v1 request of rows of value, just under limit bytes."""
    row = "[" + ",".join(value for _ in range(FEATURES)) + "]"
    rows = (limit - 40) // (len(row) + 1)
    return ('{"instances":[' + ",".join([row] * rows) + "]}").encode()


#: The largest body the monitor accepts by default.
LARGEST = config.MonitorConfig.model_fields["max_body_bytes"].default

BODIES = {
    # The largest body of 2-byte values: about 2 M values, more than the queue holds;
    # refused unparsed.
    "densest": (_body(LARGEST, "0"), 413),
    # Just under maxQueuedValues (1 M) values, the most an event may carry: accepted.
    "most-values": (_body(1_000_000 * 2 - 1000, "0"), 202),
    # The largest accepted body of 17-digit floats (4 MiB: about 230,000 values).
    "long-floats": (_body(LARGEST, "0.123456789012345"), 202),
}


@pytest.fixture
def monitor(tmp_path: pathlib.Path) -> processes.MonitorProcess:
    rng = np.random.default_rng(0)
    profile = profiles.build(
        {f"f{i}": rng.integers(0, 3, 5000).astype(float).tolist() for i in range(FEATURES)}
    )
    datasets.write_profile(profile, tmp_path / "profile.json")
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(json.dumps({"profile": "profile.json", "window": 1000}))
    return processes.start(config_path, tmp_path / "monitor.log")


@pytest.mark.parametrize("kind", list(BODIES))
def test_the_largest_accepted_bodies_keep_the_monitor_under_150_mb(
    monitor: processes.MonitorProcess, kind: str
) -> None:
    body, expected = BODIES[kind]
    try:
        assert len(body) <= LARGEST
        statuses = []
        # Four at once: bodies being read concurrently must not add up.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for status, _ in pool.map(lambda _: monitor.post(body), range(8)):
                statuses.append(status)
        assert set(statuses) <= {expected, 429}, statuses
        assert expected in statuses
        peak = _peak_rss_mib(monitor.process.pid)
        print(f"{kind}: {len(body):,} bytes, statuses {statuses}, peak RSS {peak:.1f} MiB")
        assert peak <= LIMIT_MIB, f"peak RSS {peak:.1f} MiB"
        # Still serving, and an ordinary request still works.
        assert monitor.post(b'{"instances": [[' + b"1," * (FEATURES - 1) + b"1]]}")[0] == 202
    finally:
        assert monitor.stop() == 0
