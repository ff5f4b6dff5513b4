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

Each feature's simulated scores are kept as a table of upper quantiles (``NullTable``):
the score its clean windows exceed with probability 0.5, 0.1, ..., down to the tail the
declared rate asks for (``alpha / features``), read straight off the simulation; the
number of simulated windows is set by that tail (5 of them beyond it: ``samples_for``).
A gamma fitted to the simulated 90th and 99th percentiles and extrapolated to the
99.97th, as this module did first, put PSI's thresholds too low at small windows (a
window of 100 rows leaves a thin bin empty now and then, and PSI's floored logarithm
jumps: a tail no smooth fit follows) and 3 % to 6 % of clean windows alarmed at a
declared 1 % (issue 18). Only a tail smaller than the simulation resolves (more features
watched than the profile's calibration was made for) is extrapolated, exponentially.

The data-set decision is Bonferroni's: with ``F`` features watched and a declared
false-alarm rate ``alpha`` per window for the whole model, each feature's threshold is its
null's ``1 - alpha / F`` quantile, and the data-set p-value is ``min(1, F * min p)``. This
holds whatever the correlation between features (it is conservative when they are
correlated). ``bench/drift_evaluation.py`` measures the rates on real data.

``modelshield drift profile`` runs this once and keeps the tables in the profile
(``store``, ``modelshield.drift.storedcalibration``); the monitor uses them when they fit
(``stored``) and simulates at start otherwise. Both calibrate on the profile's bins
merged for the window (``binmerging.for_window``), the bins the monitor scores on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import (
    binmerging,
    layouts,
    profiledocuments,
    profiles,
    statistics,
    storedcalibration,
)

Statistic = statistics.Statistic
FloatArray = NDArray[np.float64]

DEFAULT_SEED = 18
RESOLVED = 5
"""Simulated windows beyond the smallest tail probability read off the simulation. The
k-th largest of S simulated scores is exceeded with probability k / (S + 1) on average,
whatever k, so a small k leaves each feature's threshold noisy (about 1 / sqrt(k) of its
tail) but the sum over features, the model's false-alarm rate, unbiased."""
MIN_SAMPLES = 2000
MAX_SAMPLES = 200_000
DEFAULT_TAIL = RESOLVED / MIN_SAMPLES
"""The smallest tail resolved when no false-alarm rate asks for one (p-values only, smaller
ones extrapolated): the fewest simulated windows, so that such a monitor starts as fast
as it did with the gamma fit."""
BULK = 0.02
"""Tails at least this large are read from the first MIN_SAMPLES windows, smaller ones from
the largest 1 % of the scores of all windows (kept as the simulation runs: for 300 features
and 150,000 windows about 18 MiB rather than 1.8 GiB)."""
GRID = (1.0, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4,
        1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6)  # fmt: skip
CHUNK_ROWS = 32_768
"""Simulated (window, feature) pairs scored at a time: about 3 MiB per array."""
POWERS = {
    Statistic.PSI: 0.5,
    Statistic.KOLMOGOROV_SMIRNOV: 2.0,
    Statistic.CHI_SQUARE: 2.0,
    Statistic.JENSEN_SHANNON: 1.0,
    Statistic.WASSERSTEIN: 2.0,
}
"""Beyond the smallest resolved tail (only when more features are watched than the
calibration was made for) the tail of score**power is taken as exponential, continuing the
slope of the last simulated decade: chi-square's w squared is a chi-square over n, KS and
Wasserstein squared have near-exponential tails, PSI's log ratio a heavier one."""


MINIMUM_THRESHOLD = 1e-12


def samples_for(tail: float) -> int:
    """Simulated windows needed to read the threshold of this tail off the simulation."""
    return int(min(MAX_SAMPLES, max(MIN_SAMPLES, math.ceil(RESOLVED / tail))))


@dataclass(frozen=True)
class NullTable:
    """The simulated null distribution of one statistic for each feature: its upper quantiles.

    ``quantiles[f, j]`` is the score that feature ``f``'s clean windows exceed with
    probability ``tails[j]`` (``tails[0]`` = 1: the smallest simulated score). Between
    grid points the log of the tail is linear in the score; beyond the last one the tail of
    ``score**power`` is exponential with the slope of the last decade. A row of NaN: the
    statistic does not apply (KS and Wasserstein on categorical features).
    """

    power: float
    tails: FloatArray
    quantiles: FloatArray
    samples: int

    @property
    def resolved(self) -> float:
        """The smallest tail read off the simulation rather than extrapolated."""
        return float(self.tails[-1])

    def _slope(self) -> FloatArray:
        """Per feature: the exponential tail's scale in score**power (0: nothing beyond)."""
        last = self.tails.size - 1
        anchor = int(np.searchsorted(-self.tails, -self.tails[-1] * 10.0, side="right")) - 1
        anchor = min(max(anchor, 0), last - 1) if last > 0 else 0
        top = np.power(np.maximum(self.quantiles[:, last], 0.0), self.power)
        low = np.power(np.maximum(self.quantiles[:, anchor], 0.0), self.power)
        span = math.log(self.tails[anchor] / self.tails[last]) if last > anchor else 1.0
        slope: FloatArray = np.maximum(top - low, 0.0) / span
        return slope

    def thresholds(self, tail: float) -> FloatArray:
        """The score each feature's clean windows exceed with probability tail."""
        log_tails = -np.log(self.tails)
        wanted = -math.log(tail)
        if wanted <= log_tails[-1]:
            within = np.array([np.interp(wanted, log_tails, row) for row in self.quantiles])
        else:
            top = np.power(np.maximum(self.quantiles[:, -1], 0.0), self.power)
            extended = top + self._slope() * (wanted - log_tails[-1])
            within = np.power(extended, 1.0 / self.power)
        # Positive (an alarm rule needs it): a null that is 0 up to this tail alarms on any
        # positive score, which has p-value 0 under it.
        result: FloatArray = np.where(
            np.isfinite(self.quantiles[:, -1]), np.maximum(within, MINIMUM_THRESHOLD), np.nan
        )
        return result

    def p_values(self, scores: FloatArray) -> FloatArray:
        """Each score's upper-tail probability under its feature's null (NaN: not applicable).

        The inverse of thresholds(): a score is over the threshold of a tail exactly when
        its p-value is under that tail, so the data-set p-value and the alarms agree.
        """
        result = np.full(scores.shape, np.nan)
        log_tails = np.log(self.tails)
        quantiles = self.quantiles
        last = self.tails.size - 1
        valid = np.isfinite(scores) & np.isfinite(quantiles[:, 0])
        score = np.where(valid, scores, 0.0)
        # The first grid point at or over the score: on a flat run (a discrete statistic)
        # the largest tail, as P(score >= that value) includes the whole run.
        above = np.sum(quantiles < score[:, None], axis=1)
        result[valid & (above == 0)] = 1.0
        inside = valid & (above > 0) & (above <= last)
        rows = np.flatnonzero(inside)
        j = above[rows]
        upper, lower = quantiles[rows, j], quantiles[rows, j - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(upper > lower, (score[rows] - lower) / (upper - lower), 1.0)
        result[rows] = np.exp(log_tails[j - 1] + share * (log_tails[j] - log_tails[j - 1]))
        beyond = valid & (above > last)
        if np.any(beyond):
            slope = self._slope()[beyond]
            top = np.power(np.maximum(quantiles[beyond, -1], 0.0), self.power)
            excess = np.power(np.maximum(scores[beyond], 0.0), self.power) - top
            with np.errstate(divide="ignore", invalid="ignore"):
                decay = np.where(slope > 0, np.exp(-excess / slope), 0.0)
            result[beyond] = self.tails[-1] * decay
        return result


class _Collector:
    """Upper quantiles of simulated scores without keeping them all (samples x features)."""

    def __init__(self, samples: int, features: int) -> None:
        self.samples = samples
        self.bulk_rows = min(samples, MIN_SAMPLES)
        self.keep = math.ceil(samples / 100) + 1
        self.bulk: list[FloatArray] = []
        self.bulk_seen = 0
        self.top = np.empty((0, features))

    def add(self, scores: FloatArray) -> None:
        if self.bulk_seen < self.bulk_rows:
            taken = scores[: self.bulk_rows - self.bulk_seen]
            self.bulk.append(taken)
            self.bulk_seen += taken.shape[0]
        merged = np.concatenate([self.top, scores])
        if merged.shape[0] > self.keep:
            merged = -np.partition(-merged, self.keep - 1, axis=0)[: self.keep]
        self.top = merged

    def table(self, power: float) -> NullTable:
        resolved = RESOLVED / self.samples
        tails = np.array(sorted({*(t for t in GRID if t >= resolved), resolved}, reverse=True))
        bulk = np.concatenate(self.bulk)
        ordered = -np.sort(-self.top, axis=0)
        quantiles = np.empty((self.top.shape[1], tails.size))
        for j, tail in enumerate(tails):
            if tail >= BULK:
                quantiles[:, j] = np.quantile(bulk, 1.0 - tail, axis=0, method="higher")
            else:
                # The k-th largest of n is exceeded with probability about k / (n + 1).
                rank = max(1, round(tail * (self.samples + 1)))
                quantiles[:, j] = ordered[rank - 1]
        # Quantiles never decrease towards the tail (the bulk comes from fewer windows).
        quantiles = np.maximum.accumulate(quantiles, axis=1)
        return NullTable(power, tails, quantiles, self.samples)


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
    alpha = posterior_weights(numeric, reference)
    gammas = rng.standard_gamma(np.broadcast_to(alpha, (samples, *alpha.shape)))
    truths: FloatArray = gammas / gammas.sum(axis=2, keepdims=True)
    return truths


def posterior_weights(numeric: bool, reference: FloatArray) -> FloatArray:
    """The Dirichlet parameters of ``_plausible_truths`` (features x slots).

    The missing-share test (``missingshare``) reads its null off the same posterior: the
    missing slot's share is Beta(alpha_missing, sum(alpha) - alpha_missing).
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
    return alpha


def _simulate_group(
    layout: layouts.Layout,
    group: layouts.Group,
    window: int,
    samples: int,
    rng: np.random.Generator,
) -> dict[Statistic, FloatArray]:
    """Simulated clean-window scores of the group's features (samples x members)."""
    reference = layout.reference.astype(np.float64)[group.slots]
    truths = _plausible_truths(group.numeric, reference, samples, rng)
    live = rng.multinomial(window, truths).astype(np.float64)
    # Where the simulated unseen values sit (Wasserstein); the calibrated monitor puts
    # the window's own no farther out (statistics.score, bounded).
    beyond = (
        statistics.unseen_positions(group.positions, group.scales)
        if group.numeric
        else group.positions
    )
    unseen = shares = None
    if group.unseen.size:
        unseen = _unseen_counts(group, reference, live, rng)
        present = reference.sum(axis=1) - reference[:, layouts.MISSING_SLOT]
        shares = statistics.unseen_share(group.seen_once, present)
    # The reference broadcasts against every simulated window (samples x members x slots).
    return statistics.score_group(
        group.numeric, reference, live, beyond, group.scales, unseen, shares
    )


def _unseen_counts(
    group: layouts.Group, reference: FloatArray, live: FloatArray, rng: np.random.Generator
) -> FloatArray:
    """Simulated counts of values off the support (samples x members), given the windows.

    Each window's share of unseen values is drawn from a Beta posterior as the bins'
    shares are: as many pseudo-rows as support values the reference holds once (Good and
    Turing's estimate of the share never seen), at least about one (each new row is a
    value none of the N reference rows holds with probability at most 1 / (N + 1) when
    no value repeats), against the reference's present rows. Clean traffic does hold
    values a finite reference lacks (a digits pixel that is 13 now and then, never in 797
    reference rows); a reference without any value seen once gets the least.
    """
    present = reference.sum(axis=1) - reference[:, layouts.MISSING_SLOT]
    pseudo = np.maximum(group.seen_once, present / (present + 1.0))
    shares = rng.beta(
        np.broadcast_to(pseudo, live.shape[:-1]), np.broadcast_to(present, live.shape[:-1])
    )
    rows = live.sum(axis=-1) - live[..., layouts.MISSING_SLOT]
    counts: FloatArray = rng.binomial(rows.astype(np.int64), shares).astype(np.float64)
    return counts


def simulate(
    layout: layouts.Layout, window: int, samples: int, rng: np.random.Generator
) -> dict[Statistic, FloatArray]:
    """Simulated clean-window scores of every statistic (samples x features; NaN: n/a)."""
    count = len(layout.names)
    result = {statistic: np.full((samples, count), np.nan) for statistic in Statistic}
    for group in layout.groups:
        for statistic, values in _simulate_group(layout, group, window, samples, rng).items():
            result[statistic][:, group.features] = values
    return result


def calibrate(
    layout: layouts.Layout,
    window: int,
    *,
    tail: float = DEFAULT_TAIL,
    seed: int = DEFAULT_SEED,
) -> dict[Statistic, NullTable]:
    """The null table of every statistic for every feature of the layout, at this window size.

    ``tail`` is the smallest tail probability whose threshold is read off the simulation
    (the declared rate over the number of features); it sets the number of simulated
    windows (``samples_for``), simulated a chunk at a time.
    """
    rng = np.random.default_rng(seed)
    samples = samples_for(tail)
    count = len(layout.names)
    collectors = {statistic: _Collector(samples, count) for statistic in Statistic}
    chunk = max(1, CHUNK_ROWS // max(1, count))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        block = {statistic: np.full((size, count), np.nan) for statistic in Statistic}
        for group in layout.groups:
            for statistic, values in _simulate_group(layout, group, window, size, rng).items():
                block[statistic][:, group.features] = values
        for statistic, values in block.items():
            collectors[statistic].add(values)
    return {statistic: collectors[statistic].table(POWERS[statistic]) for statistic in Statistic}


def store(
    profile: profiles.Profile,
    window: int,
    tail: float,
    *,
    seed: int = DEFAULT_SEED,
    least_expected: float = binmerging.DEFAULT_LEAST_EXPECTED,
) -> storedcalibration.StoredCalibration:
    """The null tables of every feature of the profile, to keep in it (profile time).

    Made on the bins a monitor of this window scores on (thin bins merged until each
    expects ``least_expected`` rows of it) and fingerprinted on them.
    """
    scored = binmerging.for_window(profile, window, least_expected)
    layout = layouts.build(scored, scored.names)
    tables = calibrate(layout, window, tail=tail, seed=seed)
    any_table = tables[Statistic.PSI]
    features = {
        name: {
            statistic.value: tuple(float(q) for q in table.quantiles[i])
            for statistic, table in tables.items()
            if np.all(np.isfinite(table.quantiles[i]))
        }
        for i, name in enumerate(layout.names)
    }
    return storedcalibration.StoredCalibration(
        window=window,
        samples=any_table.samples,
        seed=seed,
        fingerprint=profiledocuments.fingerprint(scored),
        tails=tuple(float(t) for t in any_table.tails),
        features=features,
        least_expected=least_expected,
    )


def stored(
    profile: profiles.Profile,
    layout: layouts.Layout,
    window: int,
    tail: float,
    *,
    least_expected: float = binmerging.DEFAULT_LEAST_EXPECTED,
) -> dict[Statistic, NullTable] | None:
    """The profile's stored tables for these features, if one calibration fits; else None.

    ``layout`` is laid on the bins scored: ``binmerging.for_window(profile, window,
    least_expected)``. A calibration fits when it was made for this window, on these very
    histograms (the fingerprint of the bins scored: the merged ones), for every watched
    feature and statistic that applies, resolving tail without extrapolation, with
    chi-square's unseen term where a feature with a discrete support is watched (revision
    2), and on merged bins where any merge (revision 3; ``misfit`` says why not).
    """
    if not profile.calibrations:
        return None
    numeric = set(layout.numeric_names)
    for candidate in profile.calibrations:
        if misfit(profile, candidate, layout, window, tail, least_expected):
            continue
        rows: dict[Statistic, FloatArray] = {
            statistic: np.full((len(layout.names), len(candidate.tails)), np.nan)
            for statistic in Statistic
        }
        complete = True
        for i, name in enumerate(layout.names):
            entry = candidate.features.get(name, {})
            for statistic in Statistic:
                if statistic.value in entry:
                    rows[statistic][i] = entry[statistic.value]
                elif name in numeric or statistic not in statistics.NUMERIC_ONLY:
                    complete = False
        if complete:
            tails = np.array(candidate.tails)
            return {
                statistic: NullTable(POWERS[statistic], tails, values, candidate.samples)
                for statistic, values in rows.items()
            }
    return None


def misfit(
    profile: profiles.Profile,
    candidate: storedcalibration.StoredCalibration,
    layout: layouts.Layout,
    window: int,
    tail: float,
    least_expected: float,
) -> str:
    """Why a stored calibration does not fit a monitor (empty: it fits, features aside)."""
    if candidate.window != window:
        return f"made for windows of {candidate.window} rows"
    scored = binmerging.for_window(profile, window, least_expected)
    if candidate.revision < 3 and scored is not profile:
        # Before revision 3 tables were made on the bins as profiled; with thin bins merged
        # they are another statistic's null (fail closed, whatever the fingerprint says).
        return (
            f"made on unmerged bins (revision {candidate.revision}); this monitor merges "
            f"bins to at least {least_expected:g} expected rows"
        )
    if candidate.fingerprint != profiledocuments.fingerprint(scored):
        return "made on other histograms (the profile was edited, or other bins merged)"
    if candidate.resolved > tail * (1 + 1e-6):
        return f"made for tails down to {candidate.resolved:.3g}, not {tail:.3g}"
    if candidate.revision < 2 and len(layout.discrete) > 0:
        return "made before chi-square's unseen term (revision 1)"
    return ""


def dataset_p_value(p_values: FloatArray, features: int) -> float:
    """Bonferroni's data-set p-value: min(1, features x the smallest feature p-value).

    features counts every feature of the family (both streams of a model), which may be
    more than the p-values of one stream's window.
    """
    finite = p_values[np.isfinite(p_values)]
    if finite.size == 0:
        return 1.0
    return float(min(1.0, max(features, finite.size) * finite.min()))
