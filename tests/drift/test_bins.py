"""Bin edges that let a shift of discrete values show: atoms in bins of their own, edges between values.

On the code of issue 18's first stop, load_digits' pixels hid a 0.5 sigma shift from every
binned statistic in 8 % of the evaluation's windows: a pixel that is 0 nine times in ten
got a single bin [0, 16] (deduplicated quantiles), and with edges on the integer values
themselves a value moved up by less than a step stayed in its bin.
"""

from __future__ import annotations

import numpy as np

from modelshield.drift import layouts, profiles, statistics
from modelshield.drift import windows as drift_windows

Statistic = statistics.Statistic


def _scores(profile: profiles.Profile, window: np.ndarray) -> dict[Statistic, float]:
    layout = layouts.build(profile, profile.names)
    counter = drift_windows.TumblingWindow(layout, window.shape[0])
    slots = drift_windows.encode(layout, window, np.empty((window.shape[0], 0), dtype=np.intp))
    ((counts, sums),) = counter.add_rows(slots, window)
    return {s: float(v[0]) for s, v in statistics.score(layout, counts, sums).scores.items()}


def _sparse_pixel(rng: np.random.Generator, rows: int) -> np.ndarray:
    """0 nine times in ten, otherwise 1..16 (more distinct values than bins)."""
    values = np.where(rng.random(rows) < 0.9, 0, rng.integers(1, 17, rows)).astype(float)
    return values


def test_an_atom_gets_a_bin_of_its_own() -> None:
    rng = np.random.default_rng(1)
    values = _sparse_pixel(rng, 800)
    feature = profiles.build_numeric("pixel", values)
    # Deduplicated quantiles gave one bin [0, 16] for everything.
    assert feature.counts[0] == int(np.sum(values == 0))
    assert feature.edges[1] == 0.5  # halfway between 0 and the next value, 1


def test_an_atom_at_the_maximum_gets_the_last_bin_alone() -> None:
    values = np.concatenate([np.arange(15.0), np.full(50, 16.0)])
    feature = profiles.build_numeric("pixel", values)
    assert feature.edges[-2:] == (15.0, 16.0)  # 14 and below; 16 alone
    assert feature.counts[-1] == 50


def test_a_shift_of_less_than_a_step_is_seen_on_a_sparse_feature() -> None:
    rng = np.random.default_rng(2)
    profile = profiles.Profile((profiles.build_numeric("pixel", _sparse_pixel(rng, 800)),), 800)
    clean = _scores(profile, _sparse_pixel(rng, 250)[:, None])
    shifted = _scores(profile, _sparse_pixel(rng, 250)[:, None] + 0.6)
    for statistic in (Statistic.PSI, Statistic.KOLMOGOROV_SMIRNOV, Statistic.CHI_SQUARE):
        # Every zero moved out of the zeros' bin: the largest possible change.
        assert shifted[statistic] > 5 * max(clean[statistic], 0.05), statistic


def test_integer_values_leave_their_bin_when_shifted_up_or_down_by_more_than_half() -> None:
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 5, 1000).astype(float)
    profile = profiles.Profile((profiles.build_numeric("count", reference),), 1000)
    window = rng.integers(0, 5, 300).astype(float)[:, None]
    clean = _scores(profile, window)[Statistic.PSI]
    up = _scores(profile, window + 0.6)[Statistic.PSI]
    down = _scores(profile, window - 0.6)[Statistic.PSI]
    # Every value changes bin (those beyond the range count in the end bins for PSI).
    assert up > 1.0 > 0.1 > clean
    assert down > 1.0


def test_edges_between_values_keep_every_reference_value_in_the_same_bin() -> None:
    # A guard: moving the edges between values changes no reference count.
    rng = np.random.default_rng(4)
    values = rng.normal(0.0, 1.0, 1000).round(1)
    feature = profiles.build_numeric("x", values)
    quantiles = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 11)))
    # The counts of the quantile bins [q_i, q_i+1) with the maximum in the last.
    upper = quantiles.copy()
    upper[-1] = np.nextafter(upper[-1], np.inf)
    expected = np.bincount(np.searchsorted(upper, values, side="right"), minlength=12)[1:-1]
    assert feature.counts == tuple(int(c) for c in expected[: len(feature.counts)])
    assert (feature.edges[0], feature.edges[-1]) == (values.min(), values.max())
