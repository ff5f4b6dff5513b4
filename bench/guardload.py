"""The guard benchmark's load: vegeta (Go, another process) against one URL.

Flat out, 32 requests are always in flight on 32 keep-alive connections; at a rate,
each request is timed from when it was due (no coordinated omission). GOMAXPROCS=1
keeps vegeta on one core.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import os
import pathlib
import subprocess

from bench import bench_guard, loadgenerator

CONNECTIONS = 32


@dataclasses.dataclass(frozen=True)
class Attack:
    """What one attack measured."""

    ok: int  # answers of 200
    latencies: list[float]  # seconds, every answered request's, sorted
    other: dict[str, int]  # everything that was not 200, by kind

    def percentile(self, fraction: float) -> float:
        """The latency below which ``fraction`` of the answers came (nan without answers)."""
        ordered = self.latencies
        return (
            ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
            if ordered
            else float("nan")
        )


def start(
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    rate: float | None,
    directory: pathlib.Path,
) -> subprocess.Popen[bytes]:
    """Start POSTing ``bench_guard.BODY`` to ``url`` for ``seconds``, flat out (``rate`` None)
    or at ``rate``/s; ``directory`` holds this attack's files (one directory per attack)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = directory / "body.json"
    body.write_bytes(bench_guard.BODY)
    lines = [f"POST {url}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    targets = directory / "targets.txt"
    targets.write_text("\n".join([*lines, f"@{body}", ""]))
    command = [
        str(loadgenerator.binary()),
        "attack",
        f"-targets={targets}",
        f"-duration={seconds}s",
        "-http2=false",
        "-keepalive=true",
        f"-connections={CONNECTIONS}",
        f"-max-connections={CONNECTIONS}",
        "-timeout=10s",
        f"-output={directory / 'results.bin'}",
    ]
    command += (
        ["-rate=0", f"-workers={CONNECTIONS}", f"-max-workers={CONNECTIONS}"]
        if rate is None
        else [f"-rate={round(rate)}/1s"]
    )
    environment = dict(os.environ, GOMAXPROCS="1")
    return subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)


def finish(process: subprocess.Popen[bytes], directory: pathlib.Path) -> Attack:
    """Wait for a started attack; what it measured."""
    if process.wait() != 0:
        raise RuntimeError(f"vegeta exited with {process.returncode}")
    decoded = subprocess.run(
        [str(loadgenerator.binary()), "encode", "--to=json", str(directory / "results.bin")],
        capture_output=True,
        check=True,
    ).stdout
    ok, latencies, other = 0, [], collections.Counter[str]()
    for line in decoded.splitlines():
        result = json.loads(line)
        if result["code"] == 200:
            ok += 1
        else:
            other[
                result.get("error")
                or f"HTTP {result['code']}: {base64.b64decode(result.get('body') or '')[:80]!r}"
            ] += 1
        if result["code"]:
            latencies.append(result["latency"] / 1e9)
    return Attack(ok, sorted(latencies), dict(other))


def attack(
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    rate: float | None,
    directory: pathlib.Path,
) -> Attack:
    """``start``, then ``finish``: one attack, waited for."""
    process = start(url, headers, seconds=seconds, rate=rate, directory=directory)
    return finish(process, directory)
