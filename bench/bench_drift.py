"""Drift monitor throughput and memory, over real HTTP on loopback.

The monitor runs as its own process (``python -m modelshield.cli.main drift-monitor``)
pinned to one core; the load generator runs in another process pinned to the other core
and speaks raw HTTP/1.1 with keep-alive and pipelining (so that the generator is not the
bottleneck). Figures:

1. single-row KServe CloudEvents (binary mode) per second;
2. feature rows per second in 100-row batches of 20 features;
3. the monitor's resident memory while those rows go through (default 10 M rows).

Baselines measured in the same run, on the server's core, without HTTP: the calibration
loop of the issue (``json.loads`` plus a per-feature ``numpy.searchsorted`` loop), the same
loop with ``orjson.loads`` (to separate the parser's share), and the monitor's own parse +
count path in-process. Ratios are printed; nothing is asserted.

    .venv/bin/python bench/bench_drift.py                 # 10 M rows, a few minutes
    .venv/bin/python bench/bench_drift.py --rows 1000000  # quick run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelshield.drift import config, datasets, monitoring, payloads, profiles

FEATURES = 20
BATCH_ROWS = 100
REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _body(rows: np.ndarray[Any, Any]) -> bytes:
    instances = ",".join("[" + ",".join(f"{v:.6g}" for v in row) + "]" for row in rows)
    return ('{"instances": [' + instances + "]}").encode()


def _request(body: bytes, port: int) -> bytes:
    headers = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "ce-specversion: 1.0\r\nce-type: org.kubeflow.serving.inference.request\r\n"
        f"ce-source: http://localhost:9081/\r\nce-id: {uuid.uuid4()}\r\n"
        "ce-inferenceservicename: bench\r\nce-namespace: default\r\nce-endpoint: \r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return headers.encode() + body


def bodies(rows_per_body: int, count: int, seed: int) -> list[bytes]:
    """Distinct request bodies of unshifted rows."""
    rng = np.random.default_rng(seed)
    return [_body(rng.normal(0, 1, (rows_per_body, FEATURES))) for _ in range(count)]


# --- the load generator (runs in its own process) -----------------------------------------


async def _connection(
    port: int,
    requests: list[bytes],
    count: int,
    depth: int,
    offset: int,
    statuses: collections.Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = received = 0
    buffer = bytearray()
    index = offset
    while received < count:
        burst = []
        while sent < count and sent - received < depth:
            burst.append(requests[index % len(requests)])
            index += 1
            sent += 1
        if burst:
            writer.write(b"".join(burst))
        data = await reader.read(1 << 16)
        if not data:
            raise ConnectionError("the monitor closed the connection")
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buffer[:end]).lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 : head.find(b"\r\n", start) if head.find(b"\r\n", start) > 0 else None]) if start >= 0 else 0
            if len(buffer) < end + 4 + length:
                break
            statuses[int(head[9:12])] += 1
            del buffer[: end + 4 + length]
            received += 1
    writer.close()


async def _generate(port: int, requests: list[bytes], total: int, connections: int, depth: int) -> dict[str, Any]:
    statuses: collections.Counter[int] = collections.Counter()
    share = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    started = time.perf_counter()
    # Each connection starts elsewhere in the pool, so that a window never holds copies.
    stride = len(requests) // connections
    await asyncio.gather(
        *(
            _connection(port, requests, n, depth, i * stride, statuses)
            for i, n in enumerate(share)
            if n
        )
    )
    return {"seconds": time.perf_counter() - started, "statuses": dict(statuses)}


def loadgen_main(arguments: argparse.Namespace) -> int:
    """Entry of the load generator process: prints one JSON line of results."""
    os.sched_setaffinity(0, {arguments.loadgen_cpu})
    rows = 1 if arguments.loadgen == "single" else BATCH_ROWS
    requests = [_request(body, arguments.port) for body in bodies(rows, 4000 if rows == 1 else 500, seed=7)]
    result = asyncio.run(
        _generate(arguments.port, requests, arguments.requests, arguments.connections, arguments.depth)
    )
    print(json.dumps(result))
    return 0


# --- baselines (no HTTP) ------------------------------------------------------------------


def calibration(
    samples: Sequence[bytes], edges: Sequence[np.ndarray[Any, Any]], loads: Callable[[bytes], Any]
) -> tuple[float, int]:
    """The issue's calibration loop: parse, then one searchsorted per feature. (seconds, rows)."""
    counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in edges]
    rows = 0
    started = time.perf_counter()
    for body in samples:
        instances = loads(body)["instances"]
        rows += len(instances)
        for j, feature_edges in enumerate(edges):
            column = np.array([row[j] for row in instances])
            counts[j] += np.bincount(np.searchsorted(feature_edges, column), minlength=len(feature_edges) + 1)
    return time.perf_counter() - started, rows


def in_process(samples: Sequence[bytes], monitor: monitoring.Monitor, drain: int) -> tuple[float, int]:
    """The monitor's own parse and count path, without HTTP. (seconds, rows)."""
    headers = {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request"}
    layouts = monitor.layouts_by_stream
    rows = 0
    pending: list[payloads.Batch] = []
    started = time.perf_counter()
    for body in samples:
        batch = payloads.parse(headers, body, layouts)
        assert batch is not None
        pending.append(batch)
        rows += batch.rows
        if len(pending) >= drain:
            monitor.add(pending)
            pending = []
    monitor.add(pending)
    return time.perf_counter() - started, rows


# --- the run --------------------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _load(arguments: argparse.Namespace, port: int, mode: str, requests: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--loadgen", mode, "--port", str(port), "--requests", str(requests),
        "--connections", str(arguments.connections), "--depth", str(arguments.depth),
        "--loadgen-cpu", str(arguments.loadgen_cpu),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    while process.poll() is None:
        samples.append((time.perf_counter() - started, _rss_mib(arguments.server_pid)))
        time.sleep(0.5)
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["rss"] = samples
    return result


def run(arguments: argparse.Namespace) -> int:
    """Set up, measure, print."""
    os.sched_setaffinity(0, {arguments.server_cpu})
    rng = np.random.default_rng(1)
    columns = {f"f{i}": list(rng.normal(0, 1, 20_000)) for i in range(FEATURES)}
    profile = profiles.build(columns)
    edges = [np.array(f.edges) for f in profile.features if isinstance(f, profiles.NumericFeature)]
    settings = config.MonitorConfig(profile="profile.json", window=arguments.window)
    single, batched = bodies(1, 2000, seed=3), bodies(BATCH_ROWS, 200, seed=4)
    print(f"machine: {os.cpu_count()} cores; server on core {arguments.server_cpu}, "
          f"load generator on core {arguments.loadgen_cpu}; window {arguments.window} rows")
    baselines: dict[str, tuple[float, float]] = {}
    orjson_loads = __import__("orjson").loads
    for label, samples, repeat in (("single", single, 10), ("batch", batched, 10)):
        for name, loads in (("json", json.loads), ("orjson", orjson_loads)):
            seconds, rows = calibration(list(samples) * repeat, edges, loads)
            baselines[f"{label}/{name}"] = (rows / seconds, len(samples) * repeat / seconds)
        seconds, rows = in_process(list(samples) * repeat, monitoring.Monitor(settings, profile), 256)
        baselines[f"{label}/monitor"] = (rows / seconds, len(samples) * repeat / seconds)
    print("\nwithout HTTP, on one core (rows/s, requests/s):")
    for key, (rows_per_second, requests_per_second) in baselines.items():
        print(f"  {key:16s} {rows_per_second:12,.0f} rows/s {requests_per_second:10,.0f} req/s")

    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        datasets.write_profile(profile, root / "profile.json")
        (root / "monitor.yaml").write_text(json.dumps({"profile": "profile.json", "window": arguments.window}))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "modelshield.cli.main", "drift-monitor", "--config",
             str(root / "monitor.yaml"), "--port", str(port), "--host", "127.0.0.1",
             "--log-level", "warning"],
            cwd=REPOSITORY,
        )
        try:
            os.sched_setaffinity(server.pid, {arguments.server_cpu})
            os.sched_setaffinity(0, {arguments.loadgen_cpu})
            arguments.server_pid = server.pid
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            rss_start = _rss_mib(server.pid)
            events = _load(arguments, port, "single", arguments.events)
            event_rate = arguments.events / events["seconds"]
            batches = arguments.rows // BATCH_ROWS
            load = _load(arguments, port, "batch", batches)
            row_rate = batches * BATCH_ROWS / load["seconds"]
            time.sleep(1)
            counted = _metric(port, "modelshield_drift_rows_total")
            dropped = _metric(port, "modelshield_drift_dropped_total")
            rss = [mib for _, mib in load["rss"]]
            rss_end = _rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(10)

    single_base = baselines["single/json"][1]
    batch_base = baselines["batch/json"][0]
    print("\nover HTTP (loopback, pipelined keep-alive connections):")
    print(f"  single-row CloudEvents: {event_rate:10,.0f} events/s  (goal >= 5,000)  "
          f"statuses {events['statuses']}")
    print(f"    vs calibration loop without HTTP (json.loads): {event_rate / single_base:.2f}x")
    print(f"  100-row batches x {FEATURES} features: {row_rate:10,.0f} rows/s  (goal >= 200,000)  "
          f"statuses {load['statuses']}")
    print(f"    vs calibration loop without HTTP (json.loads): {row_rate / batch_base:.2f}x")
    print(f"  rows counted by the monitor: {counted:,.0f}; dropped events: {dropped:,.0f}")
    quarter = max(1, len(rss) // 4)
    print(f"  RSS: {rss_start:.1f} MiB idle; during {arguments.rows:,} rows: first quarter max "
          f"{max(rss[:quarter], default=rss_start):.1f}, last quarter max "
          f"{max(rss[-quarter:], default=rss_start):.1f}, overall max {max(rss, default=rss_start):.1f}; "
          f"after {rss_end:.1f} MiB  (goal <= 150 MB and flat)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options; run the benchmark or, with --loadgen, the load generator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the batch phase")
    parser.add_argument("--events", type=int, default=200_000, help="single-row events")
    parser.add_argument("--window", type=int, default=1000, help="monitor window (rows)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--depth", type=int, default=32, help="pipelined requests per connection")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--loadgen", choices=["single", "batch"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.loadgen:
        return loadgen_main(arguments)
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
