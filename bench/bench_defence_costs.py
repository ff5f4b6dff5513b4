"""CPU per request of each of the guard's model-aware checks, this code against git revisions.

Issue 15's cost goal is 3,000 requests/s per core with the checks on and 20-feature rows:
333 us of CPU per request for everything, transport included. This measures each check
alone, in the CPU time of the process that runs it (``time.process_time``), on realistic
state, one row per request:

- ``outliers``: ``outlierscoring.score`` and ``outlierscoring.flagged`` of one row (what
  ``Defences.judge`` calls), on an outlier model built from 70 % of a real data set: the
  first 20 features of breast cancer (the issue's 20-feature case), all 30, digits' 64;
  ``outliers box``: uniformly random points in the held-out rows' box (an extraction
  attacker's), nearly all flagged, so each pays for its reason too;
- ``probing <Detector>``: ``Prober.observe`` of one row for a client whose history is
  full (1,200 distinct queries first: DistanceDistribution's 1,000, FixedSteps' 256),
  one Prober per detector; ``none`` runs no detector (standardising and the repeat check
  every detector pays once), ``all`` the defaults; ``box``: the client sends uniformly
  random points in the held-out rows' box (an extraction attacker), which keep growing
  DistanceDistribution's set of queries to its 1,000 rows (benign rows stop at 10-24);
- ``harden v1`` / ``harden v2``: a KServe v1 and an Open Inference v2 answer of 10 class
  probabilities, rounded to 3 decimals and cut to the top 1;
- ``defences``: ``Defences.judge`` and ``Defences.harden`` of a parsed 20-feature v1
  request under one Enforce policy with outliers (Flag), probing (all detectors, Alert)
  and response hardening at their defaults: the stage as the guard runs it.

The queries are distinct (a repeat costs less: it is skipped): each mixes two held-out
rows feature by feature (half from each; whole-number features stay whole), so they look
like benign traffic, nearly all in range. Next to them, in every batch, a control no
change touches: ``orjson.loads`` and ``orjson.dumps`` of the 20-feature request body.

Each revision runs in a worker of its own (its code from ``git archive``, as
``bench_review_cpu --against`` does), the workers taking turns batch by batch, the order
alternating each round, so that the machine's load (a CI run, 3-15 on 2 cores) hits them
alike. Read the ratios: per round, a check's time over the control's (the same process,
the same minute), and between revisions the median of the per-round ratios of those.
Every worker first runs fixed streams (benign, random points in the feature box, one-
feature sweeps) through fresh checks and prints a digest of every score, flag and alarm:
two revisions with the same digest gave identical outputs on them.

    .venv/bin/python -m bench.bench_defence_costs
    .venv/bin/python -m bench.bench_defence_costs --against HEAD~1 --rounds 20
    .venv/bin/python -m bench.bench_defence_costs --this HEAD --against 06f9a49 --only probing
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: Distinct queries a client sends before it is timed: every summary is full by then.
HISTORY = 1200
DETECTORS = ("DistanceDistribution", "Sweep", "OutlierShare", "Volume", "FixedSteps")
#: Seconds between one client's queries (the Volume detector's clock).
SPACING = 0.1
#: How many more calls the control makes than each check per batch.
CONTROL_REPEATS = 25
#: How far a benign query moves from one held-out row towards another (at most).
MIX = 0.3


# --- the worker: one revision's code ---------------------------------------------------


@dataclasses.dataclass
class Case:
    """One data set's outlier model, limits, and a pool of distinct benign queries."""

    name: str
    fitted: Any
    model: Any
    limits: Any
    pool: np.ndarray
    held_out: np.ndarray
    #: Uniformly random points in the held-out rows' box: an extraction attacker's queries.
    box: np.ndarray


def _case(name: str, data: np.ndarray, pool_size: int) -> Case:
    outliermodel = importlib.import_module("modelshield.guard.outliermodel")
    outlierscoring = importlib.import_module("modelshield.guard.outlierscoring")
    rng = np.random.default_rng(15)
    order = rng.permutation(data.shape[0])
    cut = int(0.7 * data.shape[0])
    train, held_out = data[order[:cut]], data[order[cut:]]
    names = [f"f{i}" for i in range(data.shape[1])]
    model = outliermodel.from_document(
        outliermodel.to_document(
            outliermodel.build({n: train[:, i].tolist() for i, n in enumerate(names)}, names)
        )
    )
    limits = outlierscoring.thresholds(model, 0.01)
    first = held_out[rng.integers(0, held_out.shape[0], pool_size)]
    second = held_out[rng.integers(0, held_out.shape[0], pool_size)]
    # A held-out row moved a little towards another: in distribution, yet distinct.
    pool = first + rng.uniform(0, MIX, (pool_size, 1)) * (second - first)
    if model.fitted.whole is not None:
        pool = np.where(model.fitted.whole, np.round(pool), pool)
    box = rng.uniform(held_out.min(axis=0), held_out.max(axis=0), (pool_size, data.shape[1]))
    return Case(name, model.fitted, model, limits, np.ascontiguousarray(pool), held_out, box)


def _cases(pool_size: int) -> list[Case]:
    from sklearn.datasets import load_breast_cancer, load_digits  # type: ignore[import-untyped]

    cancer = np.asarray(load_breast_cancer().data, dtype=np.float64)
    digits = np.asarray(load_digits().data, dtype=np.float64)
    return [
        _case("20", np.ascontiguousarray(cancer[:, :20]), pool_size),
        _case("30", cancer, pool_size),
        _case("64", digits, pool_size),
    ]


class Checks:
    """This revision's checks, each a function of a call count that runs that many."""

    def __init__(self, pool_size: int) -> None:
        import orjson

        self.outlierscoring = importlib.import_module("modelshield.guard.outlierscoring")
        self.probing = importlib.import_module("modelshield.guard.probing")
        self.hardening = importlib.import_module("modelshield.guard.hardening")
        self.defending = importlib.import_module("modelshield.guard.defending")
        self.cases = _cases(pool_size)
        self.orjson = orjson
        twenty = self.cases[0]
        self.request = orjson.dumps({"instances": [twenty.pool[0].tolist()]})
        self.checks: dict[str, Callable[[int], None]] = {"control": self._control}
        for case in self.cases:
            self.checks[f"outliers {case.name}"] = self._outliers(case)
        for case in self.cases:
            # An attacker's random points: nearly all flagged, each with its reason.
            self.checks[f"outliers box {case.name}"] = self._outliers(case, case.box)
        for case in self.cases:
            for detector in ("none", *DETECTORS, "all"):
                self.checks[f"probing {detector} {case.name}"] = self._probing(case, detector)
            # An attacker's random points keep growing PRADA's set (to 1,000 rows), where
            # benign rows soon stop (10-24 rows here).
            for detector in ("DistanceDistribution", "all"):
                name = f"probing {detector} box {case.name}"
                self.checks[name] = self._probing(case, detector, case.box)
        self.checks["harden v1"], self.checks["harden v2"] = self._hardening()
        self.checks["defences 20"] = self._defences(twenty)

    def _control(self, count: int) -> None:
        loads, dumps, body = self.orjson.loads, self.orjson.dumps, self.request
        for _ in range(count):
            dumps(loads(body))

    def _outliers(self, case: Case, queries: np.ndarray | None = None) -> Callable[[int], None]:
        score, flagged = self.outlierscoring.score, self.outlierscoring.flagged
        fitted, limits = case.fitted, case.limits
        pool = case.pool if queries is None else queries
        position = 0

        def run(count: int) -> None:
            nonlocal position
            for _ in range(count):
                rows = pool[position % len(pool)][None, :]
                position += 1
                flagged(fitted, limits, rows, [], score(fitted, rows, []))

        return run

    def _settings(self, detector: str, case: Case) -> Any:
        probing = self.probing
        if detector == "all":
            chosen = frozenset(probing.Detector)
        elif detector == "none":
            chosen = frozenset()
        else:
            chosen = frozenset({probing.Detector(detector)})
        return probing.Settings(detectors=chosen, outlier_rate=case.limits.held_out_rate)

    def _probing(
        self, case: Case, detector: str, queries: np.ndarray | None = None
    ) -> Callable[[int], None]:
        prober = self.probing.Prober(
            case.fitted.mean, case.fitted.std, self._settings(detector, case)
        )
        over = self.outlierscoring.over
        pool = case.pool if queries is None else queries
        marks = over(self.outlierscoring.score(case.fitted, pool, []), case.limits)
        position = 0

        def run(count: int) -> None:
            nonlocal position
            observe = prober.observe
            for _ in range(count):
                index = position % len(pool)
                observe(
                    "client", pool[index][None, :], position * SPACING, marks[index : index + 1]
                )
                position += 1

        run(HISTORY)
        return run

    def _answers(self) -> tuple[bytes, bytes]:
        probabilities = np.random.default_rng(7).dirichlet(np.ones(10)).tolist()
        v1 = self.orjson.dumps({"predictions": [probabilities]})
        v2 = self.orjson.dumps(
            {
                "model_name": "digits",
                "id": "0b9c",
                "outputs": [
                    {"name": "probabilities", "shape": [1, 10], "datatype": "FP32",
                     "data": probabilities},
                ],
            }
        )  # fmt: skip
        return v1, v2

    def _hardening(self) -> tuple[Callable[[int], None], Callable[[int], None]]:
        harden, hardening = self.hardening.harden, self.hardening.Hardening(3, 1)
        protocol = importlib.import_module("modelshield.api.v1alpha1.apiprotection").Protocol
        v1, v2 = self._answers()

        def run_v1(count: int) -> None:
            for _ in range(count):
                harden(v1, protocol.KSERVE_V1, hardening)

        def run_v2(count: int) -> None:
            for _ in range(count):
                harden(v2, protocol.OPEN_INFERENCE_V2, hardening)

        return run_v1, run_v2

    def _stage(self, case: Case) -> Any:
        apiprotection = importlib.import_module("modelshield.api.v1alpha1.apiprotection")
        policies = importlib.import_module("modelshield.api.v1alpha1.policies")
        decisions = importlib.import_module("modelshield.engine.decisions")
        outliermodel = importlib.import_module("modelshield.guard.outliermodel")
        prometheus_client = importlib.import_module("prometheus_client")
        block = apiprotection.ApiRequirements.model_validate(
            {"outliers": {}, "probing": {}, "responses": {"roundDecimals": 3, "topK": 1}}
        )
        ref = decisions.PolicyRef("ModelSecurityPolicy", "ml", "p")
        return self.defending.Defences(
            [(ref, policies.Enforcement.ENFORCE, block)],
            outliermodel.to_document(case.model),
            prometheus_client.CollectorRegistry(),
        )

    def _defences(self, case: Case) -> Callable[[int], None]:
        routes = importlib.import_module("modelshield.guard.routes")
        route = routes.parse("POST", "/v1/models/m:predict")
        stage = self._stage(case)
        answer = self._answers()[0]
        documents = [{"instances": [row.tolist()]} for row in case.pool]
        position = 0

        def run(count: int) -> None:
            nonlocal position
            judge, harden = stage.judge, stage.harden
            for _ in range(count):
                judge(
                    "apikey:client", route, documents[position % len(documents)], position * SPACING
                )
                harden(answer, route)
                position += 1

        run(HISTORY)
        return run

    def digest(self) -> str:
        """A digest of every score, flag and alarm on fixed streams, through fresh checks."""
        hashed = hashlib.sha256()
        rng = np.random.default_rng(1)
        for case in self.cases:
            low, high = case.held_out.min(axis=0), case.held_out.max(axis=0)
            sweep = np.repeat(case.held_out[:10], 40, axis=0)
            column = np.arange(sweep.shape[0]) // 40 % case.pool.shape[1]
            sweep[np.arange(sweep.shape[0]), column] = (
                np.tile(np.linspace(0, 1, 40), 10) * (high[column] - low[column]) + low[column]
            )
            streams = {
                "benign": case.pool[:1500],
                "random": rng.uniform(low, high, (600, low.size)),
                "sweep": sweep,
                "repeats": case.held_out[rng.integers(0, case.held_out.shape[0], 600)],
            }
            for name, stream in streams.items():
                scores = self.outlierscoring.score(case.fitted, stream, [])
                for part in (scores.excess, scores.distance, scores.residual):
                    hashed.update(np.ascontiguousarray(part).tobytes())
                found = self.outlierscoring.flagged(case.fitted, case.limits, stream, [], scores)
                hashed.update(repr(found).encode())
                marks = self.outlierscoring.over(scores, case.limits)
                for detector in ("all", *DETECTORS):
                    prober = self.probing.Prober(
                        case.fitted.mean, case.fitted.std, self._settings(detector, case)
                    )
                    for index in range(stream.shape[0]):
                        alarms = prober.observe(
                            name, stream[index][None, :], index * SPACING, marks[index : index + 1]
                        )
                        for alarm in alarms:
                            hashed.update(f"{index} {alarm}".encode())
                    # Two-row requests too: the per-request path of several queries.
                    if detector == "all":
                        prober = self.probing.Prober(
                            case.fitted.mean, case.fitted.std, self._settings(detector, case)
                        )
                        for index in range(0, stream.shape[0] - 1, 2):
                            alarms = prober.observe(
                                name, stream[index : index + 2], index * SPACING,
                                marks[index : index + 2],
                            )  # fmt: skip
                            hashed.update(f"{index} {alarms}".encode())
        protocol = importlib.import_module("modelshield.api.v1alpha1.apiprotection").Protocol
        for answer, kind in zip(
            self._answers(), (protocol.KSERVE_V1, protocol.OPEN_INFERENCE_V2), strict=True
        ):
            for decimals, top in ((3, 1), (None, 2), (2, None)):
                hashed.update(
                    self.hardening.harden(answer, kind, self.hardening.Hardening(decimals, top))
                )
        return hashed.hexdigest()[:16]


def work(requests: TextIO, answers: TextIO, pool_size: int, verify: bool) -> None:
    """Answer each line "N" with the CPU seconds per call of N calls of every check."""
    logging.disable(logging.CRITICAL)
    checks = Checks(pool_size)
    module = importlib.import_module("modelshield").__file__
    scoring = checks.outlierscoring
    flagged = {
        c.name: float(scoring.over(scoring.score(c.fitted, c.pool, []), c.limits).mean())
        for c in checks.cases
    }
    ready = {"module": module, "flagged": flagged, "digest": checks.digest() if verify else "-"}
    answers.write(json.dumps(ready) + "\n")
    answers.flush()
    for line in requests:
        name, count = line.split()
        selected = [n for n in checks.checks if n == "control" or name in ("*", *n.split())]
        spent = {}
        for check in selected:
            # The control costs ~1 us: 200 calls were too short a time to measure (two
            # workers' medians differed by a quarter), so it runs CONTROL_REPEATS times more.
            calls = int(count) * (CONTROL_REPEATS if check == "control" else 1)
            started = time.process_time()
            checks.checks[check](calls)
            spent[check] = (time.process_time() - started) / calls
        answers.write(json.dumps(spent) + "\n")
        answers.flush()


# --- the coordinator -------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    """One revision's worker and its per-round seconds per call, by check."""

    name: str
    process: subprocess.Popen[str]
    rounds: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def batch(self, only: str, count: int) -> dict[str, float]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{only} {count}\n")
        self.process.stdin.flush()
        result: dict[str, float] = json.loads(self.process.stdout.readline())
        return result


def extract(revision: str, directory: pathlib.Path) -> pathlib.Path:
    """The code of a git revision (its operator/ and webhooks/)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "operator", "webhooks"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def start(name: str, source: pathlib.Path, pool_size: int, verify: bool) -> Worker | None:
    """A worker with the code under ``source``; None when it did not start."""
    paths = [str(source / "operator"), str(source / "webhooks")]
    process = subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--role=worker",
         f"--pool={pool_size}", *(["--verify"] if verify else [])],
        cwd=source, env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        print(f"  {name}: the worker did not start (exit {process.wait()}); left out")
        return None
    ready = json.loads(line)
    shares = ", ".join(f"{k}: {v:.1%}" for k, v in ready["flagged"].items())
    print(f"  {name}: {ready['module']}; outputs digest {ready['digest']}; flagged {shares}")
    return Worker(name, process)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(workers: list[Worker]) -> None:
    """Per check: us per call and ratio to the control per worker; this / other."""
    names = list(workers[0].rounds[0])
    heading = "".join(f" | {w.name[:18]} us | x control" for w in workers)
    ratios = "".join(f" | {workers[0].name[:12]} / {w.name[:12]}" for w in workers[1:])
    print(f"\n{len(workers[0].rounds)} rounds; medians of per-round figures.")
    print(f"| check{heading}{ratios} |")
    print("|---" * (1 + 2 * len(workers) + len(workers) - 1) + "|")
    for name in names:
        cells = []
        relative = {}
        for worker in workers:
            per_call = [r[name] for r in worker.rounds]
            to_control = [r[name] / r["control"] for r in worker.rounds]
            relative[worker.name] = to_control
            cells.append(f" | {_median(per_call) * 1e6:.1f} | {_median(to_control):.1f}")
        for other in workers[1:]:
            this = relative[workers[0].name]
            pairs = [a / b for a, b in zip(this, relative[other.name], strict=True)]
            low, high = sorted(pairs)[len(pairs) // 4], sorted(pairs)[(3 * len(pairs)) // 4]
            cells.append(f" | {_median(pairs):.3f} ({low:.2f}-{high:.2f})")
        print(f"| {name}{''.join(cells)} |")


def run(arguments: argparse.Namespace) -> None:
    """Start the workers, take turns, print."""
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    pool_size = HISTORY + (arguments.rounds + 2) * arguments.calls + 100
    with tempfile.TemporaryDirectory(prefix="bench-defence-costs-") as scratch:
        directory = pathlib.Path(scratch)
        sources = [(arguments.this or "working tree", ROOT)]
        if arguments.this:
            sources = [(arguments.this, extract(arguments.this, directory / "this"))]
        for index, revision in enumerate(arguments.against):
            sources.append((revision, extract(revision, directory / f"against-{index}")))
        started = [start(n, s, pool_size, not arguments.no_verify) for n, s in sources]
        workers = [worker for worker in started if worker is not None]
        try:
            for worker in workers:  # warm-up
                worker.batch(arguments.only, arguments.calls // 4 or 1)
            for index in range(arguments.rounds):
                for worker in workers if index % 2 == 0 else workers[::-1]:
                    worker.rounds.append(worker.batch(arguments.only, arguments.calls))
        finally:
            for worker in workers:
                assert worker.process.stdin is not None
                worker.process.stdin.close()
                worker.process.wait(30)
    report(workers)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    """Parse arguments; be a worker, or run the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "worker"], default="bench")
    parser.add_argument("--this", default=None, help="a git revision instead of the working tree")
    parser.add_argument(
        "--against", action="append", default=[], help="a git revision to compare (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200, help="calls per check per batch")
    parser.add_argument(
        "--only",
        default="*",
        help="time only the checks with this word in their name (outliers, probing, harden, "
        "defences, 20, 64, FixedSteps...), and the control",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the outputs digest")
    parser.add_argument("--pool", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.role == "worker":
        work(sys.stdin, sys.stdout, arguments.pool, arguments.verify)
    else:
        run(arguments)


if __name__ == "__main__":
    main()
