"""Evaluation of the guard's model-aware defences on real data (issue 15). Not a timed test.

    .venv/bin/python -m bench.runtime_defences_evaluation [--quick]
    .venv/bin/python -m bench.runtime_defences_evaluation --outliers-only [--analysis] [--splits 200] [--planted]

Data: scikit-learn's bundled breast cancer (569 x 30) and digits (1797 x 64), split 70/30
(seeded); the served model is a logistic regression trained on the 70%, the outlier model
is built from the same 70% (as `modelshield drift profile` does), the 30% is held out.

Tables:
1. Outliers: flagged share of held-out real rows at the declared falseFlagRate; rows with
   one feature moved past the training range by a share of its span; rows with Gaussian
   noise of growing size (in reference standard deviations), with the AUROC of the
   largest of the normalised scores (range, residual, distance) against the clean rows.
   ``--outliers-only`` runs these alone; ``--analysis`` adds the per-feature range analysis
   (``bench.outlier_analysis``), ``--splits N`` the 0.01 false-flag rate over N random
   splits with its intervals, the candidate calibrations (``bench.outlier_calibration``)
   and the detection curve by distance, ``--planted`` the calibrations on planted Gaussian
   rows.
2. Probing: 50 benign clients replaying held-out rows in random order (5,000 queries),
   and 50 whose queries are all distinct (held-out rows with noise of 0.05 std, or moved
   up to 0.3 of the way towards another; 5,000 queries); 50 attackers of each kind (1,000 queries): uniformly random points in the feature box,
   Jacobian-based augmentation (PRADA's JbDA, steps of 0.1 std along the sign of a
   logistic surrogate's gradient) from 10 real seeds, also in the attacker's own scale and
   with noise added to each query (10% and 50% of the step), one-feature sweeps from real seeds,
   and a mix of real rows and random points; and noisy steps around 10 real seeds (one
   random-sign step of 0.1 std plus noise of up to half a step: the issue 15 review's
   attacker inside PRADA's near-duplicate radius). Detectors at their defaults (Volume off:
   the queries carry no timing).
3. Hardening: a surrogate trained on 1,000 random-box queries answered with full
   probabilities vs top-1 labels; its agreement with the served model on held-out rows.
4. Cost: microseconds per request (one row) of scoring, probing observation, hardening.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits  # type: ignore[import-untyped]
from sklearn.linear_model import LinearRegression, LogisticRegression  # type: ignore[import-untyped]
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from bench import outlier_analysis, outlier_calibration
from modelshield.api.v1alpha1.apiprotection import Protocol
from modelshield.guard import hardening, outliermodel, outlierscoring, probing

RATES = (0.01, 0.05)
#: Whether PRADA leaves out near-duplicates (the outlier model's radius, as the guard does);
#: ``--no-near-duplicates`` measures it as before.
NEAR_DUPLICATES = True
#: How many near-duplicates of one growing row PRADA leaves out per window
#: (``--near-duplicates-per-row``; the guard's default unless given).
NEAR_DUPLICATES_PER_ROW = probing.NEAR_DUPLICATES_PER_ROW


class Case:
    """One dataset, split, model and outlier model."""

    def __init__(self, name: str, data: Any) -> None:
        self.name = name
        self.train, self.test, self.y_train, self.y_test = train_test_split(
            data.data, data.target, test_size=0.3, random_state=0
        )
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        self.model.fit(self.train, self.y_train)
        names = [f"f{i}" for i in range(self.train.shape[1])]
        columns = {n: self.train[:, i].tolist() for i, n in enumerate(names)}
        self.outliers = outliermodel.from_document(
            outliermodel.to_document(outliermodel.build(columns, names, near_duplicates=True))
        )
        self.fitted = self.outliers.fitted
        self.low, self.high = self.train.min(0), self.train.max(0)


def _flags(case: Case, limits: outlierscoring.Thresholds, rows: np.ndarray) -> np.ndarray:
    scores = outlierscoring.score(case.fitted, rows, [])
    return outlierscoring.over(scores, limits)


def outlier_table(case: Case) -> None:
    rng = np.random.default_rng(1)
    span = np.where(case.high > case.low, case.high - case.low, 1.0)
    print(f"\n## Outliers: {case.name} ({len(case.test)} held-out rows)")
    print(
        "| declared rate | held-out flagged (calibration) | held-out real rows flagged |"
        " moved +10% span | +50% | +100% |"
    )
    print("|---|---|---|---|---|---|")
    for rate in RATES:
        limits = outlierscoring.thresholds(case.outliers, rate)
        benign = _flags(case, limits, case.test).mean()
        moved = []
        for share in (0.1, 0.5, 1.0):
            rows = case.test.copy()
            column = rng.integers(0, rows.shape[1], len(rows))
            up = rng.random(len(rows)) < 0.5
            index = np.arange(len(rows))
            rows[index, column] = np.where(
                up,
                case.high[column] + share * span[column],
                case.low[column] - share * span[column],
            )
            moved.append(_flags(case, limits, rows).mean())
        print(
            f"| {rate:g} | {limits.held_out_rate:.2%} | {benign:.2%} | "
            + " | ".join(f"{m:.1%}" for m in moved)
            + " |"
        )
    limits = outlierscoring.thresholds(case.outliers, 0.01)
    std = np.where(case.fitted.std > 0, case.fitted.std, 1.0)
    clean = outlierscoring.score(case.fitted, case.test, [])
    print("\n| Gaussian noise (std units) | flagged at 0.01 | AUROC vs clean |")
    print("|---|---|---|")
    for sigma in (0.1, 0.25, 0.5, 1.0, 2.0):
        noisy = case.test + rng.normal(0, sigma, case.test.shape) * std
        scored = outlierscoring.score(case.fitted, noisy, [])
        both = np.concatenate([_combined(clean, limits), _combined(scored, limits)])
        labels = np.r_[np.zeros(len(case.test)), np.ones(len(noisy))]
        print(
            f"| {sigma:g} | {_flags(case, limits, noisy).mean():.1%} | "
            f"{roc_auc_score(labels, both):.3f} |"
        )


def _combined(scores: outlierscoring.Scores, limits: outlierscoring.Thresholds) -> np.ndarray:
    excess = np.minimum(scores.excess, 1e6) / max(limits.excess, 1e-9)
    distance = scores.distance / max(limits.distance, 1e-9)
    residual = scores.residual / max(limits.residual, 1e-9)  # 0 without a residual limit
    return np.asarray(np.maximum.reduce([excess, distance, residual]))


def _first_alarm(
    case: Case, queries: np.ndarray, limits: outlierscoring.Thresholds
) -> tuple[int, str] | None:
    settings = probing.Settings(
        detectors=frozenset(set(probing.Detector) - {probing.Detector.VOLUME}),
        outlier_rate=limits.held_out_rate,
        near_duplicate=case.outliers.near_duplicate if NEAR_DUPLICATES else 0.0,
        near_duplicates_per_row=NEAR_DUPLICATES_PER_ROW,
    )
    prober = probing.Prober(case.fitted.mean, case.fitted.std, settings)
    marks = _flags(case, limits, queries)
    for index in range(len(queries)):
        alarms = prober.observe("c", queries[index : index + 1], 0.0, marks[index : index + 1])
        if alarms:
            return index + 1, alarms[0].detector.value
    return None


def _jbda(
    case: Case,
    rng: np.random.Generator,
    count: int,
    *,
    own_scale: bool = False,
    noise: float = 0.0,
) -> np.ndarray:
    """Papernot et al.'s augmentation from 10 held-out seeds: each round every point so far
    moves 0.1 of a scale along the sign of a logistic surrogate's gradient. The scale is the
    profile's standard deviation (the guard's own units), or with ``own_scale`` the
    attacker's estimate from its seeds (1 where they do not vary). ``noise`` > 0 adds
    uniform noise of up to that share of the step to every query sent (not to the points
    the attacker keeps): query blinding against the fixed-step signature."""
    queries = list(case.test[rng.choice(len(case.test), 10, replace=False)])
    std = np.where(case.fitted.std > 0, case.fitted.std, 1.0)
    if own_scale:
        spread = np.asarray(queries).std(axis=0)
        std = np.where(spread > 0, spread, 1.0)
    while len(queries) < count:
        points = np.asarray(queries)
        labels = case.model.predict(points)
        if len(set(labels)) < 2:
            direction = np.sign(rng.normal(size=(1, points.shape[1])))
            steps = np.repeat(direction, len(points), axis=0)
        else:
            surrogate = LogisticRegression(max_iter=500).fit(points / std, labels)
            weights = surrogate.coef_
            steps = np.sign(weights[np.searchsorted(surrogate.classes_, labels) % len(weights)])
        queries.extend(np.clip(points + 0.1 * std * steps, case.low, case.high))
    sent = np.asarray(queries[:count])
    if noise > 0:
        sent = sent + rng.uniform(-noise, noise, sent.shape) * 0.1 * std
        sent = np.clip(sent, case.low, case.high)
    return sent


def _sweep(case: Case, rng: np.random.Generator, count: int) -> np.ndarray:
    queries: list[np.ndarray] = []
    while len(queries) < count:
        seed = case.test[rng.integers(len(case.test))]
        feature = rng.integers(seed.size)
        for value in np.linspace(case.low[feature], case.high[feature], 20):
            query = seed.copy()
            query[feature] = value
            queries.append(query)
    return np.asarray(queries[:count])


def _jittered(case: Case, rng: np.random.Generator, count: int) -> np.ndarray:
    """Held-out rows drawn at random, each with Gaussian noise of 0.05 profile std per feature."""
    rows = case.test[rng.integers(0, len(case.test), count)]
    std = np.where(case.fitted.std > 0, case.fitted.std, 1.0)
    return np.asarray(rows + rng.normal(0.0, 0.05, rows.shape) * std)


def _mixed_up(case: Case, rng: np.random.Generator, count: int) -> np.ndarray:
    """Held-out rows each moved up to 0.3 of the way towards another held-out row (as the
    guard's CPU benchmark's benign client, ``bench.guardprocesses.defence_queries``)."""
    first = rng.integers(0, len(case.test), count)
    second = (first + rng.integers(1, len(case.test), count)) % len(case.test)
    share = rng.uniform(0.0, 0.3, (count, 1))
    return np.asarray(case.test[first] + share * (case.test[second] - case.test[first]))


def _noisy_steps_around_seeds(case: Case, rng: np.random.Generator, count: int) -> np.ndarray:
    """An extraction attacker exploring around 10 held-out seeds without JbDA's surrogate:
    after the seeds, each query is one of them (in turn) moved one step of 0.1 profile std
    per feature along a random sign, plus uniform noise of up to half a step (the security
    review of issue 15). Every query lies ~0.55-0.65 standard units from its seed."""
    seeds = case.test[rng.choice(len(case.test), 10, replace=False)]
    std = np.where(case.fitted.std > 0, case.fitted.std, 1.0)
    sent = [*seeds]
    while len(sent) < count:
        seed = seeds[len(sent) % 10]
        step = 0.1 * std * np.sign(rng.normal(size=seed.size))
        noise = rng.uniform(-0.5, 0.5, seed.size) * 0.1 * std
        sent.append(np.clip(seed + step + noise, case.low, case.high))
    return np.asarray(sent)


def probing_table(case: Case, clients: int, only_kinds: list[str] | None = None) -> None:
    rng = np.random.default_rng(2)
    limits = outlierscoring.thresholds(case.outliers, 0.01)
    kinds: dict[str, tuple[int, Callable[[], np.ndarray]]] = {
        "benign (held-out rows, random order)": (
            5000,
            lambda: case.test[rng.integers(0, len(case.test), 5000)],
        ),
        "random points in the feature box": (
            1000,
            lambda: rng.uniform(case.low, case.high, (1000, case.low.size)),
        ),
        "JbDA augmentation from 10 seeds": (1000, lambda: _jbda(case, rng, 1000)),
        "JbDA, the attacker's own scale (its seeds' spread)": (
            1000,
            lambda: _jbda(case, rng, 1000, own_scale=True),
        ),
        "JbDA + noise up to 10% of the step": (1000, lambda: _jbda(case, rng, 1000, noise=0.1)),
        "JbDA + noise up to 50% of the step": (1000, lambda: _jbda(case, rng, 1000, noise=0.5)),
        "one-feature sweeps": (1000, lambda: _sweep(case, rng, 1000)),
        "mixed: half real rows, half random": (
            1000,
            lambda: np.where(
                rng.random((1000, 1)) < 0.5,
                case.test[rng.integers(0, len(case.test), 1000)],
                rng.uniform(case.low, case.high, (1000, case.low.size)),
            ),
        ),
        # Last, so the kinds above draw the same numbers as before. Benign clients whose
        # queries are all distinct: a real client rarely sends the same row twice, and
        # probing skips exact repeats, so a replay of a few hundred rows shows the
        # detectors only that many queries.
        "benign, distinct: held-out rows + N(0, 0.05 sd) noise": (
            5000,
            lambda: _jittered(case, rng, 5000),
        ),
        "benign, distinct: held-out rows moved up to 0.3 towards another": (
            5000,
            lambda: _mixed_up(case, rng, 5000),
        ),
        # After the kinds above, which draw the same numbers as before it.
        "noisy steps around 10 seeds (random signs, 0.1 sd + up to 50% noise)": (
            1000,
            lambda: _noisy_steps_around_seeds(case, rng, 1000),
        ),
    }
    if only_kinds:
        kinds = {kind: made for kind, made in kinds.items() if any(k in kind for k in only_kinds)}
    radius = case.outliers.near_duplicate if NEAR_DUPLICATES else 0.0
    print(f"\n## Probing: {case.name} ({clients} clients of each kind)")
    print(
        f"PRADA's near-duplicate radius: {radius:.3f} standard units"
        + (
            f", at most {NEAR_DUPLICATES_PER_ROW} left out per growing row in the last "
            "1,000 queries"
            if radius > 0
            else " (every query tested)"
        )
    )
    print(
        "| client kind | queries each | flagged | median queries to alarm | max | first detector |"
    )
    print("|---|---|---|---|---|---|")
    for kind, (count, make) in kinds.items():
        found = [_first_alarm(case, make(), limits) for _ in range(clients)]
        hits = sorted(f[0] for f in found if f is not None)
        detectors = collections.Counter(f[1] for f in found if f is not None)
        median = f"{hits[len(hits) // 2]}" if hits else "-"
        named = ", ".join(f"{name} {n}" for name, n in detectors.most_common())
        print(
            f"| {kind} | {count} | {len(hits)}/{clients} | {median} | "
            f"{hits[-1] if hits else '-'} | {named or '-'} |"
        )


def hardening_table(case: Case) -> None:
    rng = np.random.default_rng(3)
    queries = rng.uniform(case.low, case.high, (1000, case.low.size))
    probabilities = case.model.predict_proba(queries)
    served = case.model.predict(case.test)
    scaler = StandardScaler().fit(queries)
    # Full probabilities: regress the served log-odds (softmax logits up to a constant).
    logits = np.log(np.clip(probabilities, 1e-12, 1))
    regressor = LinearRegression().fit(scaler.transform(queries), logits)
    full = case.model.classes_[regressor.predict(scaler.transform(case.test)).argmax(1)]
    labels = case.model.classes_[probabilities.argmax(1)]
    if len(set(labels)) > 1:
        top1 = LogisticRegression(max_iter=2000).fit(scaler.transform(queries), labels)
        top1_agree = (top1.predict(scaler.transform(case.test)) == served).mean()
    else:
        top1_agree = (labels[0] == served).mean()
    one = hardening.harden(
        json.dumps({"predictions": probabilities[:1].tolist()}).encode(),
        Protocol.KSERVE_V1,
        hardening.Hardening(top_k=1),
    )
    print(f"\n## Hardening: {case.name} (surrogate from 1,000 random-box queries)")
    print("| answers | surrogate agreement with the served model on held-out rows |")
    print("|---|---|")
    print(f"| full probabilities | {(full == served).mean():.1%} |")
    print(f"| top-1 only (e.g. {one.decode()[:60]}) | {top1_agree:.1%} |")


def cost_table(case: Case) -> None:
    limits = outlierscoring.thresholds(case.outliers, 0.01)
    prober = probing.Prober(
        case.fitted.mean, case.fitted.std, probing.Settings(outlier_rate=limits.held_out_rate)
    )
    rows = case.test
    body = json.dumps({"predictions": [[0.1, 0.9]]}).encode()
    hard = hardening.Hardening(2, 1)
    repeats = 2000
    timings = {}
    started = time.perf_counter()
    for i in range(repeats):
        outlierscoring.score(case.fitted, rows[i % len(rows)][None, :], [])
    timings["outlier score"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(repeats):
        prober.observe("c", rows[i % len(rows)][None, :] + i * 1e-9, i * 0.01)
    timings["probing observe (all detectors)"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        hardening.harden(body, Protocol.KSERVE_V1, hard)
    timings["hardening"] = time.perf_counter() - started
    print(f"\n## Cost: {case.name} ({case.low.size} features, one row per request)")
    print("| check | microseconds per request |")
    print("|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds / repeats * 1e6:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 clients per kind, not 50")
    parser.add_argument("--only", choices=["breast_cancer", "digits"])
    parser.add_argument(
        "--probing-only", action="store_true", help="only the probing table (the slow one)"
    )
    parser.add_argument(
        "--kinds", help="probing client kinds whose name contains one of these (comma-separated)"
    )
    parser.add_argument(
        "--outliers-only", action="store_true", help="only the outlier tables (seconds)"
    )
    parser.add_argument(
        "--analysis",
        action="store_true",
        help="with the outlier tables: the per-feature range analysis (bench.outlier_analysis)",
    )
    parser.add_argument(
        "--planted",
        action="store_true",
        help="with the outlier tables: the calibrations on planted Gaussian rows",
    )
    parser.add_argument(
        "--splits",
        type=int,
        default=0,
        metavar="N",
        help="with the outlier tables: the 0.01 row again over N random 70/30 splits",
    )
    parser.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="PRADA tests every query, near-duplicates too (as before the radius)",
    )
    parser.add_argument(
        "--near-duplicates-per-row",
        type=int,
        default=probing.NEAR_DUPLICATES_PER_ROW,
        metavar="K",
        help="PRADA leaves out at most K near-duplicates of one growing row per window",
    )
    arguments = parser.parse_args()
    global NEAR_DUPLICATES, NEAR_DUPLICATES_PER_ROW
    NEAR_DUPLICATES = not arguments.no_near_duplicates
    NEAR_DUPLICATES_PER_ROW = arguments.near_duplicates_per_row
    clients = 10 if arguments.quick else 50
    if arguments.outliers_only and arguments.planted:
        outlier_calibration.planted()
    for name, loader in (("breast_cancer", load_breast_cancer), ("digits", load_digits)):
        if arguments.only and arguments.only != name:
            continue
        case = Case(name, loader())
        if arguments.outliers_only:
            outlier_table(case)
            if arguments.analysis:
                outlier_analysis.analysis(case)
                outlier_analysis.fractions(case)
            if arguments.splits:
                outlier_analysis.splits(name, loader(), arguments.splits)
            continue
        if not arguments.probing_only:
            outlier_table(case)
            hardening_table(case)
            cost_table(case)
        probing_table(case, clients, arguments.kinds.split(",") if arguments.kinds else None)


if __name__ == "__main__":
    main()
