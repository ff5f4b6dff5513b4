"""CPU per admission review, in-process, this code against other git revisions, interleaved.

bench_admission's server runs measure what a review costs over HTTPS, but on a shared,
loaded machine two runs of the same commit differ by up to a tenth: too much to tell a
few percent between commits. This measures only the webhook's own work on one review
(``validating.review`` on the body, then ``responses.encode`` of the answer: what the
server's handler does between reading the body and writing the answer) in the CPU time
of the process that does it (``time.process_time``), with the same warm context and
realistic Pod and Deployment reviews as bench_admission.

Each revision runs in a worker process of its own (its code from ``git archive``, as
``bench_guard_cpu --against`` does). The workers take turns in short batches, one at a
time, the order alternating each round (ABBA), so load from others hits them alike.
In every batch each worker also times a control that no revision changes: ``json.loads``
of the same bodies and ``json.dumps`` of a minimal allow (what any webhook pays). Ratios
per round (this / other) are what to read; the control's ratio shows how much two
processes of the same work differ here. Nothing is asserted.

At a load average of 10-20 on 2 cores even these ratios spread over 0.5-2.0 per round
and medians of 40-50 rounds move by 5-10 % between two copies of the same code.
``--instructions`` counts instead, with valgrind's callgrind, the instructions each
revision executes for ``--reviews`` reviews (only those: the count is switched on inside
``sys.call_tracing``, which runs them; the cyclic GC is off while they run). The count
does not move with the machine's load (two runs of the same code: within 0.1 %); but
code elsewhere moves where objects and names lie in memory, and with it the
interpreter's type-cache collisions: a commit that changed nothing on the path counted
0.3 % more, and removing what it changed from a later revision counted no less. Read
under about half a percent as no change. It takes minutes per revision (imports run
under valgrind too).

    .venv/bin/python -m bench.bench_review_cpu --against 5a1cdc0^
    .venv/bin/python -m bench.bench_review_cpu --this HEAD --against HEAD~3 --rounds 40
    .venv/bin/python -m bench.bench_review_cpu --instructions --reviews 100 --against 5a1cdc0^

``--this REV`` takes the code of REV instead of the working tree.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, TextIO

ROOT = pathlib.Path(__file__).resolve().parent.parent


# --- the worker: one revision's code -----------------------------------------------------


def _module(*names: str) -> Any:
    """The first of ``names`` this revision has (modules moved between revisions)."""
    for name in names[:-1]:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return importlib.import_module(names[-1])


def _scenarios() -> Any:
    # tests/webhooks/scenarios.py became tests/support/admissionscenarios.py (d1ffb05).
    return _module("tests.support.admissionscenarios", "tests.webhooks.scenarios")


def _warm_context() -> Any:
    """bench_admission's warm context, written against what every revision has."""
    contexts = importlib.import_module("modelshield_webhooks.contexts")
    scenarios = _scenarios()
    verdicts = _module("tests.support.imageverdicts", "tests.webhooks.verdicts")
    # supplychain/images/verifying.py became imageverifier.py (db5f168).
    verifiers = _module(
        "modelshield.supplychain.images.imageverifier", "modelshield.supplychain.images.verifying"
    )
    baseline = scenarios.policy("", name="platform-baseline")
    baseline["kind"] = "ClusterModelSecurityPolicy"
    baseline["spec"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": scenarios.ENFORCED}},
        "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        "runtime": {},
    }
    state = scenarios.synced_state(
        [
            scenarios.policy(scenarios.ENFORCED),
            scenarios.policy(scenarios.AUDITED, "Audit"),
            baseline,
        ],
        [scenarios.model_artifact(scenarios.ENFORCED), scenarios.model_artifact(scenarios.AUDITED)],
    )
    verifier = verifiers.ImageVerifier()
    key = state.policy_set.namespaced[scenarios.ENFORCED][0].images.key
    verifier.cache.store(scenarios.SIGNED, key, verdicts.image_facts(scenarios.SIGNED), pinned=True)
    return contexts.AdmissionContext(state=state, verifier=verifier, clock=lambda: scenarios.NOW)


def _bodies() -> list[bytes]:
    """Pod and Deployment CREATE reviews, three containers each, governed and compliant."""
    scenarios = _scenarios()
    bodies = []
    for label in ("Pod", "Deployment"):
        info = scenarios.BY_LABEL[label]
        obj = scenarios.workload(info, [scenarios.SIGNED] * 3)
        bodies.append(json.dumps(scenarios.review(info, "CREATE", obj)).encode())
    return bodies


class Reviews:
    """This revision's webhook answering the realistic reviews in one event loop."""

    def __init__(self) -> None:
        self.responses = importlib.import_module("modelshield_webhooks.responses")
        self.validating = importlib.import_module("modelshield_webhooks.validating")
        self.context, self.bodies = _warm_context(), _bodies()
        self.loop = asyncio.new_event_loop()

    async def _review_all(self, count: int) -> None:
        for index in range(count):
            answer = await self.validating.review(self.bodies[index % 2], self.context)
            self.responses.encode(answer)

    def run(self, count: int) -> None:
        """``count`` reviews, as the server's handler answers them (body in, bytes out)."""
        self.loop.run_until_complete(self._review_all(count))


def work(requests: TextIO, answers: TextIO) -> None:
    """Answer each line "N" with the CPU seconds of N reviews and of N control reviews."""
    reviews = Reviews()
    bodies = reviews.bodies

    def control_all(count: int) -> None:
        for index in range(count):
            review = json.loads(bodies[index % 2])
            answer = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": True},
            }
            json.dumps(answer).encode()

    # Every answer must be an allow with no warning: a denial would pass for speed.
    first = [
        reviews.loop.run_until_complete(reviews.validating.review(body, reviews.context))
        for body in bodies
    ]
    verdict = [(a["response"]["allowed"], a["response"].get("warnings")) for a in first]
    module = importlib.import_module("modelshield").__file__
    answers.write(json.dumps({"verdicts": verdict, "module": module}) + "\n")
    answers.flush()
    for line in requests:
        size = int(line)
        started = time.process_time()
        reviews.run(size)
        middle = time.process_time()
        control_all(size)
        ended = time.process_time()
        answers.write(json.dumps({"review": middle - started, "control": ended - middle}) + "\n")
        answers.flush()


def count(reviews: int) -> None:
    """Warm up, then ``reviews`` reviews inside ``sys.call_tracing``: callgrind, told to
    count only within that C function, counts the instructions of those reviews alone."""
    answering = Reviews()
    answering.run(20)
    # A full collection of the cyclic GC costs ~2 M instructions (it visits every object
    # the imports made); whether one falls among the counted reviews depends on where the
    # allocation counters stand, not on the code: two revisions differed by 2.7 % for it
    # alone. Counted without it; what a review leaves for it is not counted.
    gc.collect()
    gc.disable()
    sys.call_tracing(answering.run, (reviews,))


# --- the coordinator -------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    """One revision's worker process and what it measured, per round (seconds/review)."""

    name: str
    process: subprocess.Popen[str]
    review: list[float] = dataclasses.field(default_factory=list)
    control: list[float] = dataclasses.field(default_factory=list)

    def batch(self, count: int) -> tuple[float, float]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        result = json.loads(self.process.stdout.readline())
        return result["review"] / count, result["control"] / count


def extract(revision: str, directory: pathlib.Path) -> pathlib.Path:
    """The code of a git revision (operator/, webhooks/, tests/)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "operator", "webhooks", "tests"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def start(name: str, source: pathlib.Path) -> Worker | None:
    """A worker with the code under ``source`` (its operator/, webhooks/ and tests/); None
    when that code cannot run the reviews (its error went to stderr)."""
    paths = [str(source / "operator"), str(source / "webhooks"), str(source)]
    process = subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--role=worker"],
        cwd=source, env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        print(f"  {name}: the worker did not start (exit {process.wait()}); left out")
        return None
    ready = json.loads(line)
    print(f"  {name}: {ready['module']}; first answers (allowed, warnings): {ready['verdicts']}")
    return Worker(name, process)


def _spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    ordered = sorted(v * scale for v in values)
    return (
        f"median {statistics.median(ordered):.{digits}f} "
        f"({ordered[0]:.{digits}f}-{ordered[-1]:.{digits}f})"
    )


def report(workers: list[Worker]) -> None:
    """Per worker: CPU per review and per control; then ratios to the first, per round."""
    print(f"CPU per review, {len(workers[0].review)} rounds (us; median, min-max):")
    for worker in workers:
        print(
            f"  {worker.name:24} review {_spread(worker.review, 1e6)}  "
            f"control {_spread(worker.control, 1e6)}"
        )
    this = workers[0]
    for other in workers[1:]:
        review = [a / b for a, b in zip(this.review, other.review, strict=True)]
        control = [a / b for a, b in zip(this.control, other.control, strict=True)]
        relative = [r / c for r, c in zip(review, control, strict=True)]
        print(f"  {this.name} / {other.name}, per round:")
        print(f"    review            {_spread(review, digits=3)}")
        print(f"    control           {_spread(control, digits=3)}")
        print(f"    review / control  {_spread(relative, digits=3)}")
        # Others' load only ever adds CPU time (caches, frequency): the best rounds are
        # the least disturbed.
        print(f"    best round / best round  {min(this.review) / min(other.review):.3f}")
        print("    each round's review ratio: " + " ".join(f"{r:.3f}" for r in review))


def _sources(
    arguments: argparse.Namespace, directory: pathlib.Path
) -> list[tuple[str, pathlib.Path]]:
    """(name, code) of this and of each revision to compare, this first."""
    sources = [(arguments.this or "working tree", ROOT)]
    if arguments.this:
        sources = [(arguments.this, extract(arguments.this, directory / "this"))]
    for index, revision in enumerate(arguments.against):
        sources.append((revision, extract(revision, directory / f"against-{index}")))
    return sources


def run(arguments: argparse.Namespace) -> None:
    """Start the workers, take turns, print."""
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-review-cpu-") as scratch:
        directory = pathlib.Path(scratch)
        sources = _sources(arguments, directory)
        started = [start(name, source) for name, source in sources]
        workers = [worker for worker in started if worker is not None]
        try:
            for worker in workers:  # warm-up: caches, the interpreter's own
                worker.batch(arguments.reviews)
            for index in range(arguments.rounds):
                order = workers if index % 2 == 0 else workers[::-1]
                for worker in order:
                    review, control = worker.batch(arguments.reviews)
                    worker.review.append(review)
                    worker.control.append(control)
        finally:
            for worker in workers:
                assert worker.process.stdin is not None
                worker.process.stdin.close()
                worker.process.wait(10)
    report(workers)
    if arguments.raw is not None:
        rounds = {w.name: {"review": w.review, "control": w.control} for w in workers}
        arguments.raw.write_text(json.dumps(rounds, indent=1))
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


#: callgrind counting only inside sys.call_tracing (see ``count``).
CALLGRIND = [
    "valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=sys_call_tracing",
    "--callgrind-out-file=/dev/null",
]  # fmt: skip


def instructions(name: str, source: pathlib.Path, reviews: int) -> subprocess.Popen[str]:
    """Start counting the instructions of ``reviews`` reviews with the code under ``source``."""
    paths = [str(source / "operator"), str(source / "webhooks"), str(source)]
    return subprocess.Popen(
        [*CALLGRIND, sys.executable, str(pathlib.Path(__file__).resolve()), "--role=count",
         f"--reviews={reviews}"],
        cwd=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # Hash seeds move dict and set layouts, so the counts, from run to run.
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONHASHSEED="0"),
    )  # fmt: skip


def run_instructions(arguments: argparse.Namespace) -> None:
    """Instructions per review of each revision, under callgrind (the machine's load does
    not change them): ``--jobs`` revisions at a time."""
    with tempfile.TemporaryDirectory(prefix="bench-review-cpu-") as scratch:
        directory = pathlib.Path(scratch)
        sources = _sources(arguments, directory)
        counted: dict[str, float] = {}
        for first in range(0, len(sources), arguments.jobs):
            batch = sources[first : first + arguments.jobs]
            running = [(n, instructions(n, s, arguments.reviews)) for n, s in batch]
            for name, process in running:
                _, errors = process.communicate()
                found = re.search(r"Collected : (\d+)", errors)
                if process.returncode or found is None:
                    print(f"  {name}: not counted (exit {process.returncode}): {errors[-500:]}")
                    continue
                counted[name] = int(found.group(1)) / arguments.reviews
                print(f"  {name:24} {counted[name]:10,.0f} instructions per review", flush=True)
    this = sources[0][0]
    for name, value in counted.items():
        if name != this and this in counted:
            print(f"  {this} / {name}: {counted[this] / value:.4f}")


def main() -> None:
    """Parse arguments; be a worker, or run the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "worker", "count"], default="bench")
    parser.add_argument("--this", default=None, help="a git revision instead of the working tree")
    parser.add_argument(
        "--against", action="append", default=[], help="a git revision to compare (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--reviews", type=int, default=1000, help="reviews per worker's batch")
    parser.add_argument(
        "--raw", type=pathlib.Path, default=None, help="write every round's figures (JSON) here"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per review under valgrind's callgrind instead of CPU time",
    )
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    arguments = parser.parse_args()
    if arguments.role == "worker":
        work(sys.stdin, sys.stdout)
    elif arguments.role == "count":
        count(arguments.reviews)
    elif arguments.instructions:
        run_instructions(arguments)
    else:
        run(arguments)


if __name__ == "__main__":
    main()
