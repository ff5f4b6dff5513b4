"""The inference guard's CPU cost per request, measured on the guard's own process.

On a shared, loaded machine wall-clock rates say more about the neighbours than about
the guard. So this measures what the guard's process spends: its CPU-seconds (user +
system, from /proc) per answered request while vegeta (a Go load generator, another
process) sends flat out, and it compares them with a baseline served by the **same
process**: a bare aiohttp reverse proxy (read the body, forward it with a pooled client,
relay the answer; no checks), with aiohttp's ``ClientSession`` and, beside it, with the
guard's own client to the model server (``guard.forwarding``, what the guard itself
uses). The ratio guard / bare proxy is what the guard's checks cost on top of being a
proxy on aiohttp's server at all; 1 / (CPU-seconds per request) is the
requests per second one core could serve. The model server (a fixed answer) runs in a
third process, not counted. Targets take turns in short rounds, so load from others
hits them alike; the ratio per round is what to read.

The guard serves its clients on its own HTTP/1.1 server (``guard/httpserving.py``), as
``modelshield guard`` does by default; ``guard, API key, aiohttp server`` is the same
pipeline in the same process on aiohttp's server (``--http-server=aiohttp``), and
``bare proxy, own server`` the bare proxy on the guard's own server and client: what the
server alone changes.

``guard, defences on`` is the API-key guard with issue 15's model-aware checks too, in the
same process: a reference profile of 20 numeric features (breast cancer's first 20, with
its outlier model), ``requests.matchReferenceProfile``, ``outliers`` (Flag, false-flag
rate 0.01), ``probing`` (every detector, Alert) and ``responses`` (3 decimals, top 1).
Its requests are KServe v1 bodies of one row each, cycled from 20,000 distinct benign
queries made from held-out rows (``guardprocesses.defence_queries``; each attack goes on
where the last ended, so the probing detectors, which skip exact repeats of a client's
last 1,000 queries, take every one), and its model server answers two class
probabilities. After the rounds the guard reports what its checks did
(rows scored, probing queries, repeats skipped, flags, alarms) and one hardened answer is
printed: the figure is only worth what that path was.

With nginx installed (Debian's nginx-light), the chain users build today is measured
the same way: nginx with ``limit_req`` and ``auth_request`` to a small endpoint that checks
the API key (``nginxauth``); its figure is the CPU of nginx's processes and the endpoint's.

``--against REV`` runs a second guard process with the code of git revision REV (and its
own bare proxy) in the same rounds: how a change compares with what it replaces. Each
target and its twin @REV are sent to at the same time (a vegeta each), so the machine's
load hits both alike; the ratio this / @REV per round is what to read.

Then, at a fixed rate (default 200/s), the latency p50 and p99 of each target, from
vegeta (timed from when each request was due): one attack of ``--seconds`` per target in
turn, or with ``--latency-round-seconds S`` attacks of S seconds taking turns (each
target and its twin @REV next to each other), so that load from others hits them alike.

    .venv/bin/python -m bench.bench_guard_cpu                  # 10 s per figure
    .venv/bin/python -m bench.bench_guard_cpu --seconds 5 --profile /tmp/guard.txt
    .venv/bin/python -m bench.bench_guard_cpu --against HEAD~1 --rate 0 --only guard
    .venv/bin/python -m bench.bench_guard_cpu --rate 2000 --latency-round-seconds 2

``--profile FILE`` samples the guard process with py-spy during the API-key run (or the
``--profile-target``'s) and writes the functions with the most own time (the hot path) to
FILE. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench import bench_guard, guardload, guardprocesses, nginxauth, processcpu
from modelshield_webhooks import eventloops

PATH = bench_guard.PATH
#: One round of a flat-out run; targets take turns, so load from others hits them alike.
ROUND_SECONDS = 2.0
KEY_HEADERS = {"X-Api-Key": bench_guard.KEY}
TOKEN_HEADERS = {"Authorization": f"Bearer {bench_guard.TOKEN}"}
#: The bare proxy with the guard's own client (``forwarding``) instead of aiohttp's.
OWN_CLIENT = "bare proxy, own client"
#: The bare proxy on the guard's own server and client (``httpserving``, ``forwarding``).
OWN_SERVER = "bare proxy, own server"
#: This tree's API-key guard on aiohttp's server (``--http-server=aiohttp``).
AIOHTTP_GUARD = "guard, API key, aiohttp server"
DEFENCES = "guard, defences on"
#: Distinct queries the defences target cycles through: more than one round sends.
DEFENCE_QUERIES = 20_000


@dataclasses.dataclass
class Target:
    """One thing to send requests to, and whose CPU pays for them."""

    name: str
    url: str
    headers: dict[str, str]
    pids: list[int]  # empty: nothing counted (the model server alone)
    baseline: str | None = None  # the target of the same process to divide by
    ok: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    system: float = 0.0  # of ``cpu``: the kernel's (sockets, epoll)
    model_cpu: float = 0.0
    per_round: list[float] = dataclasses.field(default_factory=list)
    other: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Its requests, when not ``bench_guard.BODY`` (``guardload.target_lines``), and where
    #: the next attack starts among them: each goes on where the last ended, so a client's
    #: queries stay distinct across attacks (the probing detectors skip exact repeats).
    lines: list[str] | None = None
    next_line: int = 0
    sample: bytes = b""  # one answer of 200

    def prepare(self, directory: pathlib.Path) -> pathlib.Path | None:
        """The targets file of its next attack (None: ``bench_guard.BODY`` each time)."""
        if self.lines is None:
            return None
        return guardload.write_targets(self.lines, self.next_line, directory / "targets.json")

    def sent(self, result: guardload.Attack) -> None:
        """After an attack: the next starts past every request this one sent (and the few
        that may have been dequeued unsent)."""
        self.next_line += result.ok + sum(result.other.values()) + guardload.CONNECTIONS

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.ok if self.ok else float("nan")


def _guard_targets(
    guard: guardprocesses.Guard, suffix: str, directory: pathlib.Path
) -> list[Target]:
    pid, bare = [guard.process.pid], f"bare proxy{suffix}"
    local = "http://127.0.0.1"
    own_client = (
        [Target(OWN_CLIENT, f"{local}:{guard.bare_own_client_port}{PATH}", {}, pid, bare)]
        if guard.bare_own_client_port is not None
        else []
    )
    if guard.bare_own_server_port is not None:
        url = f"{local}:{guard.bare_own_server_port}{PATH}"
        own_client.append(Target(OWN_SERVER, url, {}, pid, bare))
    on_aiohttp = []
    if guard.aiohttp_port is not None:
        url = f"{local}:{guard.aiohttp_port}{PATH}"
        on_aiohttp.append(Target(AIOHTTP_GUARD, url, KEY_HEADERS, pid, bare))
    defended = []
    if guard.defences_port is not None:
        url = f"{local}:{guard.defences_port}{guardprocesses.DEFENCES_PATH}"
        bodies = guardprocesses.defence_queries(DEFENCE_QUERIES)
        lines = guardload.target_lines(url, KEY_HEADERS, bodies)
        defended.append(Target(DEFENCES, url, KEY_HEADERS, pid, bare, lines=lines))
    return [
        Target(bare, f"{local}:{guard.bare_port}{PATH}", {}, pid),
        *own_client,
        Target(f"guard, API key{suffix}", f"{local}:{guard.port}{PATH}", KEY_HEADERS, pid, bare),
        Target(
            f"guard, token (cached){suffix}",
            f"{local}:{guard.port}{PATH}",
            TOKEN_HEADERS,
            pid,
            bare,
        ),
        *on_aiohttp,
        *defended,
    ]


def _ratio_line(name: str, mine: list[float], theirs: list[float], of: str) -> str:
    ratios = sorted(a / b for a, b in zip(mine, theirs, strict=True))
    return (
        f"  {name:34} {statistics.median(ratios):.2f}x {of} (median of {len(ratios)} rounds; "
        f"{ratios[0]:.2f}-{ratios[-1]:.2f})"
    )


def pair(targets: list[Target], against: str | None) -> list[list[Target]]:
    """What runs at the same time: each target alone, or with its twin @``against`` (the
    machine's load then hits both alike; the pairs take turns like single targets)."""
    if against is None:
        return [[target] for target in targets]
    by_name = {target.name: target for target in targets}
    suffix = f" @{against}"
    return [
        [target, *([by_name[target.name + suffix]] if target.name + suffix in by_name else [])]
        for target in targets
        if not target.name.endswith(suffix)
    ]


def measure_cpu(
    groups: list[list[Target]],
    rounds: int,
    seconds: float,
    model_pid: int,
    directory: pathlib.Path,
    profile: tuple[int, pathlib.Path, str] | None,
) -> None:
    """Interleaved flat-out rounds; fills each target's counts."""
    for target in (target for group in groups for target in group):
        target.sent(
            guardload.attack(
                target.url, target.headers, seconds=1, rate=None, directory=directory,
                prepared=target.prepare(directory),
            )
        )  # fmt: skip
    for index in range(rounds):
        for group in groups:
            spy = (
                processcpu.profile(profile[0], seconds, profile[1])
                if profile and group[0].name == profile[2] and index == rounds // 2
                else None
            )
            pids = {pid for target in group for pid in target.pids} | {model_pid}
            prepared = [
                target.prepare(directory / str(place)) for place, target in enumerate(group)
            ]
            before = {pid: processcpu.cpu_times(pid) for pid in pids}
            started = time.monotonic()
            running = [
                guardload.start(
                    target.url, target.headers, seconds=seconds, rate=None,
                    directory=directory / str(place), prepared=prepared[place],
                )
                for place, target in enumerate(group)
            ]  # fmt: skip
            results = [
                guardload.finish(process, directory / str(place))
                for place, process in enumerate(running)
            ]
            wall = time.monotonic() - started
            after = {pid: processcpu.cpu_times(pid) for pid in pids}
            if spy is not None and profile is not None:
                spy.wait()
                processcpu.summarise_profile(profile[1].with_suffix(".raw"), profile[1])
            for target, result in zip(group, results, strict=True):
                cpu = sum(sum(after[pid]) - sum(before[pid]) for pid in target.pids)
                target.system += sum(after[pid][1] - before[pid][1] for pid in target.pids)
                target.wall += wall
                target.ok += result.ok
                target.cpu += cpu
                target.model_cpu += sum(after[model_pid]) - sum(before[model_pid])
                target.per_round.append(cpu / result.ok if result.ok else float("nan"))
                target.sample = target.sample or result.sample
                target.sent(result)
                for kind, count in result.other.items():
                    target.other[kind] = target.other.get(kind, 0) + count


def report_cpu(targets: list[Target], against: str | None) -> None:
    """Per target: requests/s, CPU per request; then the ratios, round by round."""
    by_name = {target.name: target for target in targets}
    for target in targets:
        line = f"  {target.name:34} {target.ok / target.wall:7.0f} requests/s"
        if target.pids:
            per_request = target.cpu_per_request
            line += (
                f"  {per_request * 1e6:6.0f} us CPU/request"
                f" = {1 / per_request:6.0f} requests per CPU-second"
                f" ({100 * target.system / target.cpu:2.0f} % system)"
            )
        else:
            line += f"  (model server {target.model_cpu / target.ok * 1e6:.0f} us CPU/request)"
        print(line + (f"  not 200: {target.other}" if target.other else ""))
    bare = by_name.get("bare proxy")
    for target in targets:
        baseline = by_name.get(target.baseline) if target.baseline else None
        if baseline is not None:
            theirs = baseline.per_round
            print(_ratio_line(target.name, target.per_round, theirs, "its bare proxy's CPU"))
        elif target.name.startswith("nginx") and bare is not None:
            print(_ratio_line(target.name, target.per_round, bare.per_round, "the bare proxy's"))
    defended, keyed = by_name.get(DEFENCES), by_name.get("guard, API key")
    if defended is not None and keyed is not None:
        # The same guard without the defences, in the same process: what the checks cost.
        theirs = keyed.per_round
        print(_ratio_line(DEFENCES, defended.per_round, theirs, "the API-key guard's"))
    own = by_name.get(OWN_CLIENT)
    if own is not None:
        # This tree's guard forwards with the same client as this bare proxy.
        for target in targets:
            if target.name.startswith(("guard", "nginx")) and "@" not in target.name:
                theirs = own.per_round
                print(_ratio_line(target.name, target.per_round, theirs, f"the {OWN_CLIENT}'s"))
    if against is not None:
        for target in targets:
            old = by_name.get(f"{target.name} @{against}")
            if old is not None:
                print(_ratio_line(target.name, target.per_round, old.per_round, f"@{against}'s"))


def report_defences(targets: list[Target], guard: guardprocesses.Guard) -> None:
    """What the defences guard's checks did, and one of its answers: the path measured."""
    defended = next((target for target in targets if target.name == DEFENCES), None)
    if defended is None or guard.evidence_port is None:
        return
    print(f"{DEFENCES}: what its checks did (warm-up and latency runs included)")
    for name, value in sorted(guardprocesses.fetch_evidence(guard.evidence_port).items()):
        print(f"  {name}: {value:g}")
    print(f"  an answer: {defended.sample.decode(errors='replace')}")


def measure_latency(
    groups: list[list[Target]],
    seconds: float,
    rate: float,
    directory: pathlib.Path,
    round_seconds: float | None = None,
) -> None:
    """p50 and p99 of each target at ``rate`` requests/s, and what each adds to direct calls.

    One attack of ``seconds`` per target in turn; with ``round_seconds``, attacks of that
    long taking turns (target, its twin, the next target...) until each has had
    ``seconds``, so the machine's load from second to second hits them alike: then the
    median of the per-round differences to direct calls is printed too."""
    targets = [target for group in groups for target in group]
    rounds = 1 if round_seconds is None else max(1, round(seconds / round_seconds))
    length = seconds if round_seconds is None else round_seconds
    how = "" if rounds == 1 else f" in {rounds} interleaved rounds of {length:g} s"
    print(f"at {rate:.0f} requests/s, {seconds:.0f} s each{how}: latency")
    latencies: dict[str, list[float]] = {target.name: [] for target in targets}
    round_medians: dict[str, list[float]] = {target.name: [] for target in targets}
    others: dict[str, dict[str, int]] = {target.name: {} for target in targets}
    for _ in range(rounds):
        for target in targets:
            result = guardload.attack(
                target.url, target.headers, seconds=length, rate=rate, directory=directory,
                prepared=target.prepare(directory),
            )  # fmt: skip
            target.sent(result)
            latencies[target.name] += result.latencies
            round_medians[target.name].append(result.percentile(0.5))
            for kind, count in result.other.items():
                others[target.name][kind] = others[target.name].get(kind, 0) + count
    medians = {}
    for target in targets:
        found = guardload.Attack(0, sorted(latencies[target.name]), {})
        medians[target.name] = found.percentile(0.5)
        other = others[target.name]
        print(f"  {target.name:34} p50 {medians[target.name] * 1e3:6.3f} ms  "
              f"p99 {found.percentile(0.99) * 1e3:7.3f} ms"
              + (f"  not 200: {other}" if other else ""))  # fmt: skip
    if "direct" in medians:
        direct = round_medians["direct"]
        for name, median in medians.items():
            if name == "direct":
                continue
            line = f"  {name:34} adds {(median - medians['direct']) * 1e3:6.3f} ms at p50"
            if rounds > 1:
                added = sorted(
                    (mine - theirs) * 1e3
                    for mine, theirs in zip(round_medians[name], direct, strict=True)
                )
                line += (
                    f" (per round: median {statistics.median(added):.3f}, "
                    f"{added[0]:.3f} to {added[-1]:.3f})"
                )
            print(line)


def run(arguments: argparse.Namespace) -> list[Target]:
    """Start the processes, measure, print; the targets with their counts."""
    event_loop = arguments.event_loop
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        model_port = guardprocesses.free_port()
        model = subprocess.Popen([*guardprocesses.ME, "--role=model", f"--port={model_port}"])
        upstream = f"http://127.0.0.1:{model_port}"
        processes = [model]
        try:
            guards = [(guardprocesses.start_guard(upstream, directory / "this", event_loop), "")]
            if arguments.against:
                source = guardprocesses.extract(arguments.against, directory / "source")
                old = guardprocesses.start_guard(upstream, directory / "old", event_loop, source)
                guards.append((old, f" @{arguments.against}"))
            processes += [guard.process for guard, _ in guards]
            chain = None
            if not arguments.against and not arguments.only:
                chain = nginxauth.start(
                    directory,
                    port=guardprocesses.free_port(),
                    auth_port=guardprocesses.free_port(),
                    model_port=model_port,
                    event_loop=event_loop,
                )
                if chain is None:
                    print("nginx is not installed: the nginx + auth_request comparison is skipped")
            guardprocesses.wait_listening(model_port, model)
            targets = [Target("direct", upstream + PATH, {}, [])]
            for guard, suffix in guards:
                guard.wait()
                targets += _guard_targets(guard, suffix, directory)
            if chain is not None:
                processes += [chain.nginx, chain.endpoint]
                guardprocesses.wait_listening(chain.port, chain.nginx)
                nginx = f"http://127.0.0.1:{chain.port}{PATH}"
                targets.append(Target("nginx + auth_request", nginx, KEY_HEADERS, chain.pids()))
            if arguments.only:
                targets = [t for t in targets if t.name.startswith(("bare", *arguments.only))]
            rounds = max(1, round(arguments.seconds / arguments.round_seconds))
            print(
                f"flat out, {guardload.CONNECTIONS} connections, {rounds} interleaved rounds of "
                f"{arguments.round_seconds:g} s per target: CPU of the guard's process "
                "(of nginx and its endpoint for nginx)"
            )
            guard_pid = guards[0][0].process.pid
            profile = (
                (guard_pid, arguments.profile, arguments.profile_target)
                if arguments.profile
                else None
            )
            groups = pair(targets, arguments.against)
            measure_cpu(groups, rounds, arguments.round_seconds, model.pid, directory, profile)
            report_cpu(targets, arguments.against)
            if arguments.rate > 0:
                skipped = tuple(arguments.latency_skip)
                measure_latency(
                    [
                        [target for target in group if not target.name.startswith(skipped)]
                        for group in groups
                        if not group[0].name.startswith(skipped)
                    ]
                    if skipped
                    else groups,
                    arguments.seconds,
                    arguments.rate,
                    directory,
                    arguments.latency_round_seconds,
                )
            report_defences(targets, guards[0][0])
        finally:
            for process in reversed(processes):
                nginxauth.stop(process)
    return targets


def main() -> None:
    """Parse arguments; serve a role, or run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "model", "guard", "auth"], default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bare-port", type=int, default=0)
    parser.add_argument("--bare-own-client-port", type=int, default=0)
    parser.add_argument("--defences-port", type=int, default=0)
    parser.add_argument("--evidence-port", type=int, default=0)
    parser.add_argument("--aiohttp-guard-port", type=int, default=0)
    parser.add_argument("--bare-own-server-port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--scratch", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=200.0, help="requests/s of the latency part (0: none)"
    )
    parser.add_argument("--profile", type=pathlib.Path, default=None)
    parser.add_argument(
        "--profile-target", default="guard, API key", help="the target --profile samples"
    )
    parser.add_argument(
        "--round-seconds", type=float, default=ROUND_SECONDS, help="one target's turn, flat out"
    )
    parser.add_argument(
        "--latency-round-seconds",
        type=float,
        default=None,
        help="latency attacks of this long taking turns (default: one of --seconds each)",
    )
    parser.add_argument(
        "--against", default=None, help="a git revision whose guard runs in the same rounds"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="targets whose names start so (repeatable; bare proxies are always kept)",
    )
    parser.add_argument(
        "--latency-skip",
        action="append",
        default=[],
        help="targets whose names start so are left out of the latency part (repeatable): "
        "one that cannot keep up with --rate (the defences guard) queues and its backlog, "
        "in the same process, delays the next target's round",
    )
    parser.add_argument(
        "--event-loop",
        default=eventloops.UVLOOP,
        choices=eventloops.CHOICES,
        help="the guard process's loop (default: what `modelshield guard` runs)",
    )
    arguments = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if arguments.role == "model":
        guardprocesses.serve_model(arguments.port)
    elif arguments.role == "auth":
        guardprocesses.serve_auth(arguments.port, arguments.event_loop)
    elif arguments.role == "guard":
        guardprocesses.serve_guard(
            arguments.upstream,
            arguments.port,
            arguments.bare_port,
            arguments.scratch,
            arguments.event_loop,
            arguments.bare_own_client_port,
            arguments.defences_port,
            arguments.evidence_port,
            arguments.aiohttp_guard_port,
            arguments.bare_own_server_port,
        )
    else:
        print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"the guard's event loop: {arguments.event_loop}")
        run(arguments)
        print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
