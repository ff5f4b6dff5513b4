"""Admission benchmarks: (a) the server alone over HTTPS, (b) pod creates through kube-apiserver.

(a) ``server``: the admission server in its own process pinned to CPU 0, the vegeta load
generator (Go, keep-alive HTTPS, 8 connections) pinned to CPU 1. Realistic Pod and
Deployment reviews (several KB, three containers each) in a namespace governed by real
policies (a namespaced Enforce policy with image signers, model and runtime
requirements, and a cluster baseline), warm caches (the real ImageVerifier's cache holds
the verdicts). Prints reviews/s at saturation (and per CPU-second of the server) and
p50/p99 at half that rate, for modelshield on uvloop (what ``modelshield webhook`` runs)
and on the standard loop, next to a minimal aiohttp HTTPS webhook (parse the review,
allow it) on each loop, measured in the same run. Goal (issue 6): >= 5,000 reviews/s on
one core; p99 <= 2 ms at half that load.

(b) ``apiserver``: a local control plane (e2e harness), a real registry and cosign, the
webhook registered by URL. Sequential pod creates: without the webhook, with a minimal
one, with modelshield's, in interleaved rounds of the same run. Goal: <= 1.5 ms added
at p50, <= 2 ms at p99.

    python -m bench.bench_admission [server|apiserver|all] [--seconds 10] [--creates 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import pathlib
import tempfile
from typing import Any

from aiohttp import web

from bench import apiserver_creates, loadgenerator
from modelshield.supplychain.images import imageverifier
from modelshield_webhooks import certificates, contexts, eventloops, server
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support import pki

CONNECTIONS = 8
SERVER_CPU, CLIENT_CPU = 0, 1


def _pin(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


# --- (a) the server alone -------------------------------------------------------------


def _cluster_baseline() -> dict[str, Any]:
    baseline = scenarios.policy("", name="platform-baseline")
    baseline["kind"] = "ClusterModelSecurityPolicy"
    baseline["spec"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": scenarios.ENFORCED}},
        "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        "runtime": {},
    }
    return baseline


def _warm_context() -> contexts.AdmissionContext:
    state = scenarios.synced_state(
        [
            scenarios.policy(scenarios.ENFORCED),
            scenarios.policy(scenarios.AUDITED, "Audit"),
            _cluster_baseline(),
        ],
        [scenarios.model_artifact(scenarios.ENFORCED), scenarios.model_artifact(scenarios.AUDITED)],
    )
    verifier = imageverifier.ImageVerifier()
    images = state.policy_set.namespaced[scenarios.ENFORCED][0].images
    assert images is not None
    key = images.key
    verifier.cache.store(scenarios.SIGNED, key, verdicts.image_facts(scenarios.SIGNED), pinned=True)
    assert verifier.cached(scenarios.SIGNED, key) is not None
    # The scenarios' ModelArtifacts were checked shortly before scenarios.NOW: judged at
    # that moment, as the tests judge them (on today's clock their verdicts are stale).
    return contexts.AdmissionContext(state=state, verifier=verifier, clock=lambda: scenarios.NOW)


async def _minimal_review(request: web.Request) -> web.Response:
    review = json.loads(await request.read())
    answer = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    }
    return web.json_response(answer)


def _serve(kind: str, loop: str, cert: str, key: str, ports: Any) -> None:
    """Child process: the server (or the minimal baseline) on CPU 0 until terminated."""
    _pin(SERVER_CPU)

    async def serve() -> None:
        certificate = certificates.ReloadingCertificate(pathlib.Path(cert), pathlib.Path(key))
        if kind == "modelshield":
            running = await server.start(_warm_context(), certificate, host="127.0.0.1", port=0)
            port = running.port
        else:
            app = web.Application()
            app.router.add_post("/validate", _minimal_review)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.context)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ports.put(port)
        await asyncio.Event().wait()

    eventloops.run(serve(), loop)


def realistic_reviews() -> list[bytes]:
    """Pod and Deployment CREATE reviews, three containers each, governed and compliant."""
    bodies = []
    for label in ("Pod", "Deployment"):
        info = scenarios.BY_LABEL[label]
        obj = scenarios.workload(info, [scenarios.SIGNED] * 3)
        bodies.append(json.dumps(scenarios.review(info, "CREATE", obj)).encode())
    return bodies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: (server, event loop): the production server on uvloop first, each with its baseline.
SERVERS = (
    ("minimal", eventloops.UVLOOP),
    ("modelshield", eventloops.UVLOOP),
    ("minimal", eventloops.STANDARD),
    ("modelshield", eventloops.STANDARD),
)


def _measure(
    kind: str, loop: str, seconds: float, pair: tuple[str, str], work: pathlib.Path
) -> tuple[float, float, float]:
    """Saturation, then half that rate: (reviews per CPU-second, p50, p99 at half load)."""
    spawn = multiprocessing.get_context("spawn")
    ports = spawn.Queue()
    process = spawn.Process(target=_serve, args=(kind, loop, *pair, ports), daemon=True)
    process.start()
    try:
        url = f"https://127.0.0.1:{ports.get(timeout=30)}/validate"
        targets = [loadgenerator.Target(url, body) for body in realistic_reviews()]

        def attack(duration: float, rate: float | None) -> loadgenerator.Results:
            results = loadgenerator.attack(
                targets,
                ca_file=work / "ca.pem",
                seconds=duration,
                connections=CONNECTIONS,
                rate=rate,
                directory=work,
            )
            # Every answer must be an allow: a denial or an error would pass for speed.
            if results.failures or not results.allowed:
                raise RuntimeError(f"{kind} answered other than allow: {results.failures}")
            return results

        attack(1.0, None)  # warm-up: connections, caches, the interpreter's own
        assert process.pid is not None
        cpu_before = _cpu_seconds(process.pid)
        saturated = attack(seconds, None)
        cpu = _cpu_seconds(process.pid) - cpu_before
        # Reviews per CPU-second of the server: its capacity on one whole core, which
        # holds even when other processes share the machine.
        capacity = len(saturated.latencies) / cpu if cpu else float("nan")
        half = attack(seconds, saturated.throughput / 2)
        p50, p99 = half.percentile(0.5), half.percentile(0.99)
        print(
            f"    {kind:11s} on {loop:7s} {saturated.throughput:6.0f} reviews/s at saturation "
            f"using {cpu / seconds:4.0%} of a core = {capacity:5.0f} per CPU-second; "
            f"at {half.throughput:4.0f}/s: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms",
            flush=True,
        )
        return capacity, p50, p99
    finally:
        process.terminate()
        process.join(10)


def bench_server(seconds: float) -> None:
    """Part (a)."""
    _pin(CLIENT_CPU)  # vegeta inherits it
    authority = pki.Authority.create()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-admission-"))
    cert, key = pki.write_serving_pair(authority, work, "bench")
    (work / "ca.pem").write_bytes(authority.pem)
    print(
        f"(a) server alone: vegeta, {CONNECTIONS} keep-alive HTTPS connections, {seconds:g} s runs"
    )
    print(f"    load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    sizes = [len(r) for r in realistic_reviews()]
    print(f"    reviews: Pod {sizes[0]} B, Deployment {sizes[1]} B, 3 containers each, governed")
    results = {
        (kind, loop): _measure(kind, loop, seconds, (str(cert), str(key)), work)
        for kind, loop in SERVERS
    }
    for loop in (eventloops.UVLOOP, eventloops.STANDARD):
        ours, base = results["modelshield", loop], results["minimal", loop]
        print(
            f"    on {loop}: modelshield/minimal reviews per CPU-second {ours[0] / base[0]:.2f}, "
            f"p99 at half load {ours[2] / base[2]:.2f}"
        )
    uvloop = results["modelshield", eventloops.UVLOOP]
    standard = results["modelshield", eventloops.STANDARD]
    print(f"    modelshield uvloop/asyncio reviews per CPU-second {uvloop[0] / standard[0]:.2f}")


def main() -> None:
    """Run the chosen benchmarks."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="?", default="all", choices=["server", "apiserver", "all"])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each load run in (a)"
    )
    parser.add_argument("--creates", type=int, default=4000, help="pod creates per phase in (b)")
    arguments = parser.parse_args()
    if arguments.which in ("server", "all"):
        bench_server(arguments.seconds)
    if arguments.which in ("apiserver", "all"):
        apiserver_creates.bench_apiserver(arguments.creates)


if __name__ == "__main__":
    main()
