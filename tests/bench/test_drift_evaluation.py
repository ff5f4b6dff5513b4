"""The drift evaluation's designs and intervals (issue 18).

The first evaluation drew every clean window of a split afresh from the same 284 held-out
rows, so windows of 250 shared 88 % of their rows, and it printed two binomial standard
errors as if its 300 windows were independent: 15 splits were about 15 independent
draws, and cells of 2 % to 4 % false alarms were read as failures of the detector.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bench import drift_designs, drift_evaluation, proportions


@pytest.fixture(scope="module")
def cancer() -> drift_designs.Data:
    return drift_designs.load()[0]


def _windows(split: drift_designs.Split, size: int) -> list[np.ndarray]:
    rows = split.rows(split.pool, size, np.random.default_rng(4))
    return list(itertools.islice(rows, split.windows_per_cell(size, 10)))


def test_disjoint_windows_share_no_row_with_each_other_or_the_reference(
    cancer: drift_designs.Data,
) -> None:
    split = drift_designs.split("disjoint", cancer, np.random.default_rng(1))
    windows = _windows(split, 100)
    assert len(windows) == 2  # 284 held-out rows hold two windows of 100, not ten
    taken = np.concatenate(windows)
    assert np.unique(taken).size == taken.size
    reference = split.reference
    assert not np.isin(taken, np.setdiff1d(np.arange(cancer.values.shape[0]), split.pool)).any()
    assert reference.shape[0] + split.pool.size == cancer.values.shape[0]


def test_the_default_design_is_disjoint_and_one_window_per_split() -> None:
    defaults = drift_evaluation.parser().parse_args([])
    assert (defaults.design, defaults.windows) == ("disjoint", 1)


def test_disjoint_clean_windows_of_250_are_one_per_split(cancer: drift_designs.Data) -> None:
    split = drift_designs.split("disjoint", cancer, np.random.default_rng(2))
    produced = list(drift_designs.windows("clean", split, 250, 20, np.random.default_rng(3)))
    assert len(produced) == 1


def test_overlapping_windows_do_overlap(cancer: drift_designs.Data) -> None:
    """What the first evaluation did: 20 windows of 250 from 284 rows share most rows."""
    split = drift_designs.split("overlapping", cancer, np.random.default_rng(1))
    rng = np.random.default_rng(5)
    rows = split.rows(split.pool, 250, rng)
    first, second = next(rows), next(rows)
    assert np.intersect1d(first, second).size > 200


def test_resampled_windows_come_from_every_row(cancer: drift_designs.Data) -> None:
    split = drift_designs.split("resampled", cancer, np.random.default_rng(1))
    assert split.pool.size == cancer.values.shape[0]
    assert split.reference.shape == (cancer.reference_rows, cancer.values.shape[1])


def test_ks_raw_p_values_are_scipys() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(0, 1, (285, 4))
    reference[:, 3] = np.round(reference[:, 3])  # ties
    window = rng.normal(0.2, 1, (100, 4))
    window[:, 3] = np.round(window[:, 3])
    window[rng.choice(100, 10, replace=False), 1] = np.nan
    ours = drift_evaluation.ks_raw_p_values([np.sort(c) for c in reference.T], window)
    theirs = stats.ks_2samp(reference, window, axis=0, method="asymp", nan_policy="omit").pvalue
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    smallest = drift_evaluation.ks_raw_smallest_p_value([np.sort(c) for c in reference.T], window)
    assert smallest == pytest.approx(theirs.min(), rel=1e-12)


def test_clopper_pearson_matches_its_closed_forms() -> None:
    assert proportions.clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert proportions.clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** (1 / 10))
    low, high = proportions.clopper_pearson(3, 300)
    assert stats.binom.sf(2, 300, low) == pytest.approx(0.025)
    assert stats.binom.cdf(3, 300, high) == pytest.approx(0.025)


def test_one_window_per_split_is_plain_clopper_pearson() -> None:
    alarms = [1] * 3 + [0] * 297
    estimate = proportions.interval(alarms, [1] * 300)
    assert estimate.effective == 300
    assert (estimate.low, estimate.high) == proportions.clopper_pearson(3, 300)


def test_windows_that_alarm_together_count_as_one() -> None:
    """20 windows per split that all alarm or none: about 15 draws, not 300."""
    alarms = [20] + [0] * 14
    estimate = proportions.interval(alarms, [20] * 15)
    assert estimate.rate == pytest.approx(20 / 300)
    assert estimate.effective <= 15
    naive = proportions.clopper_pearson(20, 300)
    assert estimate.high > 3 * naive[1]
    assert estimate.low < naive[0] / 4


def test_independent_windows_within_splits_keep_their_count() -> None:
    rng = np.random.default_rng(9)
    alarms = list(rng.binomial(50, 0.1, 40))
    estimate = proportions.interval(alarms, [50] * 40)
    assert 0.5 * 2000 < estimate.effective <= 2000
    assert estimate.low < 0.1 < estimate.high
    assert not math.isnan(estimate.rate)


def test_the_harness_scores_the_bins_the_monitor_scores(cancer: drift_designs.Data) -> None:
    """One merge for the monitor, the profile command and the harness (binmerging)."""
    from modelshield.cli import drift as drift_cli
    from modelshield.drift import binmerging, config, profiles

    split = drift_designs.split("resampled", cancer, np.random.default_rng(6))
    built = profiles.Profile(
        tuple(
            profiles.build_numeric(f"f{j}", split.reference[:, j])
            for j in range(split.reference.shape[1])
        ),
        rows=split.reference.shape[0],
    )
    default = binmerging.DEFAULT_LEAST_EXPECTED
    assert drift_evaluation.parser().parse_args([]).least_expected == default
    assert config.MonitorConfig(profile="-").least_expected == default
    assert default == drift_cli.DEFAULT_LEAST_EXPECTED
    scored = drift_evaluation._profile(split.reference, 100)
    assert scored == binmerging.for_window(built, 100, default)
    assert len(binmerging.merged_names(built, scored)) >= 29  # every tenth expects 9.8 rows
    assert drift_evaluation._profile(split.reference, 100, 0.0) == built
