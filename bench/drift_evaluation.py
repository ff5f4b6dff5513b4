"""Drift monitor evaluation on real tabular data: false alarms and detection, not speed.

Data: scikit-learn's ``load_breast_cancer`` (569 rows, 30 features) and ``load_digits``
(1,797 rows, 64 features, 16-level pixel counts, several constant). One feature of each
is binarised (above its median: 1) so that a binary feature is watched too. For each of
``--splits`` random splits a reference of 285 rows (breast cancer) or 797 (digits) is
drawn and the profile built from it exactly as ``modelshield drift profile`` does; the
windows are drawn as ``--design`` says (``drift_designs``: ``disjoint``, the default,
cuts the held-out rows into windows that share no row; ``resampled`` draws reference and
windows from all rows with replacement; ``overlapping`` is the first evaluation's):

- clean windows;
- mean shift of 0.25 and 0.5 reference standard deviations on one feature (a random
  feature with more than 10 distinct values, per window);
- 10 % missing values on one random feature;
- a subpopulation selected by the label (breast cancer: benign only; digits: 0-4 only),
  drawn with replacement when fewer such rows are there than the window holds;
- the binary feature's rate raised by 30 points (zeros set to one).

Per statistic the thresholds are the monitor's calibrated ones for a declared
false-alarm rate (``--rate``, default 1 %) for the whole model; a window "alarms" when
any feature's score exceeds its threshold (what raises an alarm with the default
hysteresis on a fresh monitor; Bonferroni's data-set decision). KolmogorovSmirnov and
Wasserstein, as in the monitor since session 11, take nine tenths of each feature's
share of the rate and leave a tenth to the missing-share test (``missingshare``): a
window also alarms when a feature's missing share is over that test's threshold. The
null tables are simulated down to that smaller tail for every statistic, as
``modelshield drift profile`` stores them. The rows "harmonic mean
p" alarm when the harmonic mean p-value of the features' p-values is under the rate
(``drift_combinations``), a data-set decision measured and not adopted. The comparison is a per-column two-sample KS test on the
raw values (``scipy.stats.ks_2samp``'s asymptotic p-values, computed here for all columns
at once) with a Bonferroni correction at the same rate, as alibi-detect does by default;
it drops missing values.

Two oracle rows bound what binned statistics can do: the changed feature's score alone
against its threshold at the whole rate (no correction for the other features).

Every cell is printed with its 95 % interval: Clopper–Pearson on the effective number of
independent windows (Korn–Graubard, ``proportions``): the split is the independent unit,
so 300 overlapping windows from 15 splits count for far fewer than 300.

    .venv/bin/python bench/drift_evaluation.py --data breast_cancer --window 250 --splits 200
    .venv/bin/python bench/drift_evaluation.py --design resampled --splits 40 --windows 50
    .venv/bin/python bench/drift_evaluation.py --scenario clean ...   # false alarms only

Issue 18's fourth stop (docs/drift-monitoring.md), run as ``python -m bench.drift_evaluation``:
``--data breast_cancer --design resampled --splits 40 --windows 100 --window 250 --scenario
clean --scenario "mean 0.5σ" --seed 1801`` (159 CPU-s); ``--data breast_cancer --design
resampled --splits 80 --windows 100 --window 100 --scenario clean --seed 1802`` (231 CPU-s);
``--data digits --design resampled --splits 10 --windows 40 --window W --seed 18W`` for W
= 100, 250, 1000 (103-116 CPU-s each). The fifth stop (values off a discrete support)
re-ran those three digits commands unchanged (99-111 CPU-s each), so the references
and windows are the same; breast cancer keeps no support, its tables stand. The sixth
(chi-square's unseen term; the harmonic mean p-value measured) re-ran the three digits
commands and the three breast cancer ones above, plus ``--splits 20 --windows 50 --window
250 --seed 1803`` for the other breast cancer scenarios. Session 11 (the missing-share
test) re-ran the digits commands, breast cancer ``--window 250 --seed 1803``, ``--window
100 --seed 1804`` (20 x 50), ``--window 100 --scenario clean --seed 1802`` (80 x 100) and
``--window 250 --scenario clean --scenario "mean 0.5σ" --seed 1801`` (40 x 100), and the
same commands on the code before it where the docs compare the two.

The profiles are scored as the monitor scores them with ``falseAlarmRate``: adjacent thin
bins merged until each expects ``--least-expected`` rows of the window (the monitor's
``leastExpected``, default 10; ``modelshield.drift.binmerging``, the same function the
monitor and ``modelshield drift profile`` call). ``--least-expected 0`` scores the
profile's own bins, as the monitor did before the merge. Session 9 measured the merge
here first (its own copy, E = 5 and 10) with the digits commands above and ``--data
breast_cancer --design resampled --splits 20 --windows 50 --window W --seed 18xx`` (W =
100 with seed 1804, W = 250 with 1803); session 10 adopted it in the monitor and re-ran
them through ``binmerging``.

The calibrations dominate (one per split and window size; 30 features at 1 %: 15,000
simulated windows, about 3 CPU-s; 64 features: 32,000, about 8 CPU-s); scoring a window
takes milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from bench import drift_combinations, drift_designs, proportions
from bench.drift_designs import SCENARIOS, Data, Split
from modelshield.drift import (
    binmerging,
    calibration,
    layouts,
    missingshare,
    profiles,
    statistics,
    windows,
)

Statistic = statistics.Statistic
FloatArray = NDArray[np.float64]
KS_RAW = "KS raw + Bonferroni"
ORACLES = {
    Statistic.KOLMOGOROV_SMIRNOV: "oracle: KS, changed feature only, at the rate",
    Statistic.PSI: "oracle: PSI, changed feature only, at the rate",
}
"""Upper bounds of the binned tests: the changed feature's score alone against its
threshold at the whole rate, as if it were known which feature would drift (no
correction for the others; not a test the monitor can run). Clean windows: a random
feature's; the label subpopulation changes no single feature (no figure)."""

HARMONIC = {statistic: f"{statistic.value}, harmonic mean p" for statistic in Statistic}
"""The window alarms when the harmonic mean p-value of the features' p-values is under
the rate (``drift_combinations``): a data-set decision measured and not adopted (on
breast cancer at 100 rows KS's clean windows alarmed on 1.4 % [1.1-1.7] at 1 %)."""

Cell = tuple[int, str, str]
"""(window size, statistic or row name, scenario)."""


def _profile(
    reference: FloatArray, window: int, least: float = binmerging.DEFAULT_LEAST_EXPECTED
) -> profiles.Profile:
    """The profile the monitor of this window scores on: thin bins merged as it merges them."""
    features = tuple(
        profiles.build_numeric(f"f{j}", reference[:, j]) for j in range(reference.shape[1])
    )
    built = profiles.Profile(features=features, rows=reference.shape[0])
    return binmerging.for_window(built, window, least)


def _scores(layout: layouts.Layout, window: FloatArray) -> statistics.WindowScores:
    counter = windows.TumblingWindow(layout, window.shape[0])
    slots = windows.encode(layout, window, np.empty((window.shape[0], 0), dtype=np.intp))
    ((counts, sums),) = counter.add_rows(slots, window)
    return statistics.score(layout, counts, sums, bounded=True)  # as calibrated


def _ks_raw_gaps(
    reference: Sequence[FloatArray], window: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per column, the two-sample KS statistic and ``round(m n / (m + n))``."""
    gaps = np.empty(window.shape[1])
    sizes = np.empty(window.shape[1])
    for j, ours in enumerate(reference):
        theirs = np.sort(window[:, j][~np.isnan(window[:, j])])
        pooled = np.concatenate([ours, theirs])
        ours_cdf = np.searchsorted(ours, pooled, side="right") / ours.size
        theirs_cdf = np.searchsorted(theirs, pooled, side="right") / max(theirs.size, 1)
        gaps[j] = np.max(np.abs(ours_cdf - theirs_cdf))
        sizes[j] = ours.size * theirs.size / (ours.size + theirs.size)
    return gaps, np.round(sizes)


def ks_raw_p_values(reference: Sequence[FloatArray], window: FloatArray) -> FloatArray:
    """Per column, ``scipy.stats.ks_2samp(method="asymp")``'s p-value, missing values dropped.

    ``reference`` holds each column's sorted values. The statistic is the largest gap of
    the two empirical CDFs over the pooled values; the p-value Smirnov's asymptotic
    ``kstwo.sf(d, round(m n / (m + n)))``, as scipy has it, in one call for all columns
    (scipy's own call loops over the columns: 0.1 s a window of 30).
    """
    gaps, sizes = _ks_raw_gaps(reference, window)
    p_values: FloatArray = np.clip(stats.kstwo.sf(gaps, sizes), 0.0, 1.0)
    return p_values


def ks_raw_smallest_p_value(reference: Sequence[FloatArray], window: FloatArray) -> float:
    """The smallest of ``ks_raw_p_values``, from one ``kstwo.sf`` per distinct size.

    ``kstwo.sf`` falls with the gap at a given size, so the largest gap of each size has
    the smallest p-value; the evaluation needs only that (any column under the tail), and
    ``kstwo.sf`` is most of a window's cost (30 columns: 33 ms, 1 ms for one).
    """
    gaps, sizes = _ks_raw_gaps(reference, window)
    distinct = np.unique(sizes)
    largest = np.array([gaps[sizes == size].max() for size in distinct])
    return float(np.clip(stats.kstwo.sf(largest, distinct), 0.0, 1.0).min())


class Tally:
    """Alarms and windows per cell and split (the split is the independent unit)."""

    def __init__(self) -> None:
        self.alarms: dict[Cell, list[int]] = {}
        self.windows: dict[Cell, list[int]] = {}

    def open_split(self, cells: Sequence[Cell]) -> None:
        """Start a new split's counts for these cells."""
        for cell in cells:
            self.alarms.setdefault(cell, []).append(0)
            self.windows.setdefault(cell, []).append(0)

    def add(self, cell: Cell, alarm: bool) -> None:
        """One window of the current split."""
        self.alarms[cell][-1] += int(alarm)
        self.windows[cell][-1] += 1

    def estimate(self, cell: Cell) -> proportions.Estimate:
        """The cell's rate and its interval."""
        return proportions.interval(self.alarms[cell], self.windows[cell])


def _score_split(
    split: Split,
    size: int,
    per_split: int,
    rate: float,
    scenarios: Sequence[str],
    tally: Tally,
    rng: np.random.Generator,
    least: float = binmerging.DEFAULT_LEAST_EXPECTED,
) -> None:
    data = split.data
    features = data.values.shape[1]
    tail = rate / features
    profile = _profile(split.reference, size, least)
    layout = layouts.build(profile, profile.names)
    smallest = missingshare.smallest_tail(rate, features)
    nulls = calibration.calibrate(layout, size, tail=smallest, seed=int(rng.integers(1 << 31)))
    # As the monitor: KS and Wasserstein give a tenth of each feature's share of the rate
    # to the missing-share test (every feature here is numeric).
    thresholds: dict[Statistic, FloatArray] = {}
    missing_tests: dict[Statistic, missingshare.MissingShareTest] = {}
    for statistic in Statistic:
        statistic_tail, missing_tail = missingshare.tails(statistic, rate, features)
        thresholds[statistic] = nulls[statistic].thresholds(statistic_tail)
        if missing_tail is not None:
            tested = np.ones(len(layout.names), dtype=bool)
            missing_tests[statistic] = missingshare.build(layout, size, tested, missing_tail)
    uncorrected = {s: nulls[s].thresholds(rate) for s in ORACLES}
    sorted_reference = [np.sort(column[~np.isnan(column)]) for column in split.reference.T]
    names = [*(s.value for s in Statistic), *HARMONIC.values(), KS_RAW, *ORACLES.values()]
    tally.open_split([(size, name, scenario) for name in names for scenario in scenarios])
    count = split.windows_per_cell(size, per_split)
    for scenario in scenarios:
        for window, feature in drift_designs.windows(scenario, split, size, count, rng):
            scored = _scores(layout, window)
            scores = scored.scores
            if feature is not None:
                at = layout.names.index(f"f{feature}")
                for statistic, name in ORACLES.items():
                    over = scores[statistic][at] > uncorrected[statistic][at]
                    tally.add((size, name, scenario), bool(over))
            for statistic in Statistic:
                over = scores[statistic] > thresholds[statistic]
                p_values = nulls[statistic].p_values(scores[statistic])
                test = missing_tests.get(statistic)
                if test is not None:
                    over |= scored.missing_rate > test.thresholds
                    p_values = missingshare.combined_p_values(
                        p_values, test.p_values(scored.missing_rate), test.tested
                    )
                tally.add((size, statistic.value, scenario), bool(np.any(over)))
                combined = drift_combinations.harmonic_p_value(p_values, len(layout.names))
                tally.add((size, HARMONIC[statistic], scenario), combined < rate)
            smallest = ks_raw_smallest_p_value(sorted_reference, window)
            tally.add((size, KS_RAW, scenario), smallest < tail)


def evaluate(
    data: Data,
    design: str,
    splits: int,
    per_split: int,
    rate: float,
    seed: int,
    scenarios: Sequence[str] = SCENARIOS,
    least: float = binmerging.DEFAULT_LEAST_EXPECTED,
) -> tuple[Tally, float]:
    """Count alarms per cell over the splits; also the CPU-seconds it took."""
    rng = np.random.default_rng(seed)
    tally = Tally()
    started = time.process_time()
    for _ in range(splits):
        split = drift_designs.split(design, data, rng)
        for size in data.window_sizes:
            _score_split(split, size, per_split, rate, scenarios, tally, rng, least)
    return tally, time.process_time() - started


def _cell(estimate: proportions.Estimate, effective: bool) -> str:
    text = f"{estimate.rate:.1%} [{estimate.low:.1%}–{estimate.high:.1%}]"
    if effective:
        text += f" n*={estimate.effective:.0f}"
    return text


def report(
    data: Data, design: str, tally: Tally, rate: float, seconds: float, scenarios: Sequence[str]
) -> None:
    """Print one table per window size: share of windows with any alarm and its interval."""
    splits = len(next(iter(tally.windows.values())))
    print(
        f"\n{data.name} ({design} design): {data.values.shape[0]} rows, "
        f"{data.values.shape[1]} features (feature f{data.binary} binarised), reference "
        f"{data.reference_rows} rows, {splits} splits; declared false-alarm rate {rate:.0%} "
        f"per window for the model; {seconds:.0f} CPU-s"
    )
    print(
        "share of windows with any alarm [95 % Clopper–Pearson on the effective number of "
        "independent windows, Korn–Graubard]; n* = that number (clean column)"
    )
    names = [*(s.value for s in Statistic), *HARMONIC.values(), KS_RAW, *ORACLES.values()]
    for size in data.window_sizes:
        counted = sum(tally.windows[size, names[0], scenarios[0]])
        print(f"\nwindow {size} ({counted} windows per cell)")
        print("| statistic | " + " | ".join(scenarios) + " |")
        print("|---|" + "---|" * len(scenarios))
        for name in names:
            cells = [
                "–"
                if name in ORACLES.values() and scenario == "label subpop."
                else _cell(tally.estimate((size, name, scenario)), scenario == "clean")
                for scenario in scenarios
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")


def parser() -> argparse.ArgumentParser:
    """The command line: by default independent windows (disjoint, one per split)."""
    result = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    result.add_argument("--design", choices=drift_designs.DESIGNS, default="disjoint")
    result.add_argument("--splits", type=int, default=100)
    result.add_argument(
        "--windows",
        type=int,
        default=1,
        help="windows per split and cell (disjoint: at most as fit)",
    )
    result.add_argument("--rate", type=float, default=0.01, help="declared false-alarm rate")
    result.add_argument("--seed", type=int, default=18)
    result.add_argument("--data", choices=["breast_cancer", "digits"], action="append")
    result.add_argument("--window", type=int, action="append", help="only these window sizes")
    result.add_argument("--scenario", choices=SCENARIOS, action="append", help="only these")
    result.add_argument(
        "--least-expected",
        type=float,
        default=binmerging.DEFAULT_LEAST_EXPECTED,
        help="merge adjacent bins until each expects this many rows of a window, as the "
        "monitor's leastExpected does (default: the monitor's; 0: the profile's bins)",
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and evaluate the data sets."""
    arguments = parser().parse_args(argv)
    scenarios = tuple(s for s in SCENARIOS if s in (arguments.scenario or SCENARIOS))
    for data in drift_designs.load():
        if arguments.data and data.name not in arguments.data:
            continue
        if arguments.window:
            sizes = tuple(s for s in data.window_sizes if s in arguments.window)
            data = dataclasses.replace(data, window_sizes=sizes)
        tally, seconds = evaluate(
            data,
            arguments.design,
            arguments.splits,
            arguments.windows,
            arguments.rate,
            arguments.seed,
            scenarios,
            arguments.least_expected,
        )
        report(data, arguments.design, tally, arguments.rate, seconds, scenarios)
        print(
            f"\nbins: merged until each expects {arguments.least_expected:g} rows of the window "
            "(the monitor's leastExpected)"
            if arguments.least_expected > 0
            else "\nbins: the profiles' own (--least-expected 0)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
