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

With ``--whole-numbers`` the 20 features are whole-number pixel counts (0..16, digits-like)
instead of normal values, so each keeps its discrete support and every window also runs
the off-support test per value and chi-square's unseen term (the monitor scores every
statistic each window, whichever one it alarms on).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import importlib
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

from modelshield.drift import (
    config,
    datasets,
    layouts,
    monitoring,
    payloads,
    profiles,
    statistics,
    windows,
)

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


PIXEL_SHARES = np.array([40, 6, 5, 5, 5, 5, 5, 5, 4, 4, 4, 3, 3, 2, 2, 1, 1], dtype=float)
"""Shares of the values 0..16 of a digits-like pixel: mostly 0, a long tail to 16."""
PIXEL_SHARES /= PIXEL_SHARES.sum()


def values(rng: np.random.Generator, shape: tuple[int, int], whole_numbers: bool) -> Any:
    """Unshifted feature values: standard normal, or whole-number pixel counts."""
    if whole_numbers:
        return rng.choice(np.arange(17.0), size=shape, p=PIXEL_SHARES)
    return rng.normal(0, 1, shape)


def bodies(rows_per_body: int, count: int, seed: int, whole_numbers: bool = False) -> list[bytes]:
    """Distinct request bodies of unshifted rows."""
    rng = np.random.default_rng(seed)
    return [_body(values(rng, (rows_per_body, FEATURES), whole_numbers)) for _ in range(count)]


# --- the load generator (runs in its own process) -----------------------------------------


def _content_length(head: bytes) -> int:
    """Content-Length of a response head (lower-cased), 0 when absent."""
    start = head.find(b"content-length:")
    if start < 0:
        return 0
    end = head.find(b"\r\n", start)
    return int(head[start + 15 : end if end > 0 else None])


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
            length = _content_length(head)
            if len(buffer) < end + 4 + length:
                break
            statuses[int(head[9:12])] += 1
            del buffer[: end + 4 + length]
            received += 1
    writer.close()


async def _generate(
    port: int, requests: list[bytes], total: int, connections: int, depth: int
) -> dict[str, Any]:
    statuses: collections.Counter[int] = collections.Counter()
    share = [
        total // connections + (1 if i < total % connections else 0) for i in range(connections)
    ]
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
    requests = [
        _request(body, arguments.port)
        for body in bodies(rows, 4000 if rows == 1 else 500, 7, arguments.whole_numbers)
    ]
    result = asyncio.run(
        _generate(
            arguments.port, requests, arguments.requests, arguments.connections, arguments.depth
        )
    )
    print(json.dumps(result))
    return 0


# --- baselines (no HTTP) ------------------------------------------------------------------


def calibration(
    samples: Sequence[bytes], edges: Sequence[np.ndarray[Any, Any]], loads: Callable[[bytes], Any]
) -> tuple[float, int]:
    """The issue's calibration loop: parse, then one searchsorted per feature. (CPU seconds, rows)."""
    counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in edges]
    rows = 0
    started = time.process_time()
    for body in samples:
        instances = loads(body)["instances"]
        rows += len(instances)
        for j, feature_edges in enumerate(edges):
            column = np.array([row[j] for row in instances])
            counts[j] += np.bincount(
                np.searchsorted(feature_edges, column), minlength=len(feature_edges) + 1
            )
    return time.process_time() - started, rows


def in_process(
    samples: Sequence[bytes], monitor: monitoring.Monitor, drain: int
) -> tuple[float, int]:
    """The monitor's own parse and count path, without HTTP. (CPU seconds, rows)."""
    headers = {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request"}
    layouts = monitor.layouts_by_stream
    rows = 0
    pending: list[payloads.Batch] = []
    started = time.process_time()
    for body in samples:
        batch = payloads.parse(headers, body, layouts)
        assert batch is not None
        pending.append(batch)
        rows += batch.rows
        if len(pending) >= drain:
            monitor.add(pending)
            pending = []
    monitor.add(pending)
    return time.process_time() - started, rows


# --- the run --------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        sys.executable,
        __file__,
        "--loadgen",
        mode,
        "--port",
        str(port),
        "--requests",
        str(requests),
        "--connections",
        str(arguments.connections),
        "--depth",
        str(arguments.depth),
        "--loadgen-cpu",
        str(arguments.loadgen_cpu),
        *(["--whole-numbers"] if arguments.whole_numbers else []),
    ]
    cpu_before = _cpu_seconds(arguments.server_pid)
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
    result["server_cpu"] = _cpu_seconds(arguments.server_pid) - cpu_before
    return result


def measure_baselines(
    profile: profiles.Profile, settings: config.MonitorConfig, whole_numbers: bool = False
) -> dict[str, float]:
    """Rows per CPU second of each loop without HTTP, for single rows and 100-row batches."""
    edges = [np.array(f.edges) for f in profile.features if isinstance(f, profiles.NumericFeature)]
    orjson_loads = importlib.import_module("orjson").loads
    rates: dict[str, float] = {}
    for label, samples in (
        ("single", bodies(1, 2000, 3, whole_numbers) * 10),
        ("batch", bodies(BATCH_ROWS, 200, 4, whole_numbers) * 10),
    ):
        for name, loads in (("json", json.loads), ("orjson", orjson_loads)):
            seconds, rows = calibration(samples, edges, loads)
            rates[f"{label}/calibration, {name}.loads"] = rows / seconds
        seconds, rows = in_process(samples, monitoring.Monitor(settings, profile), 256)
        rates[f"{label}/monitor parse+count"] = rows / seconds
    return rates


def _start_server(
    root: pathlib.Path, arguments: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelshield.cli.main",
            "drift-monitor",
            "--config",
            str(root / "monitor.yaml"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        cwd=REPOSITORY,
    )
    os.sched_setaffinity(server.pid, {arguments.server_cpu})
    # With falseAlarmRate and no stored calibration the monitor simulates its null tables
    # before it is ready: a few CPU-seconds, minutes on a loaded machine.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return server, port
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the monitor did not become ready")


def _print_phase(
    label: str, count: float, unit: str, goal: str, result: dict[str, Any], baseline: float
) -> None:
    wall = count / result["seconds"]
    cpu = count / result["server_cpu"] if result["server_cpu"] > 0 else float("nan")
    print(
        f"  {label}: {wall:10,.0f} {unit}/s wall clock; {cpu:10,.0f} {unit} per server CPU-second "
        f"(goal {goal} per core); statuses {result['statuses']}"
    )
    print(
        f"    per CPU-second vs the calibration loop without HTTP (json.loads): {cpu / baseline:.2f}x"
    )


def run(arguments: argparse.Namespace) -> int:
    """Set up, measure, print."""
    os.sched_setaffinity(0, {arguments.server_cpu})
    rng = np.random.default_rng(1)
    reference = values(rng, (20_000, FEATURES), arguments.whole_numbers)
    profile = profiles.build({f"f{i}": list(reference[:, i]) for i in range(FEATURES)})
    supports = sum(
        1 for f in profile.features if isinstance(f, profiles.NumericFeature) and f.support
    )
    settings = config.MonitorConfig(
        profile="profile.json",
        window=arguments.window,
        false_alarm_rate=arguments.false_alarm_rate,
        statistic=arguments.statistic,
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; server on core "
        f"{arguments.server_cpu}, load generator on core {arguments.loadgen_cpu}; "
        f"window {arguments.window} rows; {FEATURES} numeric features ({supports} with a "
        f"discrete support); falseAlarmRate "
        f"{arguments.false_alarm_rate or 'not set (fixed threshold)'}; alarm statistic "
        f"{arguments.statistic}"
    )
    before = measure_baselines(profile, settings, arguments.whole_numbers)

    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        datasets.write_profile(profile, root / "profile.json")
        monitor_config: dict[str, Any] = {
            "profile": "profile.json",
            "window": arguments.window,
            "statistic": arguments.statistic,
        }
        if arguments.false_alarm_rate:
            monitor_config["falseAlarmRate"] = arguments.false_alarm_rate
        (root / "monitor.yaml").write_text(json.dumps(monitor_config))
        server, port = _start_server(root, arguments)
        try:
            os.sched_setaffinity(0, {arguments.loadgen_cpu})
            arguments.server_pid = server.pid
            rss_start = _rss_mib(server.pid)
            events = _load(arguments, port, "single", arguments.events)
            load = _load(arguments, port, "batch", arguments.rows // BATCH_ROWS)
            time.sleep(1)
            counted = _metric(port, "modelshield_drift_rows_total")
            dropped = _metric(port, "modelshield_drift_dropped_total")
            rss = [mib for _, mib in load["rss"]]
            rss_end = _rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    os.sched_setaffinity(0, {arguments.server_cpu})
    after = measure_baselines(profile, settings, arguments.whole_numbers)
    rates = {key: (before[key] + after[key]) / 2 for key in before}

    print(
        "\nwithout HTTP, rows per CPU-second on one core (mean of before and after the HTTP runs):"
    )
    for key, rate in rates.items():
        print(f"  {key:34s} {rate:12,.0f}   (before {before[key]:,.0f}, after {after[key]:,.0f})")
    print("\nover HTTP (loopback, pipelined keep-alive connections, server pinned to one core):")
    _print_phase(
        "single-row CloudEvents",
        arguments.events,
        "events",
        ">= 5,000",
        events,
        rates["single/calibration, json.loads"],
    )
    _print_phase(
        f"100-row batches x {FEATURES} features",
        arguments.rows // BATCH_ROWS * BATCH_ROWS,
        "rows",
        ">= 200,000",
        load,
        rates["batch/calibration, json.loads"],
    )
    print(f"  rows counted by the monitor: {counted:,.0f}; dropped events: {dropped:,.0f}")
    quarter = max(1, len(rss) // 4)
    print(
        f"  RSS: {rss_start:.1f} MiB idle; while {arguments.rows:,} rows went through: first quarter "
        f"max {max(rss[:quarter], default=rss_start):.1f}, last quarter max "
        f"{max(rss[-quarter:], default=rss_start):.1f}, overall max {max(rss, default=rss_start):.1f}; "
        f"after {rss_end:.1f} MiB  (goal <= 150 MB and flat)"
    )
    return 0


FALSE_ALARM_SETTINGS = (
    ("PSI", 0.2),
    ("KolmogorovSmirnov", 0.1),
    ("ChiSquare", 0.3),
    ("JensenShannon", 0.1),
    ("Wasserstein", 0.3),
)


def false_alarms(window_sizes: Sequence[int], count: int) -> int:
    """Share of feature-windows over the threshold on unshifted traffic, per statistic and window."""
    rng = np.random.default_rng(11)
    categories, weights = ["red", "green", "blue", "amber"], [0.4, 0.3, 0.2, 0.1]
    columns: dict[str, list[Any]] = {f"x{i}": rng.normal(0, 1, 20_000).tolist() for i in range(6)}
    columns["colour"] = [str(c) for c in rng.choice(categories, 20_000, p=weights)]
    profile = profiles.build(columns)
    print(
        f"unshifted traffic, {count:,} windows per cell, 6 numeric features (10 bins) and one "
        "4-valued category: share of feature-windows over the threshold (alarms raised)"
    )
    print(
        "window  "
        + "  ".join(f"{name} {threshold}".rjust(22) for name, threshold in FALSE_ALARM_SETTINGS)
    )
    for size in window_sizes:
        cells = []
        for name, threshold in FALSE_ALARM_SETTINGS:
            settings = config.MonitorConfig(
                profile="-", statistic=name, threshold=threshold, window=size
            )
            monitor = monitoring.Monitor(settings, profile)
            layout = monitor.layouts_by_stream["request"]
            codes = np.array([layout.codes[0][c] for c in categories])
            over = raised = total = 0
            for _ in range(count // 100):
                numeric = rng.normal(0, 1, (size * 100, 6))
                categorical = rng.choice(codes, (size * 100, 1), p=weights)
                for result in monitor.add([payloads.Batch("request", numeric, categorical)]):
                    over += int(np.sum(result.alarm_scores > np.array(result.thresholds)))
                    raised += sum(c.transition.value == "Raised" for c in result.crossings)
                    total += len(result.alarm_scores)
            cells.append(f"{over / total:8.3%} ({raised:5d})")
        print(f"{size:6d}  " + "  ".join(cell.rjust(22) for cell in cells))
    return 0


def scoring(window: int, rounds: int = 30, repeats: int = 200) -> int:
    """CPU per window of statistics.score with and without the Wasserstein bound, interleaved.

    The bound (calibrated monitors only) runs once per full window; both variants score
    the same window of FEATURES numeric features in one process, round by round.
    """
    rng = np.random.default_rng(1)
    profile = profiles.build({f"f{i}": list(rng.normal(0, 1, 20_000)) for i in range(FEATURES)})
    layout = layouts.build(profile, profile.names)
    rows = rng.normal(0, 1.2, (window, FEATURES))  # wider than the reference: out-of-range mass
    counter = windows.TumblingWindow(layout, window)
    slots = windows.encode(layout, rows, np.empty((window, 0), dtype=np.intp))
    ((counts, sums),) = counter.add_rows(slots, rows)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for bounded in (False, True):
            started = time.process_time()
            for _ in range(repeats):
                statistics.score(layout, counts, sums, bounded=bounded)
            seconds[bounded].append((time.process_time() - started) / repeats)
    plain, bounded_ = float(np.median(seconds[False])), float(np.median(seconds[True]))
    print(
        f"statistics.score, one window of {window} rows x {FEATURES} features, median of "
        f"{rounds} interleaved rounds: without the bound {plain * 1e6:.0f} us, with it "
        f"{bounded_ * 1e6:.0f} us ({bounded_ / plain:.3f}x)"
    )
    return 0


def support_cost(window: int, rounds: int = 30, repeats: int = 100) -> int:
    """CPU per window of encode + count + score of whole-number features, with and without
    their support (the unseen count), interleaved in one process.

    FEATURES features of 17 whole-number values (digits-like pixel counts, so each keeps its
    support); the same profile with the supports removed is what the monitor did before.
    """
    rng = np.random.default_rng(2)
    reference = values(rng, (2_000, FEATURES), whole_numbers=True)
    profile = profiles.build({f"f{i}": list(reference[:, i]) for i in range(FEATURES)})
    plain = profiles.Profile(
        tuple(
            dataclasses.replace(f, support=(), support_counts=())
            if isinstance(f, profiles.NumericFeature)
            else f
            for f in profile.features
        ),
        profile.rows,
    )
    rows = values(rng, (window, FEATURES), whole_numbers=True)
    rows[:, 0] += 0.3  # one feature off its support
    no_categories = np.empty((window, 0), dtype=np.intp)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    built = {True: layouts.build(profile, profile.names), False: layouts.build(plain, plain.names)}
    for _ in range(rounds):
        for with_support, layout in built.items():
            started = time.process_time()
            for _ in range(repeats):
                counter = windows.TumblingWindow(layout, window)
                slots = windows.encode(layout, rows, no_categories)
                ((counts, sums),) = counter.add_rows(slots, rows)
                statistics.score(layout, counts, sums, bounded=True)
            seconds[with_support].append((time.process_time() - started) / repeats)
    before, after = float(np.median(seconds[False])), float(np.median(seconds[True]))
    print(
        f"encode + count + score, one window of {window} rows x {FEATURES} whole-number "
        f"features, median of {rounds} interleaved rounds: without the support {before * 1e6:.0f}"
        f" us, with it {after * 1e6:.0f} us ({after / before:.3f}x)"
    )
    return 0


def missing_cost(window: int, share: float = 0.05, rounds: int = 15, repeats: int = 20) -> int:
    """CPU per window of the monitor's whole path (encode, count, score, alarms) with
    KolmogorovSmirnov and with PSI at a declared 1 %, on rows with missing values.

    A share of every feature's values missing, in the 20,000-row reference and in every
    window, so that each window looks up (or sums) a p-value of the missing-share test
    for every feature under KS, and none under PSI; interleaved in one process, the ratio
    KS / PSI is the figure to compare between revisions.
    """
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, (20_000, FEATURES))
    reference[rng.random(reference.shape) < share] = np.nan
    profile = profiles.Profile(
        tuple(profiles.build_numeric(f"f{i}", reference[:, i]) for i in range(FEATURES)),
        reference.shape[0],
    )
    rows = rng.normal(0, 1, (window, FEATURES))
    rows[rng.random(rows.shape) < share] = np.nan
    batch = payloads.Batch("request", rows, np.empty((window, 0), dtype=np.intp))
    monitors = {
        name: monitoring.Monitor(
            config.MonitorConfig(profile="-", window=window, statistic=name, false_alarm_rate=0.01),
            profile,
        )
        for name in ("PSI", "KolmogorovSmirnov")
    }
    seconds: dict[str, list[float]] = {name: [] for name in monitors}
    for _ in range(rounds):
        for name, monitor in monitors.items():
            started = time.process_time()
            for _ in range(repeats):
                monitor.add([batch])
            seconds[name].append((time.process_time() - started) / repeats)
    psi, ks = (float(np.median(seconds[name])) for name in monitors)
    print(
        f"monitor.add of one window of {window} rows x {FEATURES} features, {share:.0%} of "
        f"values missing, falseAlarmRate 0.01, median of {rounds} interleaved rounds: PSI "
        f"{psi * 1e6:.0f} us, KolmogorovSmirnov {ks * 1e6:.0f} us ({ks / psi:.3f}x)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options; run the benchmark or, with --loadgen, the load generator."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the batch phase")
    parser.add_argument("--events", type=int, default=200_000, help="single-row events")
    parser.add_argument("--window", type=int, default=1000, help="monitor window (rows)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--depth", type=int, default=32, help="pipelined requests per connection")
    parser.add_argument(
        "--false-alarm-rate",
        type=float,
        help="the monitor's falseAlarmRate: calibrated thresholds, bounded Wasserstein",
    )
    parser.add_argument(
        "--statistic",
        default="PSI",
        help="the monitor's alarm statistic (KolmogorovSmirnov and Wasserstein with a rate also "
        "run the missing-share test)",
    )
    parser.add_argument(
        "--whole-numbers",
        action="store_true",
        help="features of whole-number pixel counts, each with a discrete support",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument(
        "--false-alarms",
        action="store_true",
        help="instead: measure false-alarm rates on unshifted traffic (no HTTP)",
    )
    parser.add_argument(
        "--scoring",
        action="store_true",
        help="instead: CPU per window of scoring with and without the Wasserstein bound",
    )
    parser.add_argument(
        "--support",
        action="store_true",
        help="instead: CPU per window of whole-number features with and without their support",
    )
    parser.add_argument(
        "--missing",
        action="store_true",
        help="instead: CPU per window of the monitor with KS and with PSI on rows with missing "
        "values (the missing-share test)",
    )
    parser.add_argument("--loadgen", choices=["single", "batch"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.loadgen:
        return loadgen_main(arguments)
    if arguments.false_alarms:
        return false_alarms((100, 250, 500, 1000), 3000)
    if arguments.missing:
        return missing_cost(arguments.window)
    if arguments.scoring:
        return scoring(arguments.window)
    if arguments.support:
        return support_cost(arguments.window)
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
