"""Null distributions of the drift scores, so that alarms have a declared false-alarm rate.

A score compares a window of ``n`` live rows with a reference of ``N`` rows. When nothing
has drifted, both are samples of one distribution and the score is noise whose size
depends on ``n``, ``N``, the number of bins and how the reference mass is spread over
them; a fixed threshold is therefore too strict for one feature and too lax for another.

For each watched feature this module simulates that noise: it draws ``samples``
distributions the reference may have come from (the Dirichlet posterior of its counts),
a window of ``n`` rows from each, and scores each window against the reference itself
with the monitor's own statistics. So the calibration includes the reference's own
sampling noise (a 285-row reference is far noisier than a 20,000-row one), the floors of
PSI and chi-square, sparse and empty bins, the missing bin and values the reference never
saw. (Resampling the reference instead, and drawing the window from the reference
histogram, puts the noise on the wrong side: PSI's floored logarithms react to a window's
empty bin, not to a reference's thin one, and false alarms doubled.)

A simulated null distribution is summarised by a gamma distribution with the simulated
90th and 99th percentiles of a power of the score (``POWERS``); the gamma's upper
tail gives a p-value for any score and the threshold for any tail probability, including
the small ones that a correction for many features asks for (``alpha / features``), which
a few thousand samples could not resolve empirically. A feature whose simulated scores are
all equal (a constant feature) has a degenerate null: any larger score has p-value 0.

The data-set decision is Bonferroni's: with ``F`` features watched and a declared
false-alarm rate ``alpha`` per window for the whole model, each feature's threshold is its
null's ``1 - alpha / F`` quantile, and the data-set p-value is ``min(1, F * min p)``. This
holds whatever the correlation between features (it is conservative when they are
correlated). ``bench/drift_evaluation.py`` measures the rates on real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from modelshield.drift import layouts, statistics

Statistic = statistics.Statistic
FloatArray = NDArray[np.float64]

DEFAULT_SAMPLES = 2000
DEFAULT_SEED = 18
POWERS = {
    Statistic.PSI: 0.5,
    Statistic.KOLMOGOROV_SMIRNOV: 2.0,
    Statistic.CHI_SQUARE: 2.0,
    Statistic.JENSEN_SHANNON: 1.0,
    Statistic.WASSERSTEIN: 2.0,
}
"""The score is raised to this power before the gamma fit. Chi-square's w squared is a
chi-square over n, KS and Wasserstein squared have near-exponential tails; PSI's log ratio
gives it a heavier tail than a gamma of PSI itself (which, extrapolated from the 99th to
the 99.98th percentile, put the threshold of a 10-bin feature 25 % low and doubled the
false alarms), so PSI is fitted on its square root and the Jensen-Shannon distance (the
root of a divergence) as it is."""


@dataclass(frozen=True)
class NullFit:
    """The fitted null distribution of one statistic for each feature of a layout."""

    power: float
    shape: FloatArray
    """Gamma shape; NaN where the null is degenerate or the statistic does not apply."""
    scale: FloatArray
    maximum: FloatArray
    """The largest simulated score (the threshold of a degenerate null)."""

    def p_values(self, scores: FloatArray) -> FloatArray:
        """Upper-tail probability of each feature's score under its null (NaN: not applicable)."""
        transformed = np.power(np.maximum(scores, 0.0), self.power)
        fitted = np.isfinite(self.shape)
        result = np.full(scores.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            result[fitted] = special.gammaincc(
                self.shape[fitted], transformed[fitted] / self.scale[fitted]
            )
        degenerate = ~fitted & np.isfinite(self.maximum)
        result[degenerate] = np.where(
            scores[degenerate] > self.maximum[degenerate] * (1 + 1e-9) + 1e-12, 0.0, 1.0
        )
        result[~np.isfinite(scores)] = np.nan
        return result

    def thresholds(self, tail: float) -> FloatArray:
        """The score each feature exceeds with probability tail under its null."""
        fitted = np.isfinite(self.shape)
        result = np.full(self.shape.shape, np.nan)
        quantile = self.scale[fitted] * special.gammainccinv(self.shape[fitted], tail)
        result[fitted] = np.power(quantile, 1.0 / self.power)
        degenerate = ~fitted & np.isfinite(self.maximum)
        result[degenerate] = self.maximum[degenerate] * (1 + 1e-9) + 1e-12
        return result


TAIL_MATCHED = (0.1, 0.01)
"""The fit matches the simulated 90th and 99th percentiles (with 2,000 samples, 200 and 20
lie beyond them): the tail's own decay, not the bulk, sets the shape, and the thresholds
for small tail probabilities are extrapolated along it."""


def _fit(scores: FloatArray, power: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gamma shape and scale of scores**power per column (samples x features).

    The gamma has the simulated 90th and 99th percentiles: its shape solves
    ``Q(shape, 0.01) / Q(shape, 0.1) = q99 / q90`` (the ratio falls as the shape grows),
    found by bisection on the log of the shape, all features at once.
    """
    transformed = np.power(np.maximum(scores, 0.0), power)
    wide, narrow = TAIL_MATCHED
    lower = np.quantile(transformed, 1.0 - wide, axis=0)
    upper = np.quantile(transformed, 1.0 - narrow, axis=0)
    spread = (lower > 0) & (upper > lower * (1 + 1e-9))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(spread, upper / lower, np.nan)
    low = np.full(upper.shape, np.log(1e-3))
    high = np.full(upper.shape, np.log(1e5))
    for _ in range(60):
        middle = (low + high) / 2
        shape = np.exp(middle)
        too_wide = special.gammainccinv(shape, narrow) / special.gammainccinv(shape, wide) > ratio
        low = np.where(too_wide, middle, low)
        high = np.where(too_wide, high, middle)
    shape = np.where(spread, np.exp((low + high) / 2), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(spread, upper / special.gammainccinv(shape, narrow), np.nan)
        # Mostly zeros (a feature whose scores are 0 unless a rare value comes): the
        # percentiles cannot tell the tail; the moments still can.
        mean = transformed.mean(axis=0)
        variance = transformed.var(axis=0)
        moments = ~spread & (variance > (mean * 1e-12) ** 2 + 1e-300) & (mean > 0)
        shape = np.where(moments, mean**2 / variance, shape)
        scale = np.where(moments, variance / mean, scale)
    maximum = scores.max(axis=0)
    return shape, scale, maximum


def _plausible_truths(
    numeric: bool, reference: FloatArray, samples: int, rng: np.random.Generator
) -> FloatArray:
    """Distributions the reference may have been drawn from (samples x features x slots).

    Drawn from the Dirichlet posterior of the reference counts (half a row added to every
    present-value slot): the reference is one sample of N rows, and live rows come from
    the distribution, not from the reference. This is where a finite reference's noise
    enters: with 28 rows in a bin, its true share may well be 0.06 rather than 0.1, and a
    window of 100 rows then leaves it empty one time in 500, which PSI (floored logs) takes
    for a large drift.

    Also what the reference never saw: each live row falls below its minimum with
    probability 1 / (N + 1), above its maximum likewise (the rows are exchangeable), in a
    category it never saw with about the share of categories it saw once (Good and
    Turing), at least 1 / (N + 1). Leaving this out made a feature that is constant in the
    reference alarm at the first unseen value. A reference without missing values gets
    almost none (a missing value is then evidence of drift).
    """
    present = reference.sum(axis=1) - reference[:, layouts.MISSING_SLOT]
    novel_rows = present / (present + 1.0)
    alpha = reference + 0.5
    alpha[:, layouts.MISSING_SLOT] = np.where(
        reference[:, layouts.MISSING_SLOT] > 0, reference[:, layouts.MISSING_SLOT], 1e-3
    )
    if numeric:
        alpha[:, layouts.BELOW_SLOT] = novel_rows
        alpha[:, -1] = novel_rows
    else:
        seen_once = (reference[:, layouts.FIRST_CATEGORY_SLOT :] == 1).sum(axis=1)
        alpha[:, layouts.OTHER_SLOT] = reference[:, layouts.OTHER_SLOT] + np.maximum(
            novel_rows, seen_once
        )
        # Categories never seen in the reference (count 0 after a profile edit) stay rare.
        alpha[:, layouts.FIRST_CATEGORY_SLOT :] = np.where(
            reference[:, layouts.FIRST_CATEGORY_SLOT :] > 0,
            alpha[:, layouts.FIRST_CATEGORY_SLOT :],
            1e-3,
        )
    gammas = rng.standard_gamma(np.broadcast_to(alpha, (samples, *alpha.shape)))
    truths: FloatArray = gammas / gammas.sum(axis=2, keepdims=True)
    return truths


def calibrate(
    layout: layouts.Layout,
    window: int,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[Statistic, NullFit]:
    """The null fit of every statistic for every feature of the layout, at this window size."""
    rng = np.random.default_rng(seed)
    count = len(layout.names)
    fits = {
        statistic: (np.full(count, np.nan), np.full(count, np.nan), np.full(count, np.nan))
        for statistic in Statistic
    }
    reference_all = layout.reference.astype(np.float64)
    for group in layout.groups:
        reference = reference_all[group.slots]
        members = len(group.features)
        truths = _plausible_truths(group.numeric, reference, samples, rng)
        live = rng.multinomial(window, truths)
        slots = reference.shape[1]
        # Where the simulated unseen values sit (Wasserstein; the monitor puts them at their
        # own mean): beyond the extremes by the gap between the extreme and the mean of its
        # bin, the tail's own scale (a long tail has a wide last bin); by one standard
        # deviation where that gap is nil (a constant feature).
        beyond = group.positions.copy()
        if group.numeric:
            below = beyond[:, 1] - beyond[:, 0]
            above = beyond[:, -1] - beyond[:, -2]
            beyond[:, 0] -= np.where(below > 0, below, group.scales)
            beyond[:, -1] += np.where(above > 0, above, group.scales)
        positions = np.broadcast_to(beyond, (samples, *beyond.shape)).reshape(samples * members, -1)
        scales = np.broadcast_to(group.scales, (samples, members)).reshape(-1)
        scores = statistics.score_group(
            group.numeric,
            np.broadcast_to(reference, (samples, *reference.shape)).reshape(-1, slots),
            live.reshape(-1, slots).astype(np.float64),
            positions,
            scales,
        )
        for statistic, values in scores.items():
            shape, scale, maximum = _fit(values.reshape(samples, members), POWERS[statistic])
            fits[statistic][0][group.features] = shape
            fits[statistic][1][group.features] = scale
            fits[statistic][2][group.features] = maximum
    return {
        statistic: NullFit(POWERS[statistic], shape, scale, maximum)
        for statistic, (shape, scale, maximum) in fits.items()
    }


def dataset_p_value(p_values: FloatArray, features: int) -> float:
    """Bonferroni's data-set p-value: min(1, features x the smallest feature p-value).

    features counts every feature of the family (both streams of a model), which may be
    more than the p-values of one stream's window.
    """
    finite = p_values[np.isfinite(p_values)]
    if finite.size == 0:
        return 1.0
    return float(min(1.0, max(features, finite.size) * finite.min()))
