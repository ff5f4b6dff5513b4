"""Thin bins merged for the monitor's window (issue 18, the window-100 gap).

Before this, the monitor scored and calibrated on the profile's bins whatever its window:
at 100 rows a bin holding 5 % of the reference expects 5 rows, clean windows leave it
empty or double it, and the calibrated null of PSI, chi-square and Jensen–Shannon rose
above the small moves a subpopulation makes (digits' label subpopulation: PSI 30 %
against a per-column KS test's 50 %). The merge was measured in the evaluation harness
only; stored calibrations were fingerprinted on the unmerged bins.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
import pytest
import yaml

from modelshield.api.v1alpha1 import policies
from modelshield.cli import main as cli
from modelshield.controllers.builders import driftmonitors
from modelshield.drift import (
    binmerging,
    calibration,
    config,
    datasets,
    layouts,
    monitoring,
    payloads,
    profiledocuments,
    profiles,
    storedcalibration,
)

Statistic = policies.DriftStatistic


def _numeric(
    counts: list[int], missing: int = 0, edges: list[float] | None = None, **extra: Any
) -> profiles.NumericFeature:
    edges = edges if edges is not None else [float(i) for i in range(len(counts) + 1)]
    return profiles.NumericFeature(
        name="x",
        edges=tuple(edges),
        counts=tuple(counts),
        missing=missing,
        mean=0.0,
        std=1.0,
        centres=tuple(a + 0.25 for a in edges[:-1]),
        **extra,
    )


THIN = [600, 50, 50, 50, 50, 50, 50, 50, 50]
"""1,000 reference rows: one bin of 60 % and eight of 5 % (5 rows each of a 100-row window)."""


def test_adjacent_thin_bins_merge_from_the_lowest_up() -> None:
    merged = binmerging.merged_feature(_numeric(THIN), window=100, least=10)
    assert merged.counts == (600, 100, 100, 100, 100)
    assert merged.edges == (0.0, 1.0, 3.0, 5.0, 7.0, 9.0)
    # Each group's reference mean: its bins' means weighted by their counts.
    assert merged.centres == pytest.approx((0.25, 1.75, 3.75, 5.75, 7.75))
    assert (merged.missing, merged.mean, merged.std) == (0, 0.0, 1.0)


def test_a_short_last_group_joins_the_one_before() -> None:
    merged = binmerging.merged_feature(_numeric([30, 30, 30, 5]), window=100, least=10)
    assert merged.counts == (30, 30, 35)
    assert merged.edges == (0.0, 1.0, 2.0, 4.0)


def test_a_feature_that_would_keep_one_bin_keeps_its_bins() -> None:
    """95 zeros and 5 ones of 100 rows: one bin could not see the ones move."""
    binary = _numeric([95, 5], edges=[0.0, 0.5, 1.0])
    assert binmerging.merged_feature(binary, window=100, least=10) is binary
    everything_thin = _numeric([3, 3, 3])  # the whole feature expects fewer than 10 rows
    assert binmerging.merged_feature(everything_thin, window=1, least=10) is everything_thin


def test_expected_rows_count_the_missing_and_the_missing_slot_is_never_merged() -> None:
    # 200 rows, half missing: a 45-row bin expects 22.5 rows of 100, a 5-row bin 2.5.
    feature = _numeric([45, 5, 5, 45], missing=100)
    merged = binmerging.merged_feature(feature, window=100, least=10)
    assert merged.counts == (45, 55)  # 2.5 + 2.5 + 22.5: the last three bins form one group
    assert merged.missing == 100


def test_a_discrete_support_is_kept_and_categories_are_not_merged() -> None:
    pixel = _numeric(THIN, support=tuple(float(v) for v in range(9)), support_counts=tuple(THIN))
    country = profiles.CategoricalFeature("country", ("DE", "FR", "IT"), (990, 5, 5), 0, 0)
    profile = profiles.Profile((pixel, country), rows=1000)
    scored = binmerging.for_window(profile, 100, 10)
    merged_pixel, same_country = scored.features
    assert isinstance(merged_pixel, profiles.NumericFeature)
    assert merged_pixel.counts == (600, 100, 100, 100, 100)
    assert (merged_pixel.support, merged_pixel.support_counts) == (pixel.support, tuple(THIN))
    assert same_country is country
    assert binmerging.merged_names(profile, scored) == ("x",)


def test_nothing_merges_at_large_windows_or_without_a_least_count() -> None:
    profile = profiles.Profile((_numeric(THIN),), rows=1000)
    assert binmerging.for_window(profile, 1000, 10) is profile
    assert binmerging.for_window(profile, 100, 0) is profile


def test_live_values_land_in_the_merged_bin_of_their_bins() -> None:
    """Counting in the merged bins is counting in the profile's and summing each group."""
    rng = np.random.default_rng(3)
    reference = rng.lognormal(0, 1, 285)
    feature = profiles.build_numeric("x", reference)
    merged = binmerging.merged_feature(feature, 100, 10)
    assert len(merged.counts) < len(feature.counts)  # 28-29 rows of 285: 9.8 expected
    live = np.concatenate([rng.lognormal(0.2, 1, 500), [np.nan, -1.0, 1e9]])
    fine = np.bincount(
        profiles.bin_numeric(profiles.upper_edges(feature.edges), live),
        minlength=len(feature.counts) + 2,
    )
    coarse = np.bincount(
        profiles.bin_numeric(profiles.upper_edges(merged.edges), live),
        minlength=len(merged.counts) + 2,
    )
    ends = binmerging.group_ends(feature.counts, 285, 100, 10)
    starts = [0, *(end + 1 for end in ends[:-1])]
    summed = [fine[1 + a : 2 + b].sum() for a, b in zip(starts, ends, strict=True)]
    assert coarse[1:-1].tolist() == summed
    assert (coarse[0], coarse[-1]) == (fine[0], fine[-1])  # below, above (and NaN) alike


# The monitor's path.


def _thin_profile() -> profiles.Profile:
    return profiles.Profile((_numeric(THIN),), rows=1000)


def _window() -> np.ndarray[Any, Any]:
    """A window of 100 rows: each pair of thin bins holds its 10 expected rows, but every
    second pair all in one bin (10 and 0 where 5 and 5 are expected)."""
    rows = [0.5] * 60
    for pair in range(4):
        rows += [1.5 + 2 * pair] * 10 if pair % 2 == 0 else [2.5 + 2 * pair] * 10
    return np.array(rows, dtype=np.float64)[:, None]


def _monitor(profile: profiles.Profile, **settings: Any) -> monitoring.Monitor:
    merged = {"profile": "-", "window": 100, "false_alarm_rate": 0.01, **settings}
    return monitoring.Monitor(config.MonitorConfig(**merged), profile)


def _alarms(monitor: monitoring.Monitor) -> tuple[bool, ...]:
    window = _window()
    batch = payloads.Batch("request", window, np.empty((window.shape[0], 0), dtype=np.intp))
    (result,) = monitor.add([batch])
    return result.active


def test_the_monitor_scores_on_merged_bins_where_the_planted_window_is_clean() -> None:
    merged = _monitor(_thin_profile())
    assert merged.merged == ("x",)
    assert merged.least_expected == binmerging.DEFAULT_LEAST_EXPECTED
    assert _alarms(merged) == (False,)  # every merged bin holds its 10 expected rows
    # The same window on the profile's bins: four empty bins where 5 rows are expected.
    assert _alarms(_monitor(_thin_profile(), least_expected=0)) == (True,)


def test_fixed_thresholds_keep_the_profiles_bins() -> None:
    monitor = _monitor(_thin_profile(), false_alarm_rate=None, threshold=0.2)
    assert (monitor.merged, monitor.least_expected) == ((), 0.0)
    assert _alarms(monitor) == (True,)


def test_the_config_default_is_the_merges() -> None:
    assert config.MonitorConfig(profile="-").least_expected == binmerging.DEFAULT_LEAST_EXPECTED
    with pytest.raises(config.ConfigError, match="leastExpected"):
        config.parse({"profile": "p", "leastExpected": -1}, pathlib.Path("."), {})


# Stored calibrations: revision 3 is made on the merged bins.


def _stored_document(profile: profiles.Profile, stored: Any) -> dict[str, Any]:
    return profiledocuments.to_document(dataclasses.replace(profile, calibrations=(stored,)))


def test_tables_made_on_unmerged_bins_are_not_used_with_merged_ones() -> None:
    """A revision-2 table (what the profile command wrote before) on bins that now merge."""
    profile = _thin_profile()
    old = dataclasses.replace(calibration.store(profile, 100, 0.01, least_expected=0), revision=2)
    document = _stored_document(profile, old)
    assert "leastExpected" not in document["calibrations"][0]
    read = profiledocuments.from_document(document)
    monitor = _monitor(read)
    assert monitor.calibrated_at_start == {"request": True}
    assert "made on unmerged bins (revision 2)" in monitor.null_tables["request"]
    assert _alarms(monitor) == (False,)  # the merged bins' own null, simulated at start
    # A monitor on the profile's bins may use them: they were made on those.
    assert _monitor(read, least_expected=0).calibrated_at_start == {"request": False}
    # Where nothing merges (1,000 rows) the profile's bins are the scored ones: used.
    at_1000 = dataclasses.replace(calibration.store(profile, 1000, 0.01), revision=2)
    read = profiledocuments.from_document(_stored_document(profile, at_1000))
    assert _monitor(read, window=1000).calibrated_at_start == {"request": False}


def test_revision_3_tables_are_fingerprinted_on_the_merged_bins() -> None:
    profile = _thin_profile()
    stored = calibration.store(profile, 100, 0.01)
    assert (stored.revision, stored.least_expected) == (3, binmerging.DEFAULT_LEAST_EXPECTED)
    merged = binmerging.for_window(profile, 100, binmerging.DEFAULT_LEAST_EXPECTED)
    assert stored.fingerprint == profiledocuments.fingerprint(merged)
    assert stored.fingerprint != profiledocuments.fingerprint(profile)
    read = profiledocuments.from_document(_stored_document(profile, stored))
    assert read.calibrations[0].least_expected == binmerging.DEFAULT_LEAST_EXPECTED
    assert _monitor(read).calibrated_at_start == {"request": False}
    # Tables of merged bins do not fit a monitor on the profile's bins, nor other merges.
    assert _monitor(read, least_expected=0).calibrated_at_start == {"request": True}
    assert _monitor(read, least_expected=25).calibrated_at_start == {"request": True}


def test_least_expected_is_read_only_from_revision_3() -> None:
    profile = _thin_profile()
    document = _stored_document(profile, calibration.store(profile, 100, 0.01))
    document["calibrations"][0]["revision"] = 2
    with pytest.raises(profiles.ProfileError, match=r"leastExpected: only revision 3"):
        profiledocuments.from_document(document)
    document["calibrations"][0]["revision"] = 3
    document["calibrations"][0]["leastExpected"] = -1
    with pytest.raises(profiles.ProfileError, match=r"leastExpected: expected a finite number"):
        profiledocuments.from_document(document)
    assert storedcalibration.REVISION == 3


# `modelshield drift profile` and the operator's monitor.


def _write_data(path: pathlib.Path, rows: int = 285) -> None:
    """285 rows, as breast cancer's references: quantile tenths expect 9.8 rows of 100."""
    rng = np.random.default_rng(11)
    lines = ["size,texture,flag"]
    for _ in range(rows):
        lines.append(
            f"{rng.lognormal(3, 0.4):.4f},{rng.normal(20, 4):.4f},{int(rng.random() < 0.1)}"
        )
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("merged")
    _write_data(directory / "train.csv")
    out = directory / "profile.json"
    arguments = ["drift", "profile", str(directory / "train.csv"), "--out", str(out)]
    code = cli.main([*arguments, "--window", "100", "--window", "1000", "--no-outliers"])
    assert code == 0
    return out


def test_the_profile_command_says_which_bins_merge(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_data(tmp_path / "train.csv")
    arguments = ["drift", "profile", str(tmp_path / "train.csv"), "--out", str(tmp_path / "p")]
    assert cli.main([*arguments, "--window", "100", "--window", "1000", "--no-outliers"]) == 0
    printed = capsys.readouterr().out
    assert "windows of 100: thin bins merged to at least 10 expected rows in 2 features" in printed
    assert "windows of 1000:" not in printed


def test_the_profile_command_calibrates_on_the_bins_merged_for_each_window(
    profiled: pathlib.Path,
) -> None:
    document = json.loads(profiled.read_text())
    at_100, at_1000 = document["calibrations"]
    assert (at_100["revision"], at_100["leastExpected"]) == (3, 10)
    profile = datasets.read_profile(profiled)
    merged = binmerging.for_window(profile, 100, 10)
    assert binmerging.merged_names(profile, merged) == ("size", "texture")  # not the 0/1 flag
    assert at_100["fingerprint"] == profiledocuments.fingerprint(merged)
    assert at_1000["fingerprint"] == profiledocuments.fingerprint(profile)  # nothing merges
    # The stored tables are the merged bins' own: the same simulation, the same seed.
    layout = layouts.build(merged, merged.names)
    fresh = calibration.calibrate(layout, 100, tail=at_100["tails"][-1] * 1.0000001)
    psi = fresh[Statistic.PSI].thresholds(0.01 / 3)
    stored = calibration.stored(profile, layout, 100, 0.01 / 3)
    assert stored is not None
    assert stored[Statistic.PSI].thresholds(0.01 / 3) == pytest.approx(psi, rel=1e-5)


def test_the_operators_monitor_reads_the_merged_tables(
    profiled: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A policy's window and falseAlarmRate through the ConfigMap to the monitor's start."""
    drift = policies.DriftMonitoring.model_validate(
        {
            "referenceProfile": {"name": "ref", "key": "profile.json"},
            "falseAlarmRate": 0.01,
            "window": 100,
        }
    )
    target = driftmonitors.Target("apps/v1", "Deployment", "model", "ml", "uid-1")
    config_map = driftmonitors.build_config_map(
        name="m", namespace="ml", drift=drift, target=target, profile=profiled.read_text()
    )
    for key, value in config_map["data"].items():
        (tmp_path / key).write_text(value)
    settings = config.parse(
        yaml.safe_load(config_map["data"][driftmonitors.CONFIG_KEY]), tmp_path, {}
    )
    monitor = monitoring.Monitor(settings, datasets.read_profile(pathlib.Path(settings.profile)))
    assert monitor.merged == ("size", "texture")
    assert monitor.calibrated_at_start == {"request": False}
    assert monitor.null_tables == {"request": "from the profile's calibration"}
    # Its windows are counted in the merged bins.
    (layout,) = monitor.layouts_by_stream.values()
    size = monitor.scored.feature("size")
    profiled_size = monitor.profile.feature("size")
    assert isinstance(size, profiles.NumericFeature)
    assert isinstance(profiled_size, profiles.NumericFeature)
    assert len(size.counts) < len(profiled_size.counts)
    assert layout.uppers[0].tolist() == profiles.upper_edges(size.edges).tolist()


def test_a_profile_made_without_merging_is_calibrated_at_start_by_a_merging_monitor(
    tmp_path: pathlib.Path,
) -> None:
    _write_data(tmp_path / "train.csv")
    out = tmp_path / "profile.json"
    arguments = ["drift", "profile", str(tmp_path / "train.csv"), "--out", str(out)]
    assert cli.main([*arguments, "--window", "100", "--least-expected", "0", "--no-outliers"]) == 0
    profile = datasets.read_profile(out)
    assert _monitor(profile).calibrated_at_start == {"request": True}
    assert _monitor(profile, least_expected=0).calibrated_at_start == {"request": False}
    assert cli.main([*arguments, "--least-expected", "-1", "--no-outliers"]) == 2
