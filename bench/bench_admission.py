"""Admission benchmarks: (a) the server alone over HTTPS, (b) pod creates through kube-apiserver.

(a) ``server``: the admission server in its own process pinned to CPU 0, a lean
keep-alive HTTPS load generator pinned to CPU 1. Realistic Pod and Deployment reviews
(several KB, three containers each) in a namespace governed by real policies (a
namespaced Enforce policy with image signers, model and runtime requirements, and a
cluster baseline), warm caches (the real ImageVerifier's cache holds the verdicts).
Prints reviews/s at saturation and p50/p99 at half that rate, next to the same figures
for a minimal aiohttp HTTPS webhook (parse the review, allow it) measured in the same
run. Goal (issue 6): >= 5,000 reviews/s on one core; p99 <= 2 ms at half that load.

(b) ``apiserver``: a local control plane (e2e harness), a real registry and cosign, the
webhook registered by URL. Sequential pod creates: without the webhook, with it, and
without it again (to see drift), in the same run. Goal: <= 1.5 ms added at p50,
<= 2 ms at p99.

    python -m bench.bench_admission [server|apiserver|all] [--seconds 10] [--creates 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import pathlib
import ssl
import tempfile
from typing import Any

from aiohttp import web

from bench import apiserver_creates
from modelshield.supplychain.images import verifying
from modelshield_webhooks import certificates, contexts, server
from tests.webhooks import pki, scenarios, verdicts

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
    verifier = verifying.ImageVerifier()
    images = state.policy_set.namespaced[scenarios.ENFORCED][0].images
    assert images is not None
    key = images.key
    verifier.cache.store(scenarios.SIGNED, key, verdicts.image_facts(scenarios.SIGNED), pinned=True)
    assert verifier.cached(scenarios.SIGNED, key) is not None
    return contexts.AdmissionContext(state=state, verifier=verifier)


async def _minimal_review(request: web.Request) -> web.Response:
    review = json.loads(await request.read())
    answer = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    }
    return web.json_response(answer)


def _serve(kind: str, cert: str, key: str, ports: Any) -> None:
    """Child process: the server (or the minimal baseline) on CPU 0 until terminated."""
    _pin(SERVER_CPU)

    async def main() -> None:
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

    asyncio.run(main())


def realistic_reviews() -> list[bytes]:
    """Pod and Deployment CREATE reviews, three containers each, governed and compliant."""
    bodies = []
    for label in ("Pod", "Deployment"):
        info = scenarios.BY_LABEL[label]
        obj = scenarios.workload(info, [scenarios.SIGNED] * 3)
        body = json.dumps(scenarios.review(info, "CREATE", obj)).encode()
        bodies.append(
            b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return bodies


async def _connection(
    port: int,
    context: ssl.SSLContext,
    requests: list[bytes],
    stop_at: float,
    interval: float | None,
    latencies: list[float],
    answers: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    loop = asyncio.get_running_loop()
    scheduled = loop.time()
    index = 0
    while loop.time() < stop_at:
        if interval is not None:
            scheduled += interval
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        started = loop.time() if interval is None else scheduled
        writer.write(requests[index % len(requests)])
        index += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        # Latency from when the request was due: queueing counts (no coordinated omission).
        latencies.append(loop.time() - started)
        allowed = b'"allowed":true' in body or b'"allowed": true' in body
        answers["allowed" if allowed else "other"] += 1
    writer.close()


async def _load(
    port: int, ca: bytes, seconds: float, rate: float | None
) -> tuple[float, list[float], dict[str, int]]:
    context = ssl.create_default_context(cadata=ca.decode())
    requests = realistic_reviews()
    latencies: list[float] = []
    answers = {"allowed": 0, "other": 0}
    loop = asyncio.get_running_loop()
    # The load generator's own collections would show up as server latency.
    gc.collect()
    gc.freeze()
    gc.disable()
    started = loop.time()
    interval = CONNECTIONS / rate if rate else None
    try:
        await asyncio.gather(
            *(
                _connection(
                    port, context, requests, started + seconds, interval, latencies, answers
                )
                for _ in range(CONNECTIONS)
            )
        )
    finally:
        gc.enable()
    return len(latencies) / (loop.time() - started), latencies, answers


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_server(seconds: float) -> None:
    """Part (a)."""
    _pin(CLIENT_CPU)
    authority = pki.Authority.create()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="bench-admission-"))
    cert, key = pki.write_serving_pair(authority, directory, "bench")
    spawn = multiprocessing.get_context("spawn")
    print(f"(a) server alone: {CONNECTIONS} keep-alive HTTPS connections, {seconds:g} s per run")
    print(f"    load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    sizes = [len(r) for r in realistic_reviews()]
    print(f"    reviews: Pod {sizes[0]} B, Deployment {sizes[1]} B, 3 containers each, governed")
    results: dict[str, tuple[float, float, float]] = {}
    for kind in ("minimal", "modelshield"):
        ports = spawn.Queue()
        process = spawn.Process(target=_serve, args=(kind, str(cert), str(key), ports), daemon=True)
        process.start()
        try:
            port = ports.get(timeout=30)
            asyncio.run(_load(port, authority.pem, 1.0, None))  # warm-up
            assert process.pid is not None
            cpu_before = _cpu_seconds(process.pid)
            throughput, latencies, answers = asyncio.run(_load(port, authority.pem, seconds, None))
            cpu = _cpu_seconds(process.pid) - cpu_before
            assert answers["other"] == 0, answers
            # Reviews per CPU-second of the server: its capacity on one whole core, which
            # holds even when other processes share the machine.
            capacity = len(latencies) / cpu if cpu else float("nan")
            _, latencies, _ = asyncio.run(_load(port, authority.pem, seconds, throughput / 2))
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
            results[kind] = (capacity, p50, p99)
            print(
                f"    {kind:12s} {throughput:7.0f} reviews/s at saturation using {cpu / seconds:.0%} "
                f"of a core = {capacity:7.0f} reviews per CPU-second; at {throughput / 2:.0f}/s: "
                f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
            )
        finally:
            process.terminate()
            process.join(10)
    ours, base = results["modelshield"], results["minimal"]
    print(
        f"    ratio modelshield/minimal: reviews per CPU-second {ours[0] / base[0]:.2f}, "
        f"p99 at half load {ours[2] / base[2]:.2f}"
    )


def main() -> None:
    """Run the chosen benchmarks."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="?", default="all", choices=["server", "apiserver", "all"])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each load run in (a)"
    )
    parser.add_argument("--creates", type=int, default=400, help="pod creates per phase in (b)")
    arguments = parser.parse_args()
    if arguments.which in ("server", "all"):
        bench_server(arguments.seconds)
    if arguments.which in ("apiserver", "all"):
        apiserver_creates.bench_apiserver(arguments.creates)


if __name__ == "__main__":
    main()
