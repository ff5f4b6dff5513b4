"""Every feature type is seen: low-cardinality numbers, CSV and JSON categories, booleans.

Each test here failed on the code of issue 18: a 0/1 feature had one bin (every score 0),
a CSV cell ``2.0`` and a JSON ``2.0`` were two categories, and a bin's mass sat halfway
between its edges, which inflated Wasserstein on skewed features.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
import pytest
from multidict import CIMultiDict

from modelshield.drift import datasets, layouts, payloads, profiles, rawvalues, statistics, windows

Statistic = statistics.Statistic


def _window_scores(
    profile: profiles.Profile, rows: Sequence[Sequence[object]]
) -> statistics.WindowScores:
    layout = layouts.build(profile, profile.names)
    batch = payloads.to_batch(payloads.Event("request", {"instances": rows}), layout)
    window = windows.TumblingWindow(layout, len(rows))
    slots = windows.encode(layout, batch.numeric, batch.categorical)
    ((counts, sums),) = window.add_rows(slots, batch.numeric)
    return statistics.score(layout, counts, sums)


@pytest.mark.parametrize("distinct", [2, 3, 5, 10])
def test_k_distinct_values_get_k_bins(distinct: int) -> None:
    rng = np.random.default_rng(distinct)
    values = rng.integers(0, distinct, 1000).astype(np.float64)
    feature = profiles.build_numeric("x", values, bins=10)
    assert len(feature.counts) == distinct
    assert list(feature.counts) == np.bincount(values.astype(int), minlength=distinct).tolist()


def test_more_distinct_values_than_bins_keeps_quantile_bins() -> None:
    values = np.arange(11, dtype=np.float64).repeat(10)
    feature = profiles.build_numeric("x", values, bins=10)
    assert len(feature.counts) == 10
    assert sum(feature.counts) == 110


def test_a_binary_feature_moving_from_10_to_90_percent_ones_scores_high() -> None:
    profile = profiles.build({"flag": [1.0] * 100 + [0.0] * 900})
    scores = _window_scores(profile, [[1.0]] * 90 + [[0.0]] * 10)
    for statistic in Statistic:
        assert scores.scores[statistic][0] > 0.3, statistic
    clean = _window_scores(profile, [[1.0]] * 10 + [[0.0]] * 90)
    for statistic in Statistic:
        assert clean.scores[statistic][0] < 1e-9, statistic


def test_wasserstein_of_a_binary_feature_is_the_rate_change_over_the_std() -> None:
    profile = profiles.build({"flag": [1.0] * 100 + [0.0] * 900})
    scores = _window_scores(profile, [[1.0]] * 40 + [[0.0]] * 60)
    std = float(np.std([1.0] * 100 + [0.0] * 900))
    assert scores.scores[Statistic.WASSERSTEIN][0] == pytest.approx(0.3 / std)


def test_csv_float_cells_and_json_numbers_are_the_same_category(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("code\n" + "2.0\n" * 60 + "3.0\n" * 40)
    profile = profiles.build(datasets.read(path), categorical=["code"])
    feature = profile.feature("code")
    assert isinstance(feature, profiles.CategoricalFeature)
    scores = _window_scores(profile, [[2.0]] * 60 + [[3]] * 20 + [["3.0"]] * 20)
    assert scores.out_of_range_rate[0] == 0.0
    assert scores.scores[Statistic.JENSEN_SHANNON][0] < 1e-9


@pytest.mark.parametrize(
    ("spellings", "key"),
    [
        (["2", "2.0", "2.00", " 2 ", 2, 2.0, "+2"], "2"),
        (["2.5", "2.50", 2.5, "25e-1"], "2.5"),
        (["-0", "0.0", 0, -0.0, "0"], "0"),
        (["1e20", 1e20, 100000000000000000000], "100000000000000000000"),
        (["true", "True", "TRUE", True], "true"),
        (["false", "False", False], "false"),
        (["DE", "DE"], "DE"),
        (["007"], "7"),
    ],
)
def test_category_spellings_normalise_alike(spellings: list[object], key: str) -> None:
    assert {rawvalues.category_key(value) for value in spellings} == {key}


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1_000", "0x10", "two"])
def test_strings_that_are_not_plain_decimals_stay_strings(value: str) -> None:
    assert rawvalues.category_key(value) == value


def test_booleans_are_zero_and_one_in_the_profile_and_the_live_path(
    tmp_path: pathlib.Path,
) -> None:
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("flag\n" + "True\n" * 30 + "False\n" * 70)
    jsonl_path = tmp_path / "train.jsonl"
    jsonl_path.write_text("".join(json.dumps({"flag": i < 30}) + "\n" for i in range(100)))
    for path in (csv_path, jsonl_path):
        profile = profiles.build(datasets.read(path))
        feature = profile.feature("flag")
        assert isinstance(feature, profiles.NumericFeature), path
        assert feature.counts == (70, 30), path
        live = _window_scores(profile, [[True]] * 30 + [[False]] * 70)
        assert live.scores[Statistic.PSI][0] < 1e-9
        assert live.out_of_range_rate[0] == 0.0


def test_numeric_strings_in_a_numeric_feature_count_as_their_number() -> None:
    profile = profiles.build({"x": [float(i) for i in range(100)]})
    as_numbers = _window_scores(profile, [[float(i)] for i in range(100)])
    as_strings = _window_scores(profile, [[str(float(i))] for i in range(100)])
    for statistic in Statistic:
        assert as_strings.scores[statistic][0] == as_numbers.scores[statistic][0]


def test_a_word_in_a_numeric_feature_is_refused() -> None:
    profile = profiles.build({"x": [float(i) for i in range(100)]})
    layout = layouts.build(profile, ["x"])
    with pytest.raises(payloads.PayloadError) as caught:
        payloads.parse(CIMultiDict(), b'{"instances": [["high"]]}', {"request": layout})
    assert caught.value.reason == "wrong-type"


def test_binned_wasserstein_is_not_inflated_on_a_skewed_feature() -> None:
    rng = np.random.default_rng(3)
    reference = rng.lognormal(0.0, 1.5, 20_000)
    live = rng.lognormal(0.0, 1.5, 5_000)
    profile = profiles.build({"x": reference.tolist()})
    scores = _window_scores(profile, [[value] for value in live.tolist()])
    # The same distribution: the exact distance between the samples is small, and the
    # binned one must not be several times larger.
    assert scores.scores[Statistic.WASSERSTEIN][0] < 0.05


def test_wasserstein_sees_how_far_out_of_range_the_values_are() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0.0, 1.0, 20_000)
    profile = profiles.build({"x": reference.tolist()})
    near = _window_scores(profile, [[value] for value in (reference[:1000] + 5.0).tolist()])
    far = _window_scores(profile, [[value] for value in (reference[:1000] + 50.0).tolist()])
    assert near.scores[Statistic.WASSERSTEIN][0] == pytest.approx(5.0, rel=0.15)
    assert far.scores[Statistic.WASSERSTEIN][0] == pytest.approx(50.0, rel=0.15)
