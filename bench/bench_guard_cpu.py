"""The inference guard's CPU cost per request, measured on the guard's own process.

On a shared, loaded machine wall-clock rates say more about the neighbours than about
the guard. So this measures what the guard's process spends: its CPU-seconds (user +
system, from /proc) per answered request while vegeta (a Go load generator, another
process) sends flat out, and it compares them with a baseline served by the **same
process**: a bare aiohttp reverse proxy (read the body, forward it with a pooled client,
relay the answer; no checks). The ratio guard / bare proxy is what the guard's checks
cost on top of being an aiohttp proxy at all; 1 / (CPU-seconds per request) is the
requests per second one core could serve. The model server (a fixed answer) runs in a
third process, not counted.

With nginx installed (Debian's nginx-light), the chain users build today is measured
the same way: nginx with ``limit_req`` and ``auth_request`` to a small endpoint that checks
the API key (``nginxauth``); its figure is the CPU of nginx's processes and the endpoint's.

Then, at a fixed rate (default 200/s), the latency p50 and p99 of each target, from
vegeta (timed from when each request was due).

    .venv/bin/python -m bench.bench_guard_cpu                  # 10 s per figure
    .venv/bin/python -m bench.bench_guard_cpu --seconds 5 --profile /tmp/guard.txt

``--profile FILE`` samples the guard process with py-spy during the API-key run and
writes the functions with the most own time (the hot path) to FILE. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import logging
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

from bench import bench_guard, loadgenerator, nginxauth, processcpu
from modelshield_webhooks import eventloops

PATH = bench_guard.PATH
#: One round of a flat-out run; targets take turns, so load from others hits them alike.
ROUND_SECONDS = 2.0


# --- the processes ----------------------------------------------------------------------


def _serve_model(port: int) -> None:
    async def main() -> None:
        runner = web.AppRunner(bench_guard._upstream_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _bare_proxy_app(upstream: str) -> web.Application:
    """The baseline: what any aiohttp reverse proxy does per request, and nothing more.
    Under ``/stream`` the answer goes out as a StreamResponse (headers, then the body: how
    the guard wrote it before), to show what that costs in the same process."""
    sessions: list[aiohttp.ClientSession] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
        body = await request.read()
        streamed = request.raw_path.startswith("/stream/")
        path = request.raw_path.removeprefix("/stream")
        async with sessions[0].post(
            upstream + path,
            data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:
            content = await answer.read()
        if not streamed:
            return web.Response(status=answer.status, body=content, content_type="application/json")
        response = web.StreamResponse(status=answer.status)
        response.content_type = "application/json"
        response.content_length = len(content)
        await response.prepare(request)
        await response.write(content)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    return app


def _serve_guard(
    upstream: str, guard_port: int, bare_port: int, scratch: str, event_loop: str
) -> None:
    # As `modelshield guard` runs: its event loop, audit lines through logging at INFO.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=open(os.devnull, "w"))  # noqa: SIM115

    async def main() -> None:
        pipeline = bench_guard._pipeline(upstream, pathlib.Path(scratch))
        from modelshield.guard import server

        for app, port in (
            (server.build_app(pipeline), guard_port),
            (_bare_proxy_app(upstream), bare_port),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def _serve_auth(port: int, event_loop: str) -> None:
    async def main() -> None:
        runner = web.AppRunner(nginxauth.auth_app(bench_guard.KEY), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    eventloops.run(main(), event_loop)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
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


# --- the load -------------------------------------------------------------------------


def _attack(
    url: str,
    headers: dict[str, str],
    *,
    seconds: float,
    rate: float | None,
    directory: pathlib.Path,
) -> tuple[int, list[float], dict[str, int]]:
    """(answers with 200, latencies of all answers, other outcomes by kind)."""
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
        "-connections=32",
        "-max-connections=32",
        "-timeout=10s",
    ]
    command += (
        ["-rate=0", "-workers=32", "-max-workers=32"]
        if rate is None
        else [f"-rate={round(rate)}/1s"]
    )
    environment = dict(os.environ, GOMAXPROCS="1")
    encoded = subprocess.run(command, capture_output=True, env=environment, check=True).stdout
    decoded = subprocess.run(
        [str(loadgenerator.binary()), "encode", "--to=json"],
        input=encoded,
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
    return ok, sorted(latencies), dict(other)


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# --- the run --------------------------------------------------------------------------


def run(
    seconds: float, rate: float, profile: pathlib.Path | None, event_loop: str
) -> dict[str, Any]:
    """Start the processes, measure, print; the figures as a dict."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        model_port, guard_port, bare_port = _free_port(), _free_port(), _free_port()
        me = [sys.executable, "-m", "bench.bench_guard_cpu"]
        model = subprocess.Popen([*me, "--role=model", f"--port={model_port}"])
        upstream = f"http://127.0.0.1:{model_port}"
        guard = subprocess.Popen(
            [*me, "--role=guard", f"--upstream={upstream}", f"--port={guard_port}",
             f"--bare-port={bare_port}", f"--scratch={scratch}", f"--event-loop={event_loop}"]
        )  # fmt: skip
        chain = nginxauth.start(
            directory,
            port=_free_port(),
            auth_port=_free_port(),
            model_port=model_port,
            event_loop=event_loop,
        )
        try:
            for port, process in ((model_port, model), (guard_port, guard), (bare_port, guard)):
                _wait_listening(port, process)
            if chain is not None:
                _wait_listening(chain.port, chain.nginx)
            plain: dict[str, str] = {}
            targets = {
                "direct": (upstream + PATH, plain),
                "bare proxy": (f"http://127.0.0.1:{bare_port}{PATH}", plain),
                "bare proxy, StreamResponse": (
                    f"http://127.0.0.1:{bare_port}/stream{PATH}",
                    plain,
                ),
                "guard, API key": (
                    f"http://127.0.0.1:{guard_port}{PATH}",
                    {"X-Api-Key": bench_guard.KEY},
                ),
                "guard, token (cached)": (
                    f"http://127.0.0.1:{guard_port}{PATH}",
                    {"Authorization": f"Bearer {bench_guard.TOKEN}"},
                ),
            }
            if chain is not None:
                targets["nginx + auth_request"] = (
                    f"http://127.0.0.1:{chain.port}{PATH}",
                    {"X-Api-Key": bench_guard.KEY},
                )
            else:
                print("nginx is not installed: the nginx + auth_request comparison is skipped")

            def counted(name: str) -> list[int]:
                """Whose CPU a target's figure is: the guard's process, or the whole chain."""
                if name == "direct":
                    return []
                return chain.pids() if name.startswith("nginx") and chain else [guard.pid]

            rounds = max(1, round(seconds / ROUND_SECONDS))
            print(
                f"flat out, 32 connections, {rounds} interleaved rounds of {ROUND_SECONDS:.0f} s "
                "per target: CPU of the guard's process (of nginx and its endpoint for nginx)"
            )
            for url, headers in targets.values():
                _attack(url, headers, seconds=1, rate=None, directory=directory)  # warm up
            totals = {name: {"ok": 0, "wall": 0.0, "guard": 0.0, "model": 0.0} for name in targets}
            per_round: dict[str, list[float]] = {name: [] for name in targets}
            other_total: dict[str, dict[str, int]] = {name: {} for name in targets}
            for index in range(rounds):
                for name, (url, headers) in targets.items():
                    spy = (
                        processcpu.profile(guard.pid, ROUND_SECONDS, profile)
                        if profile and name == "guard, API key" and index == rounds // 2
                        else None
                    )
                    pids = [*counted(name), model.pid]
                    before = {pid: processcpu.cpu_seconds(pid) for pid in pids}
                    started = time.monotonic()
                    ok, _, other = _attack(
                        url, headers, seconds=ROUND_SECONDS, rate=None, directory=directory
                    )
                    wall = time.monotonic() - started
                    spent = {pid: processcpu.cpu_seconds(pid) - before[pid] for pid in pids}
                    cpu = sum(spent[pid] for pid in counted(name))
                    if spy is not None:
                        spy.wait()
                        assert profile is not None
                        processcpu.summarise_profile(profile.with_suffix(".raw"), profile)
                    total = totals[name]
                    total["ok"] += ok
                    total["wall"] += wall
                    total["guard"] += cpu
                    total["model"] += spent[model.pid]
                    per_round[name].append(cpu / ok if ok else float("nan"))
                    for kind, count in other.items():
                        other_total[name][kind] = other_total[name].get(kind, 0) + count
            for name, total in totals.items():
                ok = int(total["ok"])
                per_request = total["guard"] / ok if ok else float("nan")
                figures[name] = {
                    **total,
                    "cpu_per_request": per_request,
                    "other": other_total[name],
                }
                line = f"  {name:26} {ok / total['wall']:7.0f} requests/s"
                if name != "direct":
                    line += (
                        f"  {per_request * 1e6:6.0f} us CPU/request"
                        f" = {1 / per_request:6.0f} requests per CPU-second"
                    )
                else:
                    line += f"  (model server {total['model'] / ok * 1e6:.0f} us CPU/request)"
                other = other_total[name]
                print(line + (f"  not 200: {other}" if other else ""))
            for name in [n for n in targets if n not in ("direct", "bare proxy")]:
                ratios = sorted(
                    mine / bare
                    for mine, bare in zip(per_round[name], per_round["bare proxy"], strict=True)
                )
                print(
                    f"  {name:26} {statistics.median(ratios):.2f}x the bare proxy's CPU per "
                    f"request (median of {rounds} rounds; {ratios[0]:.2f}-{ratios[-1]:.2f})"
                )
            print(f"at {rate:.0f} requests/s, {seconds:.0f} s each: latency")
            medians = {}
            for name, (url, headers) in targets.items():
                ok, latencies, other = _attack(
                    url, headers, seconds=seconds, rate=rate, directory=directory
                )
                medians[name] = _percentile(latencies, 0.5)
                figures[name]["p50"] = medians[name]
                figures[name]["p99"] = _percentile(latencies, 0.99)
                print(f"  {name:22} p50 {medians[name] * 1e3:6.3f} ms  p99 {figures[name]['p99'] * 1e3:6.3f} ms"
                      + (f"  not 200: {other}" if other else ""))  # fmt: skip
            for name in [n for n in targets if n != "direct"]:
                print(
                    f"  {name:22} adds {(medians[name] - medians['direct']) * 1e3:6.3f} ms at p50"
                )
        finally:
            if chain is not None:
                chain.stop()
            for process in (guard, model):
                nginxauth.stop(process)
    return figures


def main() -> None:
    """Parse arguments; serve a role, or run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "model", "guard", "auth"], default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bare-port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--scratch", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--profile", type=pathlib.Path, default=None)
    parser.add_argument(
        "--event-loop",
        default=eventloops.UVLOOP,
        choices=eventloops.CHOICES,
        help="the guard process's loop (default: what `modelshield guard` runs)",
    )
    arguments = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if arguments.role == "model":
        _serve_model(arguments.port)
    elif arguments.role == "auth":
        _serve_auth(arguments.port, arguments.event_loop)
    elif arguments.role == "guard":
        _serve_guard(
            arguments.upstream,
            arguments.port,
            arguments.bare_port,
            arguments.scratch,
            arguments.event_loop,
        )
    else:
        print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"the guard's event loop: {arguments.event_loop}")
        run(arguments.seconds, arguments.rate, arguments.profile, arguments.event_loop)


if __name__ == "__main__":
    main()
