"""Drift statistics from binned counts: a window's histograms against the reference's.

Everything works on 2-D arrays (features x slots) so that one call scores a whole group of
features. The monitor never keeps raw values, so every statistic is computed from the
histograms over the reference's bins:

- **PSI** (Population Stability Index): ``sum((p - q) * ln(p / q))`` over the bins, with
  proportions floored at ``1e-4`` so that empty bins stay finite. It equals the symmetric
  Kullback-Leibler divergence, computed here with ``scipy.special.rel_entr``.
- **KolmogorovSmirnov**: the largest distance between the two cumulative distributions,
  evaluated at the reference's bin edges. This is a *lower bound* of the exact two-sample
  KS statistic on the raw values: within a bin both CDFs are unknown, so the true supremum
  can exceed the binned one by at most the larger of the two masses of that bin (with
  10 quantile bins, 0.1 of reference mass). It is exact at every edge, and a shift large
  enough to matter moves mass across edges. Missing values are placed below every value,
  so a jump in the missing rate moves the CDF like any other shift.
- **ChiSquare**: Cohen's effect size ``w = sqrt(chi2 / n)`` of Pearson's goodness-of-fit
  chi-square (as ``scipy.stats.chisquare``) of the window's counts against the reference
  proportions. Dividing by ``n`` makes a threshold independent of the window size
  (0.1 small, 0.3 medium, 0.5 large effect); the raw statistic grows with ``n``.
- **JensenShannon**: the Jensen-Shannon distance in bits (as
  ``scipy.spatial.distance.jensenshannon``), between 0 and 1.
- **Wasserstein** (numeric only): the earth mover's distance between the two histograms,
  each bin's mass placed at the reference mean of that bin (out-of-range mass at the mean
  of the window's out-of-range values; with calibrated thresholds no farther out than the
  calibration assumes, ``unseen_positions``), divided by the reference standard
  deviation. Missing values are left out.

Missing values are a bin of their own for PSI, chi-square and Jensen-Shannon, and
categories outside the profile fall in ``other``; so a rise in missing values or a new
category moves every statistic, not only the rates. A numeric feature with a discrete
support (``profiles.NumericFeature.support``) adds its *unseen* count, the values off the
support, as one more bin (its reference count 0) for PSI, Jensen-Shannon and KS (after
every value, as missing values are before); those values are in their bins too, so the
unseen bin is a count on top of the window's rows. Wasserstein leaves it out (it
measures how far values moved, which their bins say), and so does chi-square
(``score_group`` says why). (Whole-number pixel counts
shifted by a quarter of a standard deviation stay in their quantile bins, a shifted 3.4
in the bin of 3, but all leave the support.)

Only ``scipy.special`` is imported: ``scipy.stats`` and ``scipy.spatial`` add about 45 MiB
of resident memory and a millisecond of argument checking per call, for formulas of one
line each (the tests check every one against scipy's own function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from modelshield.api.v1alpha1 import policies
from modelshield.drift import layouts

Statistic = policies.DriftStatistic
FloatArray = NDArray[np.float64]

FLOOR = 1e-4
NUMERIC_ONLY = frozenset({Statistic.KOLMOGOROV_SMIRNOV, Statistic.WASSERSTEIN})


def proportions(counts: FloatArray) -> FloatArray:
    """Each row divided by its total (rows that sum to zero stay zero)."""
    totals = counts.sum(axis=-1, keepdims=True)
    result: FloatArray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return result


def psi(reference: FloatArray, live: FloatArray) -> FloatArray:
    """Population Stability Index of each row of live against the same row of reference."""
    p = np.maximum(proportions(live), FLOOR)
    q = np.maximum(proportions(reference), FLOOR)
    result: FloatArray = (special.rel_entr(p, q) + special.rel_entr(q, p)).sum(axis=-1)
    return result


def jensen_shannon(reference: FloatArray, live: FloatArray) -> FloatArray:
    """Jensen-Shannon distance (base 2, in [0, 1]) row by row, as scipy.spatial.distance has it."""
    p = proportions(reference)
    q = proportions(live)
    m = (p + q) / 2
    divergence = (special.rel_entr(p, m).sum(axis=-1) + special.rel_entr(q, m).sum(axis=-1)) / 2
    result: FloatArray = np.sqrt(np.maximum(divergence, 0.0) / np.log(2))
    return result


def chi_square_effect(
    reference: FloatArray, live: FloatArray, extra: FloatArray | None = None
) -> FloatArray:
    """Cohen's w = sqrt(chi2 / n) of the live counts against the reference proportions.

    extra: one more term per row added to chi2 (the unseen values': unseen_term).
    """
    totals = live.sum(axis=-1, keepdims=True)
    reference_share = proportions(reference)
    # Half a row at least where the window has values the reference never had, so that a
    # few of them do not dominate; bins empty on both sides carry nothing and stay out.
    floor = np.where(live > 0, 0.5 / np.maximum(totals, 1.0), 0.0)
    expected = np.where(reference_share > 0, reference_share, floor)
    expected = expected / expected.sum(axis=-1, keepdims=True) * totals
    terms = np.divide(
        np.square(live - expected), expected, out=np.zeros_like(expected), where=expected > 0
    )
    statistic: FloatArray = terms.sum(axis=-1)
    if extra is not None:
        statistic = statistic + extra
    effect: FloatArray = np.sqrt(statistic / np.maximum(totals[..., 0], 1.0))
    return effect


def unseen_share(seen_once: FloatArray, present: FloatArray) -> FloatArray:
    """The share of live values expected off a discrete support (Good and Turing).

    As many pseudo-rows as support values the reference holds once, at least about one
    (present / (present + 1)), against the reference's present rows: the mean of the Beta
    posterior the calibration draws each window's unseen share from.
    """
    pseudo = np.maximum(seen_once, present / (present + 1.0))
    result: FloatArray = pseudo / (pseudo + np.maximum(present, 1.0))
    return result


UNSEEN_EXPECTED_FLOOR = 1.0
"""Chi-square's unseen term expects at least one row off the support (see unseen_term)."""


def unseen_term(
    unseen: FloatArray, rows: FloatArray, share: FloatArray, present: FloatArray
) -> FloatArray:
    """Chi-square's term for the values off the support: an excess over Good and Turing.

    Pearson's square term of the unseen count against its expected count, one-sided (fewer
    values off the support than expected is no drift), with Yates' continuity correction
    (half a row) and the expected count at least one row. Without the floor, a reference
    whose Good-Turing share is 1/800 expects 0.1 of a row in a window of 100 and three
    clean unseen values weigh (3 - 0.1)^2 / 0.1 = 84: the calibrated threshold then sits
    on that tail (the unseen count as a bin with half a row expected, 12.5 for three,
    already made chi-square find 47 % of digits' label-subpopulation windows at 250 rows
    rather than 98 %); with it they weigh (3 - 1 - 0.5)^2 = 2.25 (before the variance
    below), while a shift that moves every value off the support (u = n) weighs about n^2.

    The square is divided by the count's variance, not its expected value: the share is
    itself uncertain (Beta with about ``present`` rows of prior, the reference's), so
    the count is beta-binomial, its variance (N + n) / (N + 1) times the binomial one
    (N = present / (1 - share)). Divided by the expected count alone, the term's clean
    tail grew with the window and at 1,000 rows chi-square found 92 % of digits'
    label-subpopulation windows rather than 100 %.
    """
    expected = np.maximum(rows * share, UNSEEN_EXPECTED_FLOOR)
    excess = np.maximum(unseen - expected - 0.5, 0.0)
    prior = present / np.maximum(1.0 - share, 1e-12)
    dispersion = (prior + rows) / (prior + 1.0)
    result: FloatArray = np.square(excess) / (expected * dispersion)
    return result


def kolmogorov_smirnov(reference: FloatArray, live: FloatArray) -> FloatArray:
    """Largest distance between the two binned CDFs, at the bin edges (a lower bound)."""
    gap = np.cumsum(proportions(live), axis=-1) - np.cumsum(proportions(reference), axis=-1)
    result: FloatArray = np.asarray(np.abs(gap).max(axis=-1), dtype=np.float64)
    return result


def wasserstein(
    reference: FloatArray, live: FloatArray, positions: FloatArray, scales: FloatArray
) -> FloatArray:
    """Earth mover's distance between histograms whose mass sits at positions, / scales.

    For distributions on one sorted support x, W1 = sum |F(x_i) - G(x_i)| (x_{i+1} - x_i),
    which is what scipy.stats.wasserstein_distance computes value by value; here it runs
    on a whole group at once.
    """
    gap = np.cumsum(proportions(live), axis=-1) - np.cumsum(proportions(reference), axis=-1)
    steps = np.diff(positions, axis=-1)
    result: FloatArray = (np.abs(gap[..., :-1]) * steps).sum(axis=-1) / scales
    return result


def _numeric_distribution(counts: FloatArray) -> FloatArray:
    """[missing, below, bins..., above] -> [missing, below+bin0, ..., bin(k-1)+above]."""
    merged = counts[..., [0, *range(2, counts.shape[-1] - 1)]]
    merged[..., 1] += counts[..., 1]
    merged[..., -1] += counts[..., -1]
    return merged


@dataclass(frozen=True)
class WindowScores:
    """The scores of one completed window, one entry per watched feature."""

    names: tuple[str, ...]
    rows: int
    scores: dict[Statistic, FloatArray]
    """NaN where the statistic does not apply (KS and Wasserstein on categorical features)."""
    missing_rate: FloatArray
    out_of_range_rate: FloatArray
    """Numeric: outside the reference [min, max]; numeric with a support: off it (which
    includes outside the range); categorical: not a profiled category."""
    numeric: NDArray[np.bool_]


def _with_unseen(counts: FloatArray, unseen: FloatArray) -> FloatArray:
    """counts with one more slot at the end holding unseen (same leading shape)."""
    result: FloatArray = np.concatenate(
        [counts, np.broadcast_to(unseen, counts.shape[:-1])[..., None]], axis=-1
    )
    return result


def score_group(
    numeric: bool,
    reference: FloatArray,
    live: FloatArray,
    positions: FloatArray,
    scales: FloatArray,
    unseen: FloatArray | None = None,
    unseen_shares: FloatArray | None = None,
) -> dict[Statistic, FloatArray]:
    """Every statistic that applies, row by row, for rows of one kind and slot count.

    Rows are in the layout's slot order (numeric: missing, below, bins, above;
    categorical: missing, other, categories); the monitor passes one row per feature, the
    calibration one row per simulated window. unseen (numeric features with a support):
    each row's count of values off the support, a bin the reference never fills;
    unseen_shares: each row's expected share of them (unseen_share), for chi-square's
    term (without it chi-square leaves them out, as profiles calibrated before the term
    were).
    """
    if numeric:
        reference_distribution = _numeric_distribution(reference)
        live_distribution = _numeric_distribution(live)
    else:
        reference_distribution = reference
        live_distribution = live
    # Chi-square does not take the unseen count as a bin: Pearson's term for a bin the
    # reference never fills, (u - 1/2)^2 / (1/2), grows with the square of the few unseen
    # values clean windows hold, and the calibrated thresholds rose so far that
    # chi-square found 47 % of digits' label-subpopulation windows at 250 rows (97.8 %
    # without the bin). It adds unseen_term instead: the excess over Good and Turing's
    # expected count, at least one row, with a continuity correction.
    extra = None
    if unseen is not None and unseen_shares is not None:
        rows = live_distribution.sum(axis=-1) - live_distribution[..., layouts.MISSING_SLOT]
        present = (
            reference_distribution.sum(axis=-1) - reference_distribution[..., layouts.MISSING_SLOT]
        )
        extra = unseen_term(unseen, rows, unseen_shares, present)
    chi_square = chi_square_effect(reference_distribution, live_distribution, extra)
    reference_ordered, live_ordered = reference, live
    if unseen is not None:
        nothing = np.zeros(reference.shape[:-1])
        reference_distribution = _with_unseen(reference_distribution, nothing)
        live_distribution = _with_unseen(live_distribution, unseen)
        reference_ordered = _with_unseen(reference, nothing)
        live_ordered = _with_unseen(live, unseen)
    scores = {
        Statistic.PSI: psi(reference_distribution, live_distribution),
        Statistic.JENSEN_SHANNON: jensen_shannon(reference_distribution, live_distribution),
        Statistic.CHI_SQUARE: chi_square,
    }
    if numeric:
        scores[Statistic.KOLMOGOROV_SMIRNOV] = kolmogorov_smirnov(reference_ordered, live_ordered)
        scores[Statistic.WASSERSTEIN] = wasserstein(
            reference[..., 1:], live[..., 1:], positions, scales
        )
    return scores


def unseen_positions(positions: FloatArray, scales: FloatArray) -> FloatArray:
    """Where the calibration puts values beyond the reference range (Wasserstein).

    Beyond each extreme by the gap between the extreme and the mean of its bin, the
    tail's own scale (a long tail has a wide last bin); by one standard deviation where
    that gap is nil (one bin per value, a constant feature). ``positions`` are a numeric
    group's (below, bins, above; the extremes at the reference min and max).
    """
    result = positions.copy()
    below = result[:, 1] - result[:, 0]
    above = result[:, -1] - result[:, -2]
    result[:, 0] -= np.where(below > 0, below, scales)
    result[:, -1] += np.where(above > 0, above, scales)
    return result


def _live_positions(
    group: layouts.Group, live: FloatArray, sums: FloatArray | None, bounded: bool
) -> FloatArray:
    """The group's positions with out-of-range mass at the mean of the window's such values.

    bounded: no farther out than unseen_positions, where the calibration put it. How far
    beyond the range a clean value lies is not in the reference (a pixel that is 0 or 1
    in 797 reference rows is 8 in the population now and then): unbounded, Wasserstein's
    null was a guess, and one such value alarmed on 14 % of clean digits windows at a
    declared 1 %.
    """
    if sums is None:
        return group.positions
    positions = group.positions.copy()
    limits = unseen_positions(group.positions, group.scales)
    for column, slot in ((0, layouts.BELOW_SLOT), (-1, live.shape[1] - 1)):
        counts = live[:, slot]
        totals = sums[group.slots[:, slot]]
        outside = counts > 0
        means = totals[outside] / counts[outside]
        if bounded:
            limit = limits[outside, column]
            means = np.maximum(means, limit) if column == 0 else np.minimum(means, limit)
        positions[outside, column] = means
    return positions


def score(
    layout: layouts.Layout,
    live_counts: layouts.CountArray,
    out_of_range_sums: FloatArray | None = None,
    *,
    bounded: bool = False,
) -> WindowScores:
    """Every statistic for every watched feature of one window.

    out_of_range_sums (per slot, from the window) puts the out-of-range mass of Wasserstein
    at the mean of the window's out-of-range values rather than at the reference min/max;
    bounded (calibrated thresholds) no farther than the calibration assumes
    (unseen_positions), so that the score's null is the simulated one.
    """
    count = len(layout.names)
    scores = {statistic: np.full(count, np.nan) for statistic in Statistic}
    missing = np.zeros(count)
    out_of_range = np.zeros(count)
    numeric = np.zeros(count, dtype=np.bool_)
    rows = 0
    reference_all = layout.reference.astype(np.float64)
    live_all = live_counts.astype(np.float64)
    for group in layout.groups:
        reference = reference_all[group.slots]
        live = live_all[group.slots]
        totals = np.maximum(live.sum(axis=1), 1.0)
        rows = int(live[0].sum())
        members = group.features
        missing[members] = live[:, layouts.MISSING_SLOT] / totals
        unseen = live_all[group.unseen] if group.unseen.size else None
        if unseen is not None:
            numeric[members] = True
            out_of_range[members] = unseen / totals
        elif group.numeric:
            numeric[members] = True
            out_of_range[members] = (live[:, layouts.BELOW_SLOT] + live[:, -1]) / totals
        else:
            out_of_range[members] = live[:, layouts.OTHER_SLOT] / totals
        positions = (
            _live_positions(group, live, out_of_range_sums, bounded)
            if group.numeric
            else group.positions
        )
        shares = None
        if unseen is not None:
            present = reference.sum(axis=1) - reference[:, layouts.MISSING_SLOT]
            shares = unseen_share(group.seen_once, present)
        for statistic, values in score_group(
            group.numeric, reference, live, positions, group.scales, unseen, shares
        ).items():
            scores[statistic][members] = values
    return WindowScores(layout.names, rows, scores, missing, out_of_range, numeric)
