"""vegeta, the HTTP load generator the admission benchmark drives, and what its results say.

vegeta (Go, built by e2e/tools/build-tools.sh) holds keep-alive HTTPS connections and
sends at a constant rate: each request is timed from the moment it was due, so a slow
answer that delays the next one counts against the server (no coordinated omission).
A Go client costs a fraction of what the server does per request, so the figures are
the server's, not the load generator's.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import subprocess

from e2e import toolcache


@dataclasses.dataclass(frozen=True)
class Target:
    """One request: a POST of a JSON body."""

    url: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class Results:
    """What one attack measured."""

    seconds: float
    latencies: list[float]  # seconds, one per answered request
    allowed: int  # answers of 200 whose AdmissionReview allows
    failures: dict[str, int]  # everything else, by status code or error

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return len(self.latencies) / self.seconds

    def percentile(self, fraction: float) -> float:
        """The latency below which ``fraction`` of the requests were answered."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def binary() -> pathlib.Path:
    """The cached vegeta, or an error saying how to build it."""
    path = toolcache.tool_path("MODELSHIELD_VEGETA")
    if path is None:
        raise toolcache.MissingToolsError(
            f"vegeta is not built; run {toolcache.BUILD_SCRIPT} (make tools) first"
        )
    return path


def _targets_file(targets: list[Target], directory: pathlib.Path) -> pathlib.Path:
    """vegeta's http target format, bodies in files of their own."""
    entries = []
    for index, target in enumerate(targets):
        body = directory / f"body-{index}.json"
        body.write_bytes(target.body)
        entries.append(f"POST {target.url}\nContent-Type: application/json\n@{body}\n")
    path = directory / "targets.txt"
    path.write_text("\n".join(entries))
    return path


def _allows(body: bytes) -> bool:
    try:
        return json.loads(body)["response"]["allowed"] is True
    except (ValueError, KeyError, TypeError):
        return False


def attack(
    targets: list[Target],
    *,
    ca_file: pathlib.Path,
    seconds: float,
    connections: int,
    rate: float | None,
    directory: pathlib.Path,
) -> Results:
    """Send ``targets`` round-robin for ``seconds``, at ``rate`` per second or flat out.

    Flat out (``rate`` None) keeps exactly ``connections`` requests in flight; at a rate,
    vegeta starts as many workers as the schedule needs, sharing ``connections``
    keep-alive connections, and a request waiting for a connection is late, not lost.
    The caller's CPU affinity is inherited; GOMAXPROCS=1 keeps vegeta on one core.
    """
    command = [
        str(binary()),
        "attack",
        f"-targets={_targets_file(targets, directory)}",
        f"-duration={seconds}s",
        f"-root-certs={ca_file}",
        "-http2=false",  # the API server talks HTTP/1.1 to an aiohttp webhook too
        "-keepalive=true",
        f"-connections={connections}",
        f"-max-connections={connections}",
        "-timeout=10s",
    ]
    if rate is None:
        command += ["-rate=0", f"-workers={connections}", f"-max-workers={connections}"]
    else:
        command += [f"-rate={round(rate)}/1s", f"-workers={connections}"]
    environment = dict(os.environ, GOMAXPROCS="1")
    encoded = subprocess.run(command, capture_output=True, env=environment, check=True).stdout
    lines = subprocess.run(
        [str(binary()), "encode", "--to=json"], input=encoded, capture_output=True, check=True
    ).stdout.splitlines()
    latencies: list[float] = []
    allowed = 0
    failures: dict[str, int] = {}
    for line in lines:
        result = json.loads(line)
        if result["code"] == 200 and _allows(base64.b64decode(result.get("body") or "")):
            allowed += 1
        else:
            reason = result.get("error") or f"HTTP {result['code']}"
            failures[reason] = failures.get(reason, 0) + 1
        if result["code"]:
            latencies.append(result["latency"] / 1e9)
    return Results(seconds=seconds, latencies=latencies, allowed=allowed, failures=failures)
