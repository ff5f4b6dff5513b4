"""The processes of the guard's CPU benchmark (``bench_guard_cpu``) and how they start.

Each is ``python -m bench.bench_guard_cpu --role=...`` in a process of its own, so that
its CPU can be read from /proc: the model server (a fixed answer), the guard beside a bare
aiohttp proxy in **one** process (the baseline shares the guard's process, its event loop
and its share of the machine), and nginx's authentication endpoint (``nginxauth``). A
guard may run the code of another git revision (``extract``), to compare a change with
what it replaces in one run.

This tree's guard process also serves a second guard with the model-aware defences on
(issue 15's cost goal): the first guard's configuration plus a reference profile of 20
numeric features (breast cancer's first 20 columns, 70 % of its rows, with the outlier
model ``modelshield drift profile`` stores), ``requests.matchReferenceProfile``,
``outliers`` (Flag at 0.01), ``probing`` (every detector, Alert) and ``responses``
(3 decimals, top 1). Its clients send distinct benign queries made from the other 30 %
(``defence_queries``) and the model server answers it with two class probabilities.
Beside it, on a port of its own, ``/defences`` says what that guard's defences did:
rows scored, queries the probing detectors took (and exact repeats they skipped: a
benchmark of the repeat path would measure a path not taken), flags and alarms. The
counting wraps ``outlierscoring.score`` and ``ClientStream._repeat`` in that process (a
Python call each, well under 1 % of the stage).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from bench import bench_guard, nginxauth
from modelshield.guard import (
    config,
    forwarding,
    httpserving,
    outliermodel,
    outlierscoring,
    probing,
    server,
)
from modelshield_webhooks import eventloops

ME = [sys.executable, "-m", "bench.bench_guard_cpu"]
#: The model the defences guard serves: breast cancer's first 20 features.
DEFENCES_MODEL = "cancer"
DEFENCES_PATH = f"/v1/models/{DEFENCES_MODEL}:predict"
#: Its model server's answer: two class probabilities as a model prints them.
DEFENCES_ANSWER = json.dumps({"predictions": [[0.9731846022605896, 0.026815397739410400]]}).encode()
FEATURES = 20
#: How far a benign query moves from one held-out row towards another (at most), as in
#: ``bench_defence_costs``: in distribution, yet distinct (probing skips exact repeats).
MIX = 0.3


def reference_split() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Breast cancer's first 20 features: their names, the 70 % the reference profile is
    built from, the 30 % held out (seeded: both processes get the same split)."""
    from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

    data = load_breast_cancer()
    rows = np.asarray(data.data, dtype=np.float64)[:, :FEATURES]
    order = np.random.default_rng(15).permutation(rows.shape[0])
    cut = int(0.7 * rows.shape[0])
    names = [str(name) for name in data.feature_names[:FEATURES]]
    return names, rows[order[:cut]], rows[order[cut:]]


def defence_queries(count: int) -> list[bytes]:
    """``count`` distinct KServe v1 request bodies of one row each: a held-out row moved a
    little towards another, at the data set's own precision (4 significant digits)."""
    _, _, held_out = reference_split()
    rng = np.random.default_rng(1515)
    found: dict[bytes, None] = {}
    while len(found) < count:
        first = rng.integers(0, held_out.shape[0], count)
        # Another row than the first: a row mixed with itself is the held-out row again.
        second = (first + rng.integers(1, held_out.shape[0], count)) % held_out.shape[0]
        share = rng.uniform(0, MIX, (count, 1))
        rows = held_out[first] + share * (held_out[second] - held_out[first])
        for row in rows:
            body = json.dumps({"instances": [[float(f"{value:.4g}") for value in row]]})
            found[body.encode()] = None
    return list(found)[:count]


def _defences_policy() -> dict[str, Any]:
    policy = bench_guard._policy()
    api = policy["api"]
    for rule in api["authorization"]["allow"]:
        rule["models"] = [*rule["models"], DEFENCES_MODEL]
    api["requests"] = {**api["requests"], "matchReferenceProfile": True}
    api["outliers"] = {"action": "Flag", "falseFlagRate": 0.01}
    api["probing"] = {"action": "Alert"}
    api["responses"] = {"roundDecimals": 3, "topK": 1}
    return policy


def defences_pipeline(upstream: str, keys_dir: pathlib.Path) -> server.Pipeline:
    """The API-key guard's pipeline with the reference profile and the defences on."""
    names, train, _ = reference_split()
    columns = {name: train[:, index].tolist() for index, name in enumerate(names)}
    # As `modelshield drift profile` stores it and the operator copies it into the config.
    model_document = outliermodel.to_document(outliermodel.build(columns, names))
    bench_guard._pipeline(upstream, keys_dir)  # writes the API key's file
    settings = config.GuardConfig.model_validate(
        {
            "upstream": upstream,
            "apiKeysDir": str(keys_dir),
            "apiServer": {
                "url": "https://127.0.0.1:1",
                "caFile": None,
                "tokenFile": str(keys_dir / "token"),
            },
            "referenceFeatures": [{"name": name, "type": "numeric"} for name in names],
            "outlierModel": json.loads(json.dumps(model_document)),
            "policies": [_defences_policy()],
        }
    )
    return server.pipeline_from_config(settings)


def _count_defence_work(counts: collections.Counter[str]) -> None:
    """Count rows scored and queries the probing detectors took, in this process."""
    score = outlierscoring.score
    repeat = probing.ClientStream._repeat

    def counted_score(fitted: Any, numeric: Any, *rest: Any) -> Any:
        counts["rows scored"] += int(numeric.shape[0])
        return score(fitted, numeric, *rest)

    def counted_repeat(stream: probing.ClientStream, query: Any) -> bool:
        found = repeat(stream, query)
        counts["probing queries"] += 1
        counts["exact repeats skipped"] += found
        return found

    setattr(outlierscoring, "score", counted_score)  # noqa: B010
    setattr(probing.ClientStream, "_repeat", counted_repeat)  # noqa: B010


def defences_evidence_app(
    pipeline: server.Pipeline, counts: collections.Counter[str]
) -> web.Application:
    """``GET /defences``: what the defences guard's checks did, as JSON."""

    async def evidence(request: web.Request) -> web.Response:
        found: dict[str, Any] = dict(counts)
        for metric in pipeline.metrics.registry.collect():
            if metric.name in ("modelshield_guard_outliers", "modelshield_guard_probing_alarms"):
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        key = f"{metric.name} {json.dumps(sample.labels, sort_keys=True)}"
                        found[key] = sample.value
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/defences", evidence)
    return app


def fetch_evidence(port: int) -> dict[str, Any]:
    """The defences guard's ``/defences`` (``defences_evidence_app``)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/defences", timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
    return found


def _model_app() -> web.Application:
    async def defences_answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=DEFENCES_ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post(DEFENCES_PATH, defences_answer)
    app.router.add_post("/v1/models/{model}:predict", bench_guard._fixed_answer)
    return app


def serve_model(port: int) -> None:
    """The model server: a fixed small JSON answer (its own cost is not counted)."""

    async def main() -> None:
        runner = web.AppRunner(_model_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def bare_proxy_app(upstream: str) -> web.Application:
    """The baseline: what any aiohttp reverse proxy does per request, and nothing more:
    read the body, forward it with a pooled client, relay the answer in one Response."""
    sessions: list[aiohttp.ClientSession] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
        body = await request.read()
        async with sessions[0].post(
            upstream + request.raw_path,
            data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            content = await answer.read()
        return web.Response(status=answer.status, body=content, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    return app


def bare_proxy_own_client_app(upstream: str) -> web.Application:
    """The bare proxy with the guard's own client to the model server (``forwarding``)
    instead of aiohttp's ``ClientSession``: the ceiling of a guard built on aiohttp's server
    and that client."""
    clients: list[forwarding.Client] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if not clients:
            clients.append(forwarding.Client(upstream, timeout=30.0, connect_timeout=5.0))
        body = await request.read()
        headers = [("Content-Type", request.headers.get("Content-Type", ""))]
        answer = await clients[0].request("POST", request.raw_path, headers, body)
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    return app


def bare_proxy_own_server(upstream: str) -> httpserving.Server:
    """The bare proxy on the guard's own server (``httpserving``) with its own client: what
    a proxy built on the guard's two HTTP parts costs before any check."""
    clients: list[forwarding.Client] = []

    async def forward(request: httpserving.Request) -> httpserving.Answer:
        if not clients:
            clients.append(forwarding.Client(upstream, timeout=30.0, connect_timeout=5.0))
        body = await request.body()
        headers = [("Content-Type", request.content_type or "")]
        answer = await clients[0].request("POST", request.target, headers, body)
        return httpserving.Answer(
            answer.status, [("Content-Type", "application/json")], answer.body
        )

    return httpserving.Server(forward, body_limit=1024 * 1024)


def serve_guard(
    upstream: str,
    guard_port: int,
    bare_port: int,
    scratch: str,
    event_loop: str,
    bare_own_client_port: int = 0,
    defences_port: int = 0,
    evidence_port: int = 0,
    aiohttp_guard_port: int = 0,
    bare_own_server_port: int = 0,
) -> None:
    """The guard (as ``modelshield guard`` runs it: its own server) and the bare proxies,
    one process; with ``defences_port``, the guard with the defences on too (and its
    ``/defences``); with ``aiohttp_guard_port``, the same guard on aiohttp's server
    (``--http-server=aiohttp``); with ``bare_own_server_port``, the bare proxy on the
    guard's own server and client. A guard of an older revision (``--against``) serves
    as that revision's ``modelshield guard`` did."""
    # As `modelshield guard` runs: its event loop, audit lines through logging at INFO.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=open(os.devnull, "w"))  # noqa: SIM115

    async def main() -> None:
        pipeline = bench_guard._pipeline(upstream, pathlib.Path(scratch))
        await server.build_server(pipeline).start("127.0.0.1", guard_port)
        apps = [(bare_proxy_app(upstream), bare_port)]
        if aiohttp_guard_port:
            apps.append((server.build_app(pipeline), aiohttp_guard_port))
        if bare_own_server_port:
            await bare_proxy_own_server(upstream).start("127.0.0.1", bare_own_server_port)
        if bare_own_client_port:
            apps.append((bare_proxy_own_client_app(upstream), bare_own_client_port))
        if defences_port:
            defended = defences_pipeline(upstream, pathlib.Path(scratch) / "defences")
            counts = collections.Counter[str]()
            _count_defence_work(counts)
            await server.build_server(defended).start("127.0.0.1", defences_port)
            apps.append((defences_evidence_app(defended, counts), evidence_port))
        for app, port in apps:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def serve_auth(port: int, event_loop: str) -> None:
    """nginx's ``auth_request`` endpoint."""

    async def main() -> None:
        runner = web.AppRunner(nginxauth.auth_app(bench_guard.KEY), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Return when ``port`` accepts connections; raise when ``process`` exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def extract(revision: str, directory: pathlib.Path) -> pathlib.Path:
    """The tree of a git revision (its operator/, webhooks/, bench/, tests/ and e2e/)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "operator", "webhooks", "bench", "tests",
         "e2e"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


@dataclasses.dataclass
class Guard:
    """A running guard process: its guard's port and its bare proxies'."""

    process: subprocess.Popen[bytes]
    port: int
    bare_port: int
    bare_own_client_port: int | None = None  # this tree's guards only
    defences_port: int | None = None  # this tree's guards only
    evidence_port: int | None = None  # its ``/defences``
    aiohttp_port: int | None = None  # this tree's guard on aiohttp's server
    bare_own_server_port: int | None = None  # the bare proxy on the guard's own server

    def wait(self) -> None:
        """Until every port accepts connections."""
        ports = (
            self.port, self.bare_port, self.bare_own_client_port, self.defences_port,
            self.evidence_port, self.aiohttp_port, self.bare_own_server_port,
        )  # fmt: skip
        for port in ports:
            if port is not None:
                wait_listening(port, self.process)


def start_guard(
    upstream: str, scratch: pathlib.Path, event_loop: str, source: pathlib.Path | None = None
) -> Guard:
    """Start a guard process, with this tree's code or, from ``source``, another's."""
    port, bare_port = free_port(), free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    environment = None
    # Another revision's bench may not know the bare proxy with the guard's own client, nor
    # the guard with the defences on.
    own_client_port = free_port() if source is None else None
    defences_port = free_port() if source is None else None
    evidence_port = free_port() if source is None else None
    aiohttp_port = free_port() if source is None else None
    own_server_port = free_port() if source is None else None
    extra = (
        [f"--bare-own-client-port={own_client_port}", f"--defences-port={defences_port}",
         f"--evidence-port={evidence_port}", f"--aiohttp-guard-port={aiohttp_port}",
         f"--bare-own-server-port={own_server_port}"]
        if source is None
        else []
    )  # fmt: skip
    if source is not None:
        paths = [str(source / "operator"), str(source / "webhooks"), str(source)]
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    process = subprocess.Popen(
        [*ME, "--role=guard", f"--upstream={upstream}", f"--port={port}",
         f"--bare-port={bare_port}", f"--scratch={scratch}", f"--event-loop={event_loop}",
         *extra],
        cwd=source, env=environment,
    )  # fmt: skip
    return Guard(
        process, port, bare_port, own_client_port, defences_port, evidence_port, aiohttp_port,
        own_server_port,
    )  # fmt: skip
