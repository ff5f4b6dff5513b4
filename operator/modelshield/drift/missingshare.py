"""The missing-share test: missing values seen by the statistics that cannot see them.

Kolmogorov-Smirnov and Wasserstein measure gaps and distances along a feature's value
axis, and a missing value has no place on it (KS counts it below every value, where ten
missing rows of a hundred are a gap of 0.1, under its calibrated threshold; Wasserstein
leaves it out). With a declared false-alarm rate, a numeric feature whose alarm watches
one of them is therefore tested twice: its statistic against its calibrated null, and
its window's count of missing values against the reference's missing share. Both are in
the one Bonferroni family of the model: the feature's share ``alpha / F`` of the rate is
split, ``1 - WEIGHT`` to the statistic and ``WEIGHT`` to the missing count, and the
feature's p-value is ``min(1, p_statistic / (1 - WEIGHT), p_missing / WEIGHT)``, so that
the data-set p-value is still under the rate exactly when some alarm fires.

The missing count's null is exact, not simulated: the calibration draws a clean window's
missing share from the Dirichlet posterior of the reference's counts
(``calibration.posterior_weights``), whose missing slot is Beta(a, b), and a window of
``n`` rows then holds a beta-binomial count. Its upper tail is summed term by term from
the count (or its complement from below, for counts under the mean), in log space.

Why ``WEIGHT`` is a tenth, fixed before any evaluation: the statistic's threshold is read
off simulated windows, as many as five beyond its tail, so each point of the rate taken
from it costs simulation; a tenth costs 11 % more windows and moves its tail from
``alpha / F`` to ``0.9 alpha / F``. The missing count's tail is exact at any depth, and a
tenth of the feature's share changes the count it needs by little: for a reference
without missing values (285 rows, 30 features at 1 %) the test alarms from 3, 4 and 10
missing values in windows of 100, 250 and 1,000 rows with a tenth, from 2, 2 and 6 with
half (``critical``; tests/drift/test_missing_share.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from modelshield.drift import calibration, layouts, statistics

Statistic = statistics.Statistic
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

NAME = "MissingShare"
"""The label of the test in metrics, logs and Events (not a statistic of the API)."""
WEIGHT = 0.1
"""The missing count's part of each tested feature's share of the declared rate."""
BLIND = statistics.NUMERIC_ONLY
"""The statistics that cannot see missing values (their numeric features are tested)."""
CHUNK = 1024
"""Terms of the tail sum computed at a time."""
TABLED = 4096
"""At most this many p-values per feature kept for look-up (32 KiB)."""
NEGLIGIBLE = 40.0
"""A chunk whose largest term is e^-40 of the sum so far, and falling, ends the sum."""


def tails(statistic: Statistic, rate: float, features: int) -> tuple[float, float | None]:
    """The tails of a feature's statistic and of its missing count (None: not tested)."""
    share = rate / features
    if statistic in BLIND:
        return share * (1.0 - WEIGHT), share * WEIGHT
    return share, None


def smallest_tail(rate: float, features: int) -> float:
    """The smallest tail any statistic's null must resolve for a monitor at this rate."""
    return rate / features * (1.0 - WEIGHT)


def _log_pmf(count: FloatArray, n: int, a: float, b: float) -> FloatArray:
    result: FloatArray = (
        special.gammaln(n + 1.0)
        - special.gammaln(count + 1.0)
        - special.gammaln(n - count + 1.0)
        + special.betaln(count + a, n - count + b)
        - special.betaln(a, b)
    )
    return result


def _log_sum(start: int, stop: int, step: int, n: int, a: float, b: float) -> float:
    """log of the sum of the pmf from start towards stop (exclusive), by step (+1 or -1)."""
    total = -math.inf
    position = start
    previous_top = math.inf
    while (position < stop) if step > 0 else (position > stop):
        end = min(position + CHUNK, stop) if step > 0 else max(position - CHUNK, stop)
        counts = np.arange(position, end, step, dtype=np.float64)
        terms = _log_pmf(counts, n, a, b)
        top = float(terms.max())
        total = float(np.logaddexp(total, special.logsumexp(terms)))
        falling = terms[-1] <= terms[0] and top <= previous_top
        if falling and top < total - NEGLIGIBLE:
            break
        previous_top = top
        position = end
    return total


def upper_tail(count: int, n: int, a: float, b: float) -> float:
    """P(X >= count) for X beta-binomial(n, a, b): the missing count's p-value."""
    if count <= 0:
        return 1.0
    if count > n:
        return 0.0
    if count <= n * a / (a + b):
        below = math.exp(_log_sum(count - 1, -1, -1, n, a, b))
        return float(min(1.0, max(0.0, 1.0 - below)))
    return float(min(1.0, math.exp(_log_sum(count, n + 1, 1, n, a, b))))


def critical(n: int, a: float, b: float, tail: float) -> int:
    """The largest count whose p-value is over tail: more missing values alarm."""
    low, high = 0, n + 1  # upper_tail(low) > tail; upper_tail(high) = 0 <= tail
    while high - low > 1:
        middle = (low + high) // 2
        if upper_tail(middle, n, a, b) > tail:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class MissingShareTest:
    """The missing-share test of some features of a layout at one window size."""

    window: int
    tested: NDArray[np.bool_]
    """Per feature of the layout: tested (its alarm statistic cannot see missing values)."""
    a: FloatArray
    b: FloatArray
    """The Beta null of each feature's missing share (NaN where not tested)."""
    critical: IntArray
    """The most missing values a window may hold without alarming (-1 where not tested)."""
    tabled: IntArray
    """Per feature: p-values of counts up to this one are in ``table`` (-1: none)."""
    offsets: IntArray
    table: FloatArray
    """Every tested feature's p-values of 0, 1, ..., ``tabled`` missing values, one after
    the other from its offset: a window looks its p-values up (scipy's calls cost tens of
    microseconds a feature, a window's worth of counting at 100 rows); counts over the
    critical one past the table (drift) are summed when they occur."""

    thresholds: FloatArray
    """Alarm thresholds on the window's missing share (NaN where not tested): half a row
    above the critical count, so that a share over it is a count over it."""

    def p_values(self, missing_rate: FloatArray) -> FloatArray:
        """Each tested feature's missing count's p-value (NaN where not tested)."""
        indices = np.flatnonzero(self.tested)
        counts = np.rint(missing_rate[indices] * self.window).astype(np.int64)
        tabled = self.tabled[indices]
        found = self.table[self.offsets[indices] + np.minimum(counts, tabled)]
        for j in np.flatnonzero(counts > tabled):
            i = indices[j]
            found[j] = upper_tail(int(counts[j]), self.window, self.a[i], self.b[i])
        result = np.full(self.tested.shape, np.nan)
        result[indices] = found
        return result


def _tail_table(n: int, a: float, b: float, last: int) -> FloatArray:
    """P(X >= c) for c = 0, ..., last: the exact tail beyond, plus the terms summed back."""
    terms = np.exp(_log_pmf(np.arange(last + 1, dtype=np.float64), n, a, b))
    beyond = upper_tail(last + 1, n, a, b)
    table: FloatArray = np.minimum(1.0, beyond + np.cumsum(terms[::-1])[::-1])
    table[0] = 1.0
    return table


def build(
    layout: layouts.Layout, window: int, tested: NDArray[np.bool_], tail: float
) -> MissingShareTest:
    """The test of the features marked tested (numeric ones only), at this missing tail."""
    a = np.full(len(layout.names), np.nan)
    b = np.full(len(layout.names), np.nan)
    for group in layout.groups:
        alpha = calibration.posterior_weights(
            group.numeric, layout.reference.astype(np.float64)[group.slots]
        )
        a[group.features] = alpha[:, layouts.MISSING_SLOT]
        b[group.features] = alpha.sum(axis=1) - alpha[:, layouts.MISSING_SLOT]
    limits = np.full(len(layout.names), -1, dtype=np.int64)
    tabled = np.full(len(layout.names), -1, dtype=np.int64)
    offsets = np.zeros(len(layout.names), dtype=np.int64)
    tables: list[FloatArray] = []
    start = 0
    for i in np.flatnonzero(tested):
        limits[i] = critical(window, float(a[i]), float(b[i]), tail)
        tabled[i] = min(window, int(limits[i]) + 1, TABLED)
        tables.append(_tail_table(window, float(a[i]), float(b[i]), int(tabled[i])))
        offsets[i] = start
        start += tables[-1].size
    table = np.concatenate(tables) if tables else np.empty(0)
    thresholds = np.where(tested, (limits + 0.5) / window, np.nan)
    return MissingShareTest(window, tested.copy(), a, b, limits, tabled, offsets, table, thresholds)


def combined_p_values(
    statistic_p: FloatArray, missing_p: FloatArray, tested: NDArray[np.bool_]
) -> FloatArray:
    """Each feature's p-value in the family: min(1, p / (1 - WEIGHT), p_missing / WEIGHT).

    Untested features keep their statistic's p-value (NaN stays NaN).
    """
    both = np.minimum(statistic_p / (1.0 - WEIGHT), missing_p / WEIGHT)
    result: FloatArray = np.where(tested, np.minimum(1.0, both), statistic_p)
    return result
