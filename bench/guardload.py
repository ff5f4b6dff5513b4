"""The guard benchmark's load: vegeta (Go, another process) against one URL.

Flat out, 32 requests are always in flight on 32 keep-alive connections; at a rate,
each request is timed from when it was due (no coordinated omission). GOMAXPROCS=1
keeps vegeta on one core. Every request sends ``bench_guard.BODY``, or, from a targets
file ``write_targets`` prepared, one of many bodies in turn (vegeta cycles through them).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import os
import pathlib
import subprocess
from collections.abc import Sequence

from bench import bench_guard, loadgenerator

CONNECTIONS = 32


@dataclasses.dataclass(frozen=True)
class Attack:
    """What one attack measured."""

    ok: int  # answers of 200
    latencies: list[float]  # seconds, every answered request's, sorted
    other: dict[str, int]  # everything that was not 200, by kind
    sample: bytes = b""  # the body of the first answer of 200

    def percentile(self, fraction: float) -> float:
        """The latency below which ``fraction`` of the answers came (nan without answers)."""
        ordered = self.latencies
        return (
            ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
            if ordered
            else float("nan")
        )


def target_lines(url: str, headers: dict[str, str], bodies: Sequence[bytes]) -> list[str]:
    """Lines of a vegeta targets file (its JSON format, one request a line) POSTing each of
    ``bodies`` to ``url`` (encoded once; ``write_targets`` writes them from any place)."""
    header = {"Content-Type": ["application/json"], **{k: [v] for k, v in headers.items()}}
    return [
        json.dumps(
            {
                "method": "POST",
                "url": url,
                "header": header,
                "body": base64.b64encode(body).decode(),
            }
        )
        + "\n"
        for body in bodies
    ]


def write_targets(lines: list[str], first: int, path: pathlib.Path) -> pathlib.Path:
    """The targets file of ``lines`` starting at ``first`` (then round): vegeta starts each
    attack at the file's first request, so an attack can go on where the last one ended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first %= len(lines)
    with path.open("w") as out:
        out.writelines(lines[first:])
        out.writelines(lines[:first])
    return path


def start(
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    rate: float | None,
    directory: pathlib.Path,
    prepared: pathlib.Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start POSTing to ``url`` for ``seconds``, flat out (``rate`` None) or at ``rate``/s;
    ``bench_guard.BODY`` each time, or the requests of ``prepared`` (``write_targets``) in
    turn; ``directory`` holds this attack's files (one directory per attack)."""
    directory.mkdir(parents=True, exist_ok=True)
    if prepared is None:
        body = directory / "body.json"
        body.write_bytes(bench_guard.BODY)
        lines = [f"POST {url}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        targets = directory / "targets.txt"
        targets.write_text("\n".join([*lines, f"@{body}", ""]))
        target_format = "http"
    else:
        targets, target_format = prepared, "json"
    command = [
        str(loadgenerator.binary()),
        "attack",
        f"-targets={targets}",
        f"-format={target_format}",
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
    ok, latencies, other, sample = 0, [], collections.Counter[str](), b""
    for line in decoded.splitlines():
        result = json.loads(line)
        if result["code"] == 200:
            ok += 1
            if not sample:
                sample = base64.b64decode(result.get("body") or "")
        else:
            other[
                result.get("error")
                or f"HTTP {result['code']}: {base64.b64decode(result.get('body') or '')[:80]!r}"
            ] += 1
        if result["code"]:
            latencies.append(result["latency"] / 1e9)
    return Attack(ok, sorted(latencies), dict(other), sample)


def attack(
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    rate: float | None,
    directory: pathlib.Path,
    prepared: pathlib.Path | None = None,
) -> Attack:
    """``start``, then ``finish``: one attack, waited for."""
    process = start(
        url, headers, seconds=seconds, rate=rate, directory=directory, prepared=prepared
    )
    return finish(process, directory)
