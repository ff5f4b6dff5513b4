"""The statistics from binned counts, checked against scipy's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from modelshield.drift import layouts, profiles, statistics, windows


def _counts(rng: np.random.Generator, size: int, rows: int = 5) -> np.ndarray:
    return rng.integers(0, 200, (rows, size)).astype(np.float64)


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    reference, live = _counts(rng, 12), _counts(rng, 12)
    live[0, 3] = 0
    expected = distance.jensenshannon(reference, live, base=2, axis=1)
    np.testing.assert_allclose(statistics.jensen_shannon(reference, live), expected, rtol=1e-12)


def test_chi_square_matches_scipy_when_no_bin_is_empty() -> None:
    rng = np.random.default_rng(2)
    reference = _counts(rng, 8) + 50
    live = _counts(rng, 8) + 50
    totals = live.sum(axis=1, keepdims=True)
    expected_counts = reference / reference.sum(axis=1, keepdims=True) * totals
    chi2 = stats.chisquare(live, expected_counts, axis=1).statistic
    np.testing.assert_allclose(
        statistics.chi_square_effect(reference, live), np.sqrt(chi2 / totals[:, 0]), rtol=1e-9
    )


def test_psi_is_the_symmetric_kullback_leibler_divergence() -> None:
    reference = np.array([[50.0, 30.0, 20.0]])
    live = np.array([[20.0, 30.0, 50.0]])
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2])
    expected = float(np.sum((p - q) * np.log(p / q)))
    assert statistics.psi(reference, live)[0] == pytest.approx(expected)
    assert statistics.psi(reference, reference)[0] == pytest.approx(0.0)


def test_wasserstein_matches_scipy_on_the_bin_positions() -> None:
    rng = np.random.default_rng(3)
    positions = np.sort(rng.normal(0, 3, (4, 9)), axis=1)
    reference, live = _counts(rng, 9, 4) + 1, _counts(rng, 9, 4) + 1
    ours = statistics.wasserstein(reference, live, positions, np.ones(4))
    for i in range(4):
        expected = stats.wasserstein_distance(positions[i], positions[i], reference[i], live[i])
        assert ours[i] == pytest.approx(expected, rel=1e-9)


def test_binned_kolmogorov_smirnov_is_a_lower_bound_within_one_bin_of_the_exact_one() -> None:
    rng = np.random.default_rng(4)
    training = rng.normal(0, 1, 20_000)
    profile = profiles.build({"x": training.tolist()})
    layout = layouts.build(profile, ["x"])
    feature = profile.features[0]
    assert isinstance(feature, profiles.NumericFeature)
    largest_bin = max(feature.counts) / sum(feature.counts)
    for shift in (0.0, 0.1, 0.3, 1.0):
        live = rng.normal(shift, 1, 2000)
        window = windows.TumblingWindow(layout, live.size)
        (counts,) = window.add_slots(
            windows.encode(layout, live[:, None], np.empty((live.size, 0), dtype=np.intp))
        )
        binned = statistics.score(layout, counts).scores[statistics.Statistic.KOLMOGOROV_SMIRNOV][0]
        exact = stats.ks_2samp(training, live).statistic
        assert binned <= exact + 1e-12
        assert exact - binned <= largest_bin + 0.01


def test_statistics_do_not_apply_to_categories_where_they_should_not() -> None:
    profile = profiles.build({"c": ["a", "b", "a"] * 100, "x": [float(i) for i in range(300)]})
    layout = layouts.build(profile, ["c", "x"])
    scores = statistics.score(layout, layout.reference.copy())
    categorical = layout.names.index("c")
    assert np.isnan(scores.scores[statistics.Statistic.KOLMOGOROV_SMIRNOV][categorical])
    assert np.isnan(scores.scores[statistics.Statistic.WASSERSTEIN][categorical])
    for statistic in statistics.Statistic:
        assert scores.scores[statistic][layout.names.index("x")] == pytest.approx(0.0, abs=1e-3)
