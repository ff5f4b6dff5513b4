"""Confidence intervals for alarm rates measured on windows that are not independent.

An evaluation cell counts windows with an alarm. When every window is an independent draw
the count is binomial and the Clopper–Pearson interval is exact (conservative). Windows of
one split are not independent: they share the split's reference (and, drawn from one
held-out pool, often most of their rows: 20 windows of 250 from 284 rows share 88 % of
them, so they alarm together or not at all). Treating them as independent understates the
uncertainty many times over.

``interval`` is the Korn–Graubard interval for such clustered counts (Korn and Graubard
1998, the interval of survey statistics for proportions): Clopper–Pearson computed with
the *effective* number of windows ``n* = p (1 - p) / var(p)``, where ``var(p)`` is
estimated from the spread of the per-split alarm shares (splits are the independent
units), capped at the windows counted, and shrunk for the few degrees of freedom
(splits - 1). One window per split gives ``n* = n``: plain Clopper–Pearson.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """An alarm rate with its interval and how many independent windows it is worth."""

    alarms: int
    windows: int
    effective: float
    """Effective number of independent windows (Korn–Graubard); == windows when independent."""
    low: float
    high: float

    @property
    def rate(self) -> float:
        """Share of windows with an alarm."""
        return self.alarms / self.windows if self.windows else math.nan


def clopper_pearson(
    alarms: float, windows: float, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The exact binomial interval; real-valued counts allowed (effective sample sizes)."""
    if windows <= 0:
        return (0.0, 1.0)
    tail = (1.0 - confidence) / 2
    low = 0.0 if alarms <= 0 else float(stats.beta.ppf(tail, alarms, windows - alarms + 1))
    high = (
        1.0 if alarms >= windows else float(stats.beta.ppf(1 - tail, alarms + 1, windows - alarms))
    )
    return (low, high)


def effective_windows(alarms: Sequence[int], windows: Sequence[int]) -> float:
    """Korn–Graubard's effective sample size of per-split counts (splits independent).

    The variance of the overall rate is estimated as a ratio estimator over clusters (the
    splits); ``n* = p (1 - p) / var``, capped at the total count, then scaled by
    ``(t(n-1) / t(splits-1))**2`` for the splits' few degrees of freedom. No alarm at all
    (or all alarms) carries no spread to estimate: the total count is used, as Korn and
    Graubard do, which is right when each split holds one window and optimistic otherwise
    (the table says how many splits there were).
    """
    total = sum(windows)
    splits = len(windows)
    if total == 0:
        return 0.0
    rate = sum(alarms) / total
    if rate in (0.0, 1.0) or splits < 2 or splits == total:
        return float(total)  # one window per split: independent, plain Clopper–Pearson
    mean_size = total / splits
    residuals = [a - rate * w for a, w in zip(alarms, windows, strict=True)]
    variance = sum(r * r for r in residuals) / (splits - 1) / splits / mean_size**2
    if variance <= 0:
        return float(total)
    effective = min(float(total), rate * (1 - rate) / variance)
    tail = (1 - CONFIDENCE) / 2
    if total > 1:
        shrink = (stats.t.ppf(1 - tail, total - 1) / stats.t.ppf(1 - tail, splits - 1)) ** 2
        effective *= float(shrink)
    return effective


def interval(alarms: Sequence[int], windows: Sequence[int]) -> Estimate:
    """The rate of per-split counts with its Korn–Graubard Clopper–Pearson interval."""
    total_alarms, total = sum(alarms), sum(windows)
    effective = effective_windows(alarms, windows)
    rate = total_alarms / total if total else 0.0
    low, high = clopper_pearson(rate * effective, effective)
    return Estimate(total_alarms, total, effective, low, high)
