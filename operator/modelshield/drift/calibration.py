"""Null distributions of the drift scores, so that alarms have a declared false-alarm rate.

A score compares a window of ``n`` live rows with a reference of ``N`` rows. When nothing
has drifted, both are samples of one distribution and the score is noise whose size
depends on ``n``, ``N``, the number of bins and how the reference mass is spread over
them; a fixed threshold is therefore too strict for one feature and too lax for another.

For each watched feature this module simulates that noise: it draws ``samples`` pairs
(reference of ``N`` rows, window of ``n`` rows) from the reference histogram, which is
what resampling the reference's rows with replacement and binning them gives, and scores
each pair with the monitor's own statistics. So the calibration includes the reference's
own sampling noise (a 285-row reference is far noisier than a 20,000-row one), the
floors of PSI and chi-square, sparse and empty bins, and the missing bin.

A simulated null distribution is summarised by a gamma distribution fitted by moments to
the score (PSI) or to its square (the others: chi-square's w, the Jensen-Shannon distance,
KS and Wasserstein behave like the root of a chi-square-like quantity); the gamma's upper
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
    Statistic.PSI: 1.0,
    Statistic.KOLMOGOROV_SMIRNOV: 2.0,
    Statistic.CHI_SQUARE: 2.0,
    Statistic.JENSEN_SHANNON: 2.0,
    Statistic.WASSERSTEIN: 2.0,
}
"""The score is raised to this power before the gamma fit."""


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


def _fit(scores: FloatArray, power: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gamma shape and scale by moments of scores**power, per column (samples x features)."""
    transformed = np.power(np.maximum(scores, 0.0), power)
    mean = transformed.mean(axis=0)
    variance = transformed.var(axis=0)
    spread = variance > (mean * 1e-12) ** 2 + 1e-300
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(spread, mean**2 / variance, np.nan)
        scale = np.where(spread, variance / mean, np.nan)
    maximum = scores.max(axis=0)
    return shape, scale, maximum


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
        totals = reference.sum(axis=1)
        members = len(group.features)
        shares = reference / np.maximum(totals, 1.0)[:, None]
        resampled = rng.multinomial(totals.astype(np.int64), shares, size=(samples, members))
        live = rng.multinomial(window, shares, size=(samples, members))
        slots = reference.shape[1]
        positions = np.broadcast_to(group.positions, (samples, *group.positions.shape)).reshape(
            samples * members, -1
        )
        scales = np.broadcast_to(group.scales, (samples, members)).reshape(-1)
        scores = statistics.score_group(
            group.numeric,
            resampled.reshape(-1, slots).astype(np.float64),
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
