"""Benchmark (b) of bench_admission: sequential pod creates through a real kube-apiserver.

Runs a local control plane (the e2e harness; etcd on tmpfs when there is one), a real
registry and cosign; measures pod creates in four namespaces, one per phase: no webhook,
a minimal webhook (parse the review, allow it: the calibration), modelshield's validating
webhook, and both of its webhooks. The webhooks select namespaces by a phase label, so
the phases alternate create by create in one run. Run it through
``python -m bench.bench_admission apiserver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import pathlib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import yaml
from aiohttp import web

from modelshield_webhooks import configurations
from tests.support import admissionscenarios as scenarios
from tests.support import pki


def _serve_minimal(cert: str, key: str, port: int, answered: Any) -> None:
    """Child process: the calibration webhook (parse the review, allow it) over HTTPS."""

    async def review(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        answered.value += 1
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": body["request"]["uid"], "allowed": True},
        }
        return web.json_response(answer)

    async def main() -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_post("/validate", review)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=120)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        await asyncio.Event().wait()

    asyncio.run(main())


#: Phase name → the value of PHASE_LABEL on its namespace, which the webhooks select.
PHASES = {
    "without webhooks": "none",
    "minimal webhook": "minimal",
    "validating only": "validating",
    "both webhooks": "both",
}
PHASE_LABEL = "bench.modelshield.dev/phase"
DELETE_EVERY = 1000


def _select_phases(webhook: dict[str, Any], phases: list[str]) -> None:
    """Narrow a webhook's namespaceSelector (kept as shipped) to the phases' namespaces."""
    selector = webhook.setdefault("namespaceSelector", {})
    expressions = selector.setdefault("matchExpressions", [])
    expressions.append({"key": PHASE_LABEL, "operator": "In", "values": phases})


def _check_phases(
    client: ApiClient, namespaces: dict[str, str], signed: str, unsigned: str, answered: Any
) -> None:
    """Each phase calls what it says: modelshield denies an unsigned image where it is
    registered, nothing does elsewhere, and the minimal webhook answers its phase only."""
    for _ in range(100):  # the API server's webhook informer catches up
        status, _ = client.create_pod(
            namespaces["both webhooks"], _pod(f"probe-{time.monotonic_ns()}", unsigned)
        )
        if status != 201:
            break
        time.sleep(0.1)
    time.sleep(1)
    for phase, namespace in namespaces.items():
        before = answered.value
        status, body = client.create_pod(namespace, _pod(f"check-{phase[:4]}", unsigned))
        denies = phase in ("validating only", "both webhooks")
        if (status != 201) != denies:
            raise RuntimeError(f"{phase}: an unsigned pod answered {status}: {body[:300]!r}")
        if (answered.value > before) != (phase == "minimal webhook"):
            raise RuntimeError(f"{phase}: the minimal webhook was called {answered.value - before}")
        _creates(client, namespace, f"warm-{phase[:4]}", signed, 20)


def _wait_ready(port: int, ca_file: pathlib.Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    for _ in range(300):
        with contextlib.suppress(OSError):
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the webhook did not become ready")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _pod(name: str, image: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": dict(scenarios.LABELS)},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": image,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1000,
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                        },
                        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ]
            },
        }
    ).encode()


class ApiClient:
    """One keep-alive HTTPS connection to the API server, as a lean client would hold."""

    def __init__(self, url: str, token: str, ca_file: pathlib.Path) -> None:
        host, port = url.removeprefix("https://").split(":")
        context = ssl.create_default_context(cafile=str(ca_file))
        self.connection = http.client.HTTPSConnection(host, int(port), context=context)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def create_pod(self, namespace: str, body: bytes) -> tuple[int, bytes]:
        self.connection.request("POST", f"/api/v1/namespaces/{namespace}/pods", body, self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()


def _creates(client: ApiClient, namespace: str, prefix: str, image: str, count: int) -> list[float]:
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        status, body = client.create_pod(namespace, _pod(f"{prefix}-{index}", image))
        latencies.append(time.perf_counter() - started)
        if status != 201:
            raise RuntimeError(f"pod create answered {status}: {body[:500]!r}")
    return latencies


@contextlib.contextmanager
def _webhook_process(arguments: list[str], log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(arguments, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def bench_apiserver(count: int) -> None:
    """Part (b)."""
    from e2e.cluster import LocalControlPlane
    from e2e.toolcache import ControlPlaneBinaries
    from modelshield.supplychain.images import registries
    from tests.support import localtools

    binaries = ControlPlaneBinaries.locate()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-admission-apiserver-"))
    registry = localtools.LocalRegistry(
        localtools.require_tool("MODELSHIELD_REGISTRY"), work
    ).start()
    cosign = localtools.Cosign(localtools.require_tool("MODELSHIELD_COSIGN"), work / "cosign")
    signing_key, public_key = cosign.generate_key_pair("release")

    async def push() -> str:
        client = registries.RegistryClient(registry.options())
        try:
            return await localtools.push_image(client, registry.host, "ml/server", "v1", "bench")
        finally:
            await client.close()

    image = f"{registry.host}/ml/server@{asyncio.run(push())}"
    cosign.sign(image, signing_key)

    async def push_unsigned() -> str:
        client = registries.RegistryClient(registry.options())
        try:
            return await localtools.push_image(client, registry.host, "ml/other", "v1", "other")
        finally:
            await client.close()

    unsigned_image = f"{registry.host}/ml/other@{asyncio.run(push_unsigned())}"
    # etcd on tmpfs when there is one: its fsyncs on a shared disk swing the p99 of a
    # create by several ms, more than the webhook adds, in every phase alike.
    shm = pathlib.Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory there
    if shm.is_dir() and os.access(shm, os.W_OK):
        control_plane = LocalControlPlane(
            binaries, work_dir=pathlib.Path(tempfile.mkdtemp(prefix="bench-etcd-", dir=shm))
        )
    else:
        control_plane = LocalControlPlane(binaries)
    print(f"    control plane (etcd data) in {control_plane.work_dir}")
    control_plane.start()
    kubectl = [str(binaries.kubectl), f"--kubeconfig={control_plane.kubeconfig_path}"]

    def run(*arguments: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [*kubectl, *arguments], input=stdin, capture_output=True, text=True, check=True
        ).stdout

    try:
        root = pathlib.Path(__file__).resolve().parent.parent
        run(
            "apply",
            "--server-side",
            *(f"--filename={f}" for f in sorted((root / "crds").glob("*.yaml"))),
        )
        run("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        ca_file = control_plane.certificates_dir / "ca.crt"
        client = ApiClient(control_plane.api_server_url, control_plane.admin_token, ca_file)
        # One namespace per phase, each governed by the same policy; the webhooks select
        # namespaces by a phase label, so phases alternate create by create and whatever
        # the shared machine does meanwhile hits every phase alike.
        namespaces = {phase: f"bench-{slug}" for phase, slug in PHASES.items()}
        for phase, namespace in namespaces.items():
            run("create", "namespace", namespace)
            run("label", "namespace", namespace, f"{PHASE_LABEL}={PHASES[phase]}")
            policy = scenarios.policy(namespace)
            policy["spec"]["images"] = {
                "allowedRegistries": [f"{registry.host}/"],
                "signers": [{"name": "release", "publicKey": public_key}],
            }
            del policy["spec"]["models"]
            run("apply", "-f", "-", stdin=json.dumps(policy))
            for _ in range(100):
                try:
                    _creates(client, namespace, f"sa-probe-{time.monotonic_ns()}", image, 1)
                    break
                except RuntimeError:  # the namespace's default ServiceAccount is not there yet
                    time.sleep(0.1)

        authority = pki.Authority.create()
        cert, key = pki.write_serving_pair(authority, work, "bench-webhook")
        (work / "webhook-ca.crt").write_bytes(authority.pem)
        port = localtools.free_port()
        modelshield = [sys.executable, "-m", "modelshield.cli.main", "webhook"]
        webhook = [
            *modelshield,
            f"--cert={cert}",
            f"--key={key}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--kubeconfig={control_plane.kubeconfig_path}",
            f"--insecure-registry={registry.host}",
            "--log-level=warning",
            "--shutdown-delay=0",
        ]
        configuration = subprocess.run(
            [
                *modelshield,
                "configuration",
                f"--url=https://127.0.0.1:{port}",
                f"--ca-bundle={work / 'webhook-ca.crt'}",
                "--name=bench",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        mutating, validating = (yaml.safe_load(d) for d in configuration.split("\n---\n"))
        _select_phases(validating["webhooks"][0], ["validating", "both"])
        _select_phases(mutating["webhooks"][0], ["both"])
        minimal_port = localtools.free_port()
        endpoint = configurations.Endpoint(
            ca_bundle=authority.pem, url=f"https://127.0.0.1:{minimal_port}"
        )
        calibration = configurations.validating_configuration(endpoint, name="bench-minimal")
        calibration["webhooks"] = calibration["webhooks"][:1]  # workloads only
        _select_phases(calibration["webhooks"][0], ["minimal"])

        figures: dict[str, list[float]] = {phase: [] for phase in PHASES}
        spawn = multiprocessing.get_context("spawn")
        answered = spawn.Value("i", 0)
        minimal = spawn.Process(
            target=_serve_minimal,
            args=(str(cert), str(key), minimal_port, answered),
            daemon=True,
        )
        minimal.start()
        try:
            with _webhook_process(webhook, work / "webhook.log"):
                _wait_ready(port, work / "webhook-ca.crt")
                for document in (validating, mutating, calibration):
                    run("apply", "-f", "-", stdin=json.dumps(document))
                _check_phases(client, namespaces, image, unsigned_image, answered)
                for index in range(count):
                    if index % DELETE_EVERY == 0:
                        # Unscheduled pods go at once: etcd does not grow run after run.
                        for namespace in namespaces.values():
                            run("delete", "pods", "--all", f"-n={namespace}", "--wait=false")
                        for namespace in namespaces.values():  # warm up again after it
                            _creates(client, namespace, f"warm-{index}", image, 5)
                    order = list(PHASES)
                    shift = index % len(order)  # no phase always follows the same one
                    for phase in order[shift:] + order[:shift]:
                        figures[phase] += _creates(
                            client, namespaces[phase], f"pod-{index}", image, 1
                        )
        finally:
            minimal.terminate()
            minimal.join(10)
    finally:
        control_plane.stop()
        control_plane.remove_work_dir()
        registry.stop()

    print(
        f"(b) through kube-apiserver: {count} sequential pod creates per phase, keep-alive "
        "client, phases alternating create by create"
    )
    print(f"    load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for phase, latencies in figures.items():
        print(
            f"    {phase:18s} p50 {statistics.median(latencies) * 1000:6.2f} ms   "
            f"p99 {_percentile(latencies, 0.99) * 1000:6.2f} ms"
        )
    without = figures["without webhooks"]
    for phase in ("minimal webhook", "validating only", "both webhooks"):
        added_p50 = statistics.median(figures[phase]) - statistics.median(without)
        added_p99 = _percentile(figures[phase], 0.99) - _percentile(without, 0.99)
        print(
            f"    added ({phase}): p50 {added_p50 * 1000:+.2f} ms, p99 {added_p99 * 1000:+.2f} ms"
        )
