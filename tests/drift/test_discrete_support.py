"""Values off a discrete feature's support count as unseen values (issue 18, fifth stop).

digits' features are whole-number pixel counts (0..16). Shifted by a quarter of a standard
deviation every value leaves the integers, which a KS test on the raw values sees at once,
while the binned statistics could not: a feature with more distinct values than bins has
quantile bins, and a shifted 3.4 falls in the bin of 3 (PSI found 79.8 % of such shifts
at window 250, the raw KS test 100 %). A numeric feature whose reference values sit on a
small discrete set now keeps that set in its profile (``support``), and a live value off
it counts in an unseen bin, as a category the profile lacks counts in ``other``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.drift import (
    calibration,
    config,
    layouts,
    monitoring,
    payloads,
    profiledocuments,
    profiles,
    statistics,
    windows,
)

Statistic = policies.DriftStatistic
WINDOW = 250
PIXEL_SHARES = np.array([40, 6, 5, 5, 5, 5, 5, 5, 4, 4, 4, 3, 3, 2, 2, 1, 1], dtype=float)
"""A digits-like pixel: 0 often, 1..16 less and less often (17 values, quantile bins)."""

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _pixels(rng: np.random.Generator, rows: int, features: int = 1) -> FloatArray:
    shares = PIXEL_SHARES / PIXEL_SHARES.sum()
    return rng.choice(np.arange(17.0), size=(rows, features), p=shares)


def _profile(reference: FloatArray) -> profiles.Profile:
    return profiles.Profile(
        features=tuple(
            profiles.build_numeric(f"f{j}", reference[:, j]) for j in range(reference.shape[1])
        ),
        rows=reference.shape[0],
    )


def _monitor(profile: profiles.Profile, **settings: Any) -> monitoring.Monitor:
    merged = {"profile": "-", "window": WINDOW, "statistic": Statistic.PSI, **settings}
    return monitoring.Monitor(config.MonitorConfig(**merged), profile)


def _batch(values: FloatArray) -> payloads.Batch:
    return payloads.Batch("request", values, np.empty((values.shape[0], 0), np.intp))


def _scores(profile: profiles.Profile, values: FloatArray) -> statistics.WindowScores:
    layout = layouts.build(profile, profile.names)
    window = windows.TumblingWindow(layout, values.shape[0])
    slots = windows.encode(layout, values, np.empty((values.shape[0], 0), dtype=np.intp))
    ((counts, sums),) = window.add_rows(slots, values)
    return statistics.score(layout, counts, sums, bounded=True)


def test_a_pixel_count_keeps_its_values_and_a_measurement_does_not() -> None:
    rng = np.random.default_rng(1)
    pixel = profiles.build_numeric("pixel", _pixels(rng, 800)[:, 0])
    assert pixel.support == tuple(float(v) for v in range(17))
    assert sum(pixel.support_counts) == 800
    assert len(pixel.counts) < len(pixel.support)  # quantile bins: several values a bin
    measured = profiles.build_numeric("radius", rng.normal(14.0, 3.5, 285).round(2))
    assert measured.support == ()
    # One bin per value (at most --bins values) already tells the values apart.
    flag = profiles.build_numeric("flag", (rng.random(500) < 0.3).astype(np.float64))
    assert flag.support == ()
    assert profiles.build_numeric("count", rng.integers(0, 10, 500).astype(float)).support == ()
    document = profiledocuments.to_document(_profile(rng.normal(0.0, 1.0, (300, 1))))
    assert "support" not in document["features"][0]


@pytest.mark.parametrize(
    "statistic", [Statistic.PSI, Statistic.JENSEN_SHANNON, Statistic.CHI_SQUARE]
)
def test_whole_numbers_shifted_by_less_than_half_a_step_alarm(statistic: Statistic) -> None:
    """Old code: every value stayed in its bin (edges halfway between values): no alarm.

    Chi-square alarms through its unseen term (before it: no alarm, as on the old code).
    """
    rng = np.random.default_rng(2)
    reference = _pixels(rng, 800, features=4)
    monitor = _monitor(_profile(reference), statistic=statistic, false_alarm_rate=0.01)
    window = _pixels(rng, WINDOW, features=4)
    window[:, 2] += 0.3
    (result,) = monitor.add([_batch(window)])
    assert result.active == (False, False, True, False)
    assert result.dataset_p_value < 0.01
    assert result.scores.out_of_range_rate[2] == 1.0


def test_psi_js_ks_and_chi_square_see_the_unseen_values_wasserstein_does_not() -> None:
    rng = np.random.default_rng(3)
    profile = _profile(_pixels(rng, 800))
    window = _pixels(rng, WINDOW)
    clean = _scores(profile, window)
    shifted = _scores(profile, window + np.where(window < 16, 0.3, 0.0))  # none out of range
    for statistic in (
        Statistic.KOLMOGOROV_SMIRNOV,
        Statistic.JENSEN_SHANNON,
        Statistic.PSI,
        Statistic.CHI_SQUARE,  # its unseen term (old code: unchanged by the shift)
    ):
        assert shifted.scores[statistic][0] > clean.scores[statistic][0] + 0.3, statistic
    # Wasserstein places each bin's mass at its reference mean: shifts within bins move
    # nothing, and the unseen count is not a position.
    assert shifted.scores[Statistic.WASSERSTEIN][0] == pytest.approx(
        clean.scores[Statistic.WASSERSTEIN][0]
    )


def test_clean_values_the_reference_lacks_hold_the_declared_rate() -> None:
    """Pixels whose rare values a 300-row reference often lacks (13..16: 1 row in 85 to 170).

    A window of 250 holds one or two of them often; the calibration must count on that
    (each feature's share of unseen values drawn with Good and Turing's estimate, at least
    one pseudo-row), or nearly every window alarms.
    """
    rng = np.random.default_rng(4)
    features, rate, windows_scored = 40, 0.2, 150  # per feature 5e-3: 30 over expected
    monitor = _monitor(_profile(_pixels(rng, 300, features)), false_alarm_rate=rate)
    results = monitor.add([_batch(_pixels(rng, WINDOW, features)) for _ in range(windows_scored)])
    assert len(results) == windows_scored
    unseen = sum(float(np.sum(result.scores.out_of_range_rate)) for result in results)
    assert unseen > 0  # the reference lacks values the windows hold
    exceeded = sum(result.drifted for result in results)
    expected = windows_scored * rate
    # Poisson(30) is over 48 with probability 0.1 %; Bonferroni is conservative here.
    assert exceeded <= 48, f"{exceeded} feature-windows over the threshold, {expected:.0f} expected"


def _chi_square_thresholds(window: int) -> FloatArray:
    rng = np.random.default_rng(11)
    profile = _profile(_pixels(rng, 800, features=4))
    layout = layouts.build(profile, profile.names)
    tail = 0.01 / 4
    tables = calibration.calibrate(layout, window, tail=tail, seed=5)
    return tables[Statistic.CHI_SQUARE].thresholds(tail)


def _pearson_unseen_term(
    unseen: FloatArray, rows: FloatArray, share: FloatArray, present: FloatArray
) -> FloatArray:
    """The term divided by the expected count, not the beta-binomial variance."""
    expected = np.maximum(rows * share, statistics.UNSEEN_EXPECTED_FLOOR)
    result: FloatArray = np.square(np.maximum(unseen - expected - 0.5, 0.0)) / expected
    return result


@pytest.mark.parametrize(("window", "tolerance"), [(100, 1.02), (1000, 1.1)])
def test_a_few_clean_unseen_values_do_not_set_chi_square_thresholds(
    window: int, tolerance: float
) -> None:
    """Chi-square's unseen term: at least one row expected, a half-row correction, and
    the beta-binomial variance.

    A first version took the unseen count as a bin of its own (Pearson's term with half a
    row expected): a few clean unseen values weighed so much that the calibrated
    thresholds rose and chi-square found 47 % of digits' label-subpopulation windows at
    250 rows (97.8 % without). With the floor the thresholds stay near those without any
    unseen term; Pearson's term as it is (no floor) raises them by over 10 % at 100 rows,
    and divided by the expected count rather than the variance by over 15 % at 1,000
    (digits' label subpopulation there: 85 of 100 windows rather than 100).
    """
    with_term = _chi_square_thresholds(window)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(statistics, "unseen_term", lambda u, rows, share, n: np.zeros_like(u))
        without_term = _chi_square_thresholds(window)
    assert np.all(with_term <= without_term * tolerance), (with_term, without_term)
    with pytest.MonkeyPatch.context() as patch:
        if window == 100:
            patch.setattr(statistics, "UNSEEN_EXPECTED_FLOOR", 1e-9)
        else:
            patch.setattr(statistics, "unseen_term", _pearson_unseen_term)
        cruder = _chi_square_thresholds(window)
    factor = 1.15 if window == 1000 else 1.1
    assert np.any(cruder > without_term * factor), (cruder, without_term)


def test_fewer_unseen_values_than_expected_add_nothing() -> None:
    rows = np.array([100.0, 100.0, 100.0, 1000.0, 1000.0])
    share = np.full(5, 0.01)
    present = np.full(5, 799.0)
    terms = statistics.unseen_term(np.array([0.0, 1.0, 3.0, 10.0, 20.0]), rows, share, present)
    # Expected max(1, 1) = 1 row at 100 (10 at 1,000): only the excess beyond half a row,
    # over the beta-binomial variance ((N + n) / (N + 1) times the expected count).
    prior = 799.0 / 0.99
    assert terms.tolist() == pytest.approx(
        [
            0.0,
            0.0,
            1.5**2 / ((prior + 100) / (prior + 1)),
            0.0,
            9.5**2 / 10 / ((prior + 1000) / (prior + 1)),
        ]
    )


def test_continuous_features_score_as_without_a_discrete_neighbour() -> None:
    rng = np.random.default_rng(5)
    continuous = rng.normal(0.0, 1.0, (400, 1))
    alone = _profile(continuous)
    together = _profile(np.hstack([continuous, _pixels(rng, 400)]))
    assert together.features[0] == alone.features[0]
    window = rng.normal(0.2, 1.0, (WINDOW, 1))
    both = np.hstack([window, _pixels(rng, WINDOW) + 0.3])
    scored_alone = _scores(alone, window)
    scored_together = _scores(together, both)
    for statistic in Statistic:
        assert scored_together.scores[statistic][0] == scored_alone.scores[statistic][0]
    assert scored_together.out_of_range_rate[0] == scored_alone.out_of_range_rate[0]


def test_float32_values_of_decimal_steps_are_on_the_support() -> None:
    rng = np.random.default_rng(6)
    reference = rng.integers(0, 11, (500, 1)) / 10.0  # 0.0, 0.1, ..., 1.0
    profile = _profile(reference)
    feature = profile.features[0]
    assert isinstance(feature, profiles.NumericFeature)
    assert feature.support
    window = (rng.integers(0, 11, (WINDOW, 1)) / 10.0).astype(np.float32).astype(np.float64)
    assert _scores(profile, window).out_of_range_rate[0] == 0.0
    assert _scores(profile, window + 0.05).out_of_range_rate[0] == 1.0


def test_missing_values_are_missing_not_unseen() -> None:
    rng = np.random.default_rng(7)
    profile = _profile(_pixels(rng, 800))
    window = _pixels(rng, WINDOW)
    window[:25, 0] = np.nan
    window[25:30, 0] = np.inf
    scores = _scores(profile, window)
    assert scores.missing_rate[0] == pytest.approx(30 / WINDOW)
    assert scores.out_of_range_rate[0] == 0.0


def test_an_old_profile_without_a_support_still_works_as_before() -> None:
    """A profile written before the support (no ``support`` key) with its stored tables."""
    rng = np.random.default_rng(8)
    reference = _pixels(rng, 800, features=2)
    document = profiledocuments.to_document(_profile(reference))
    for feature in document["features"]:
        del feature["support"]
    old = profiledocuments.from_document(document)
    assert all(isinstance(f, profiles.NumericFeature) and not f.support for f in old.features)
    stored = calibration.store(old, WINDOW, 0.01 / 2)
    document["calibrations"] = [
        profiledocuments.to_document(
            profiles.Profile(old.features, old.rows, calibrations=(stored,))
        )["calibrations"][0]
    ]
    reread = profiledocuments.from_document(copy.deepcopy(document))
    monitor = _monitor(reread, false_alarm_rate=0.01)
    assert monitor.calibrated_at_start == {"request": False}  # its stored tables fit
    window = _pixels(rng, WINDOW, features=2)
    (clean,) = monitor.add([_batch(window)])
    (shifted,) = monitor.add([_batch(window + 0.3)])
    # As before: the shift stays within the bins, so nothing changes but the out-of-range
    # values at the top (16.3 > 16).
    assert not any(clean.active)
    assert not any(shifted.active)
    assert shifted.scores.out_of_range_rate[0] < 0.1


def test_a_stored_calibration_of_a_profile_with_a_support_is_used() -> None:
    rng = np.random.default_rng(9)
    profile = _profile(_pixels(rng, 800, features=2))
    stored = calibration.store(profile, WINDOW, 0.01 / 2)
    with_tables = profiles.Profile(profile.features, profile.rows, calibrations=(stored,))
    reread = profiledocuments.from_document(profiledocuments.to_document(with_tables))
    assert reread.features == profile.features
    monitor = _monitor(reread, false_alarm_rate=0.01)
    assert monitor.calibrated_at_start == {"request": False}
    window = _pixels(rng, WINDOW, features=2)
    window[:, 1] += 0.3
    (result,) = monitor.add([_batch(window)])
    assert result.active == (False, True)


def test_stored_tables_made_before_chi_squares_unseen_term_are_not_used_for_a_support() -> None:
    """Revision 1 (no ``revision`` key): chi-square's tables lack the unseen term.

    They do not fit a profile with a support, so the monitor calibrates at start (the old
    code used them, and chi-square's thresholds were those of another statistic); a
    profile without a support keeps using them.
    """
    rng = np.random.default_rng(12)
    profile = _profile(_pixels(rng, 800, features=2))
    stored = calibration.store(profile, WINDOW, 0.01 / 2)
    document = profiledocuments.to_document(
        profiles.Profile(profile.features, profile.rows, calibrations=(stored,))
    )
    assert document["calibrations"][0]["revision"] == 3
    del document["calibrations"][0]["revision"]
    del document["calibrations"][0]["leastExpected"]  # revision 3's: bins merged
    old = profiledocuments.from_document(copy.deepcopy(document))
    assert old.calibrations[0].revision == 1
    monitor = _monitor(old, statistic=Statistic.CHI_SQUARE, false_alarm_rate=0.01)
    assert monitor.calibrated_at_start == {"request": True}
    window = _pixels(rng, WINDOW, features=2)
    window[:, 0] += 0.3
    (result,) = monitor.add([_batch(window)])
    assert result.active == (True, False)
    for feature in document["features"]:
        del feature["support"]
    del document["calibrations"]
    without_support = profiledocuments.from_document(document)
    stored = calibration.store(without_support, WINDOW, 0.01 / 2)
    document["calibrations"] = profiledocuments.to_document(
        profiles.Profile(without_support.features, without_support.rows, calibrations=(stored,))
    )["calibrations"]
    del document["calibrations"][0]["revision"]
    del document["calibrations"][0]["leastExpected"]
    old = profiledocuments.from_document(document)
    monitor = _monitor(old, statistic=Statistic.CHI_SQUARE, false_alarm_rate=0.01)
    assert monitor.merged == ()  # no bin merges at 250 rows: revision 1's bins are these
    assert monitor.calibrated_at_start == {"request": False}


def test_a_calibration_of_a_newer_revision_is_refused_with_its_path() -> None:
    rng = np.random.default_rng(13)
    profile = _profile(_pixels(rng, 300))
    stored = calibration.store(profile, WINDOW, 0.01)
    document = profiledocuments.to_document(
        profiles.Profile(profile.features, profile.rows, calibrations=(stored,))
    )
    document["calibrations"][0]["revision"] = 4
    with pytest.raises(profiles.ProfileError, match=r"calibrations\[0\]\.revision: 4 is newer"):
        profiledocuments.from_document(document)


def _with(change: Any) -> dict[str, Any]:
    rng = np.random.default_rng(10)
    document = profiledocuments.to_document(_profile(_pixels(rng, 200)))
    change(document["features"][0]["support"])
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(values=s["values"][::-1]), r"features\[0\]\.support\.values: must"),
        (lambda s: s["counts"].__setitem__(0, 1), r"features\[0\]\.support\.counts: must add"),
        (lambda s: s["counts"].pop(), r"features\[0\]\.support: 'values' and 'counts'"),
        (lambda s: s["values"].__setitem__(-1, 99.0), r"support\.values: must run from"),
        (lambda s: s["values"].__setitem__(1, "x"), r"support\.values\[1\]: expected a finite"),
        (lambda s: s.pop("values"), r"features\[0\]\.support: expected non-empty lists"),
    ],
)
def test_a_broken_support_is_refused_with_its_path(change: Any, message: str) -> None:
    with pytest.raises(profiles.ProfileError, match=message):
        profiledocuments.from_document(_with(change))


@pytest.mark.parametrize("support", [[0.0, 1.0, 2.0, 5.0, 16.0], [-3.0, 0.0, 7.0], [4.0]])
def test_the_whole_number_lookup_agrees_with_the_interval_search(support: list[float]) -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [
            rng.integers(-6, 20, 400).astype(np.float64),
            rng.uniform(-6, 20, 200),
            [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e300, 2.0 + 1e-12, 4.0000001],
        ]
    )
    finite = np.isfinite(values)
    test = profiles.SupportTest.of(support)
    assert test.members is not None  # whole numbers: the lookup table
    by_search = profiles.SupportTest(test.bounds)
    assert np.array_equal(test.off(values, finite), by_search.off(values, finite))
    with np.errstate(invalid="ignore"):
        distance = np.abs(values[:, None] - np.array(support)[None, :])
        on = np.any(distance <= profiles.SUPPORT_TOLERANCE * np.abs(support), axis=1)
    assert np.array_equal(test.off(values, finite), finite & ~on)
    top = support[-1]
    assert not test.off(np.array([top + 1e-12]), np.array([True]))[0]  # within tolerance
    assert test.off(np.array([top + 0.001]), np.array([True]))[0]
