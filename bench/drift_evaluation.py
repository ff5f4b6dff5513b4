"""Drift monitor evaluation on real tabular data: false alarms and detection, not speed.

Data: scikit-learn's ``load_breast_cancer`` (569 rows, 30 features) and ``load_digits``
(1,797 rows, 64 features, 16-level pixel counts, several constant). One feature of each
is binarised (above its median: 1) so that a binary feature is watched too. For each of
``--splits`` random splits the reference is the first part of a permutation (285 rows of
breast cancer, 797 of digits) and the profile is built from it exactly as
``modelshield drift profile`` does; windows are drawn from the held-out rest:

- clean: ``--windows`` windows drawn without replacement from the held-out rows;
- mean shift of 0.25 and 0.5 reference standard deviations on one feature (a random
  feature with more than 10 distinct values, per window);
- 10 % missing values on one random feature;
- a subpopulation selected by the label (breast cancer: benign only; digits: 0-4 only),
  drawn with replacement when fewer such rows are held out than the window holds;
- the binary feature's rate raised by 30 points (zeros set to one).

Per statistic the thresholds are the monitor's calibrated ones for a declared
false-alarm rate (``--rate``, default 1 %) for the whole model; a window "alarms" when
any feature's score exceeds its threshold (what raises an alarm with the default
hysteresis on a fresh monitor). The comparison is a per-column two-sample KS test on the
raw values (``scipy.stats.ks_2samp``) with a Bonferroni correction at the same rate, as
alibi-detect does by default; it drops missing values.

Two oracle rows bound what binned statistics can do: the changed feature's score alone
against its threshold at the whole rate (no correction for the other features).

    .venv/bin/python bench/drift_evaluation.py               # 30 splits, tens of CPU-minutes
    .venv/bin/python bench/drift_evaluation.py --splits 5    # a quick look
    .venv/bin/python bench/drift_evaluation.py --data digits --window 250 --splits 6 --windows 20

The calibrations dominate (one per split and window size; 64 features at 1 %: 32,000
simulated windows each); the docs' figures: breast cancer 15 splits x 20 windows (290
CPU-s), digits 6 x 20 at window 250 (83 CPU-s) and 4 x 20 at 100 and 1,000 (130 CPU-s).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from sklearn import datasets as sklearn_datasets  # type: ignore[import-untyped]

from modelshield.drift import calibration, layouts, profiles, statistics, windows

Statistic = statistics.Statistic
FloatArray = NDArray[np.float64]
SCENARIOS = ("clean", "mean 0.25σ", "mean 0.5σ", "10% missing", "label subpop.", "binary +30pt")
KS_RAW = "KS raw + Bonferroni"
ORACLES = {
    Statistic.KOLMOGOROV_SMIRNOV: "oracle: KS, changed feature only, at the rate",
    Statistic.PSI: "oracle: PSI, changed feature only, at the rate",
}
"""Upper bounds of the binned tests: the changed feature's score alone against its
threshold at the whole rate, as if it were known which feature would drift (no
correction for the others; not a test the monitor can run). Clean windows: a random
feature's; the label subpopulation changes no single feature (no figure)."""


@dataclass(frozen=True)
class Data:
    """A data set with one binarised feature."""

    name: str
    values: FloatArray
    labels: NDArray[np.int64]
    binary: int
    reference_rows: int
    window_sizes: tuple[int, ...]
    subpopulation: Callable[[NDArray[np.int64]], NDArray[np.bool_]]


def load() -> list[Data]:
    """Breast cancer and digits, each with one feature binarised at its median."""
    result = []
    cancer = sklearn_datasets.load_breast_cancer()
    values = np.array(cancer.data, dtype=np.float64)
    values[:, 0] = (values[:, 0] > np.median(values[:, 0])).astype(np.float64)
    result.append(
        Data("breast_cancer", values, cancer.target, 0, 285, (100, 250), lambda y: y == 1)
    )
    digits = sklearn_datasets.load_digits()
    values = np.array(digits.data, dtype=np.float64)
    nonzero = (values > 0).mean(axis=0)
    binary = int(np.argmin(np.abs(nonzero - 0.5)))
    values[:, binary] = (values[:, binary] > 0).astype(np.float64)
    result.append(
        Data("digits", values, digits.target, binary, 797, (100, 250, 1000), lambda y: y < 5)
    )
    return result


def _profile(reference: FloatArray) -> profiles.Profile:
    features = tuple(
        profiles.build_numeric(f"f{j}", reference[:, j]) for j in range(reference.shape[1])
    )
    return profiles.Profile(features=features, rows=reference.shape[0])


def _scores(layout: layouts.Layout, window: FloatArray) -> dict[Statistic, FloatArray]:
    counter = windows.TumblingWindow(layout, window.shape[0])
    slots = windows.encode(layout, window, np.empty((window.shape[0], 0), dtype=np.intp))
    ((counts, sums),) = counter.add_rows(slots, window)
    return statistics.score(layout, counts, sums).scores


def _ks_alarm(reference: FloatArray, window: FloatArray, tail: float) -> bool:
    """Any column's two-sample KS p-value (missing values dropped) under tail."""
    # Vectorised over the columns: one call per window, not one per feature.
    policy = "omit" if np.isnan(window).any() else "propagate"
    result = stats.ks_2samp(reference, window, axis=0, method="asymp", nan_policy=policy)
    p_values = np.asarray(result.pvalue, dtype=np.float64)
    return bool(np.any(p_values < tail))


def _window(
    scenario: str,
    data: Data,
    reference: FloatArray,
    pool: NDArray[np.intp],
    size: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, int | None]:
    """A window of the scenario and the feature it changed (None: the label subpopulation)."""
    if scenario == "label subpop.":
        chosen = pool[data.subpopulation(data.labels[pool])]
        replace = chosen.size < size
        drawn: FloatArray = data.values[rng.choice(chosen, size, replace=replace)].copy()
        return drawn, None
    window: FloatArray = data.values[rng.choice(pool, size, replace=False)].copy()
    continuous = [
        j
        for j in range(window.shape[1])
        if j != data.binary and np.unique(reference[:, j]).size > 10
    ]
    feature = int(rng.choice(continuous))
    if scenario.startswith("mean"):
        sigma = 0.25 if "0.25" in scenario else 0.5
        window[:, feature] += sigma * reference[:, feature].std()
    elif scenario == "10% missing":
        feature = int(rng.integers(0, window.shape[1]))
        window[rng.choice(size, size // 10, replace=False), feature] = np.nan
    elif scenario == "binary +30pt":
        zeros = np.flatnonzero(window[:, data.binary] == 0)
        flip = min(zeros.size, round(0.3 * size))
        window[rng.choice(zeros, flip, replace=False), data.binary] = 1.0
        feature = data.binary
    return window, feature


def evaluate(
    data: Data, splits: int, per_split: int, rate: float, seed: int, sizes: Sequence[int] = ()
) -> None:
    """Print one table per window size: share of windows with any alarm, per scenario."""
    rng = np.random.default_rng(seed)
    if sizes:
        data = dataclasses.replace(
            data, window_sizes=tuple(s for s in data.window_sizes if s in sizes)
        )
    features = data.values.shape[1]
    tail = rate / features
    names = [*(s.value for s in Statistic), KS_RAW, *ORACLES.values()]
    alarms = {
        (size, name, scenario): 0
        for size in data.window_sizes
        for name in names
        for scenario in SCENARIOS
    }
    started = time.process_time()
    for _ in range(splits):
        order = rng.permutation(data.values.shape[0])
        reference = data.values[order[: data.reference_rows]]
        pool = order[data.reference_rows :]
        profile = _profile(reference)
        layout = layouts.build(profile, profile.names)
        for size in data.window_sizes:
            nulls = calibration.calibrate(layout, size, tail=tail, seed=int(rng.integers(1 << 31)))
            thresholds = {s: nulls[s].thresholds(tail) for s in Statistic}
            uncorrected = {s: nulls[s].thresholds(rate) for s in ORACLES}
            for scenario in SCENARIOS:
                for _ in range(per_split):
                    window, feature = _window(scenario, data, reference, pool, size, rng)
                    scores = _scores(layout, window)
                    if feature is not None:
                        at = layout.names.index(f"f{feature}")
                        for statistic, name in ORACLES.items():
                            over = scores[statistic][at] > uncorrected[statistic][at]
                            alarms[size, name, scenario] += int(over)
                    for statistic in Statistic:
                        over = scores[statistic] > thresholds[statistic]
                        alarms[size, statistic.value, scenario] += int(np.any(over))
                    alarms[size, KS_RAW, scenario] += int(_ks_alarm(reference, window, tail))
    seconds = time.process_time() - started
    windows_per_cell = splits * per_split
    print(
        f"\n{data.name}: {data.values.shape[0]} rows, {features} features (feature f{data.binary} "
        f"binarised), reference {data.reference_rows} rows, {splits} splits x {per_split} "
        f"windows per cell = {windows_per_cell}; declared false-alarm rate {rate:.0%} per "
        f"window for the model; {seconds:.0f} CPU-s"
    )
    error = 2 * np.sqrt(rate * (1 - rate) / windows_per_cell)
    print(
        f"share of windows with any alarm (clean: the false-alarm rate; 2 s.e. at {rate:.0%}: {error:.1%})"
    )
    for size in data.window_sizes:
        print(f"\nwindow {size}")
        print("| statistic | " + " | ".join(SCENARIOS) + " |")
        print("|---|" + "---|" * len(SCENARIOS))
        for name in names:
            cells = [
                "–"
                if name in ORACLES.values() and scenario == "label subpop."
                else f"{alarms[size, name, scenario] / windows_per_cell:.1%}"
                for scenario in SCENARIOS
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and evaluate both data sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--splits", type=int, default=30)
    parser.add_argument("--windows", type=int, default=4, help="windows per split and cell")
    parser.add_argument("--rate", type=float, default=0.01, help="declared false-alarm rate")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--data", choices=["breast_cancer", "digits"], action="append")
    parser.add_argument("--window", type=int, action="append", help="only these window sizes")
    arguments = parser.parse_args(argv)
    for data in load():
        if arguments.data and data.name not in arguments.data:
            continue
        evaluate(
            data,
            arguments.splits,
            arguments.windows,
            arguments.rate,
            arguments.seed,
            arguments.window or (),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
