"""Calibrations stored in the profile: computed by `modelshield drift profile`, used by the monitor.

Before issue 18's second stop the monitor simulated its null tables at every start (seconds
of CPU for 64 features) and the profile had no place for them; a version-1 profile must
still load and be calibrated at start.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pytest
import yaml

from modelshield.api.v1alpha1 import policies
from modelshield.cli import main as cli
from modelshield.controllers import caches, planning
from modelshield.controllers.builders import driftmonitors
from modelshield.drift import (
    calibration,
    config,
    datasets,
    layouts,
    monitoring,
    payloads,
    profiledocuments,
    profiles,
)

Statistic = policies.DriftStatistic
WINDOW = 200


def _write_data(path: pathlib.Path, rows: int = 400) -> None:
    rng = np.random.default_rng(4)
    lines = ["age,income,flag,country"]
    for _ in range(rows):
        lines.append(
            f"{rng.normal(40, 10):.3f},{rng.lognormal(10, 1):.2f},"
            f"{int(rng.random() < 0.3)},{rng.choice(['DE', 'FR', 'IT'])}"
        )
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("calibrated")
    _write_data(directory / "train.csv")
    out = directory / "profile.json"
    code = cli.main(
        [
            "drift",
            "profile",
            str(directory / "train.csv"),
            "--out",
            str(out),
            "--window",
            str(WINDOW),
            "--window",
            "500",
            "--false-alarm-rate",
            "0.01",
        ]
    )
    assert code == 0
    return out


def _monitor(profile: profiles.Profile, **settings: Any) -> monitoring.Monitor:
    settings = {"window": WINDOW, "false_alarm_rate": 0.01, **settings}
    return monitoring.Monitor(config.MonitorConfig(profile="-", **settings), profile)


def _version_1(profile: profiles.Profile) -> dict[str, Any]:
    document = profiledocuments.to_document(profile)
    document.pop("calibrations")
    document["version"] = 1
    return document


def test_the_profile_command_stores_a_calibration_per_window(calibrated: pathlib.Path) -> None:
    document = json.loads(calibrated.read_text())
    assert document["version"] == 2
    assert [item["window"] for item in document["calibrations"]] == [WINDOW, 500]
    stored = document["calibrations"][0]
    # Resolved down to the rate over every profiled feature (0.01 / 4) without extrapolating.
    assert stored["tails"][-1] <= 0.01 / 4
    assert set(stored["features"]["age"]) == {statistic.value for statistic in Statistic}
    # KS and Wasserstein do not apply to a categorical feature: not stored.
    assert set(stored["features"]["country"]) == {"PSI", "ChiSquare", "JensenShannon"}


def test_the_monitor_uses_the_stored_calibration(calibrated: pathlib.Path) -> None:
    profile = datasets.read_profile(calibrated)
    monitor = _monitor(profile)
    assert monitor.calibrated_at_start == {"request": False}
    layout = layouts.build(profile, profile.names)
    stored = calibration.stored(profile, layout, WINDOW, 0.01 / 4)
    assert stored is not None
    expected = stored[Statistic.PSI].thresholds(0.01 / 4)
    assert [t for _, _, t in monitor.thresholds("request")] == pytest.approx(expected.tolist())


def test_a_version_1_profile_loads_and_is_calibrated_at_start(calibrated: pathlib.Path) -> None:
    stored_profile = datasets.read_profile(calibrated)
    old = profiledocuments.from_document(_version_1(stored_profile))
    assert old.calibrations == ()
    monitor = _monitor(old)
    assert monitor.calibrated_at_start == {"request": True}
    # The same simulation from the same histograms: the same thresholds up to the noise of
    # different random draws (each is a tail quantile read from thousands of windows).
    fresh = np.array([t for _, _, t in monitor.thresholds("request")])
    stored = np.array([t for _, _, t in _monitor(stored_profile).thresholds("request")])
    assert fresh == pytest.approx(stored, rel=0.25)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"window": 300}, "no calibration for this window"),
        ({"false_alarm_rate": 0.001}, "a smaller tail than the stored tables resolve"),
    ],
)
def test_what_the_stored_tables_do_not_cover_is_calibrated_at_start(
    calibrated: pathlib.Path, change: dict[str, Any], why: str
) -> None:
    monitor = _monitor(datasets.read_profile(calibrated), **change)
    assert monitor.calibrated_at_start == {"request": True}, why


def test_a_profile_edited_after_calibration_is_calibrated_at_start(
    calibrated: pathlib.Path,
) -> None:
    document = json.loads(calibrated.read_text())
    document["features"][0]["counts"][0] += 50  # stale tables for these histograms
    monitor = _monitor(profiledocuments.from_document(document))
    assert monitor.calibrated_at_start == {"request": True}


def test_a_subset_of_the_features_uses_the_stored_rows(calibrated: pathlib.Path) -> None:
    profile = datasets.read_profile(calibrated)
    monitor = _monitor(profile, features=["income", "country"])
    assert monitor.calibrated_at_start == {"request": False}
    whole = dict((name, t) for name, _, t in _monitor(profile).thresholds("request"))
    for name, _, threshold in monitor.thresholds("request"):
        # Fewer features watched: a larger tail each, so a lower threshold.
        assert threshold < whole[name]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(window=0), r"calibrations\[0\].window: expected an integer >= 1"),
        (lambda c: c.update(tails=[0.5, 0.1]), r"calibrations\[0\].tails: must fall from 1"),
        (
            lambda c: c["features"]["age"].update(PSI=[1.0]),
            r"calibrations\[0\].features.age.PSI: expected \d+ numbers",
        ),
        (
            lambda c: c["features"]["age"].update(PSI=sorted(c["features"]["age"]["PSI"])[::-1]),
            r"calibrations\[0\].features.age.PSI: quantiles must not decrease",
        ),
        (
            lambda c: c["features"]["age"].update(Entropy=[0.0]),
            r"calibrations\[0\].features.age: unknown statistics Entropy",
        ),
        (lambda c: c.pop("fingerprint"), r"calibrations\[0\].fingerprint: expected"),
    ],
)
def test_a_broken_calibration_is_refused_with_its_path(
    calibrated: pathlib.Path, mutate: Any, message: str
) -> None:
    document = json.loads(calibrated.read_text())
    mutate(document["calibrations"][0])
    with pytest.raises(profiles.ProfileError, match=message):
        profiledocuments.from_document(document)


def test_the_monitor_deployed_by_the_operator_uses_the_calibrated_profile(
    calibrated: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    drift = policies.DriftMonitoring.model_validate(
        {
            "referenceProfile": {"name": "ref", "key": "profile.json"},
            "falseAlarmRate": 0.01,
            "window": WINDOW,
        }
    )
    target = driftmonitors.Target("apps/v1", "Deployment", "fraud", "ml", "uid-1")
    config_map = driftmonitors.build_config_map(
        name="m", namespace="ml", drift=drift, target=target, profile=calibrated.read_text()
    )
    # What the monitor's pod mounts: the ConfigMap's keys as files.
    for key, value in config_map["data"].items():
        (tmp_path / key).write_text(value)
    settings = config.parse(
        yaml.safe_load(config_map["data"][driftmonitors.CONFIG_KEY]), tmp_path, {}
    )
    monitor = monitoring.Monitor(settings, datasets.read_profile(pathlib.Path(settings.profile)))
    assert monitor.calibrated_at_start == {"request": False}


def _planned_monitor(
    profile_text: str, mount: pathlib.Path, statistic: str = "PSI"
) -> monitoring.Monitor:
    """What the operator's planner deploys for a policy with falseAlarmRate, started as the pod would.

    The policy and workload go through ``planning.plan`` (what the reconciler applies); the
    planned ConfigMap's keys are written where the planned Deployment mounts it (``mount``
    stands for its mountPath), and the monitor is loaded from the container's ``--config``
    as ``modelshield drift-monitor`` loads it.
    """
    policy = {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "watch", "namespace": "ml", "uid": "uid-watch", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "fraud"}},
            "monitoring": {
                "drift": {
                    "referenceProfile": {"name": "ref", "key": "profile.json"},
                    "falseAlarmRate": 0.01,
                    "window": WINDOW,
                    "statistic": statistic,
                }
            },
        },
    }
    workload = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "uid-fraud"},
        "spec": {
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud"}},
                "spec": {"containers": [{"name": "m", "image": "i"}]},
            },
        },
    }
    world = caches.World()
    world.put_namespace({"metadata": {"name": "ml"}})
    world.put_policy(policy)
    world.put_workload(workload)
    settings = planning.Settings(monitor=driftmonitors.MonitorSettings(image="modelshield:test"))
    plan = planning.plan(world, ("Deployment", "ml", "fraud"), settings, profile_text)
    (config_map,) = [m for k, m in plan.desired.items() if k[0] == "ConfigMap"]
    (deployment,) = [m for k, m in plan.desired.items() if k[0] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    (mounted,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    config_path = pathlib.PurePosixPath(container["args"][container["args"].index("--config") + 1])
    for key, value in config_map["data"].items():
        (mount / key).write_text(value)
    settings_file = mount / config_path.relative_to(mounted["mountPath"])
    loaded = config.load(settings_file, {})
    assert loaded.false_alarm_rate == 0.01
    return monitoring.Monitor(loaded, datasets.read_profile(pathlib.Path(loaded.profile)))


def test_the_operators_planned_monitor_reads_the_stored_tables(
    calibrated: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    monitor = _planned_monitor(calibrated.read_text(), tmp_path)
    assert monitor.calibrated_at_start == {"request": False}
    # The thresholds it alarms at are the profile's stored ones at 1 % over its 4 features.
    profile = datasets.read_profile(calibrated)
    layout = layouts.build(profile, profile.names)
    stored = calibration.stored(profile, layout, WINDOW, 0.01 / 4)
    assert stored is not None
    used = {(name, statistic): value for name, statistic, value in monitor.thresholds("request")}
    expected = stored[Statistic.PSI].thresholds(0.01 / 4)
    for i, name in enumerate(layout.names):
        assert used[name, Statistic.PSI] == pytest.approx(expected[i])


def test_the_operators_planned_monitor_calibrates_an_uncalibrated_profile_at_start(
    calibrated: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The control: the same path with the calibration removed simulates at start."""
    document = _version_1(datasets.read_profile(calibrated))
    monitor = _planned_monitor(json.dumps(document), tmp_path)
    assert monitor.calibrated_at_start == {"request": True}


def test_the_operators_planned_ks_monitor_tests_missing_shares_on_the_stored_tables(
    calibrated: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """KS cannot see missing values; the deployed monitor tests the missing share too."""
    monitor = _planned_monitor(calibrated.read_text(), tmp_path, "KolmogorovSmirnov")
    assert monitor.calibrated_at_start == {"request": False}
    # Numeric features only: the categorical one is scored by Jensen-Shannon.
    assert [name for name, _ in monitor.missing_thresholds("request")] == ["age", "income", "flag"]
    profile = datasets.read_profile(calibrated)
    layout = layouts.build(profile, profile.names)
    stored = calibration.stored(profile, layout, WINDOW, 0.9 * 0.01 / 4)
    assert stored is not None
    used = {name: value for name, _, value in monitor.thresholds("request")}
    expected = stored[Statistic.KOLMOGOROV_SMIRNOV].thresholds(0.9 * 0.01 / 4)
    assert used["age"] == pytest.approx(expected[layout.names.index("age")])
    # A tenth of income missing: the planned monitor alarms on it, KS alone would not.
    rng = np.random.default_rng(6)
    numeric = np.column_stack(
        [rng.normal(40, 10, WINDOW), rng.lognormal(10, 1, WINDOW), rng.random(WINDOW) < 0.3]
    ).astype(np.float64)
    numeric[: WINDOW // 10, 1] = np.nan
    codes = layout.codes[0]
    categorical = np.full((WINDOW, 1), codes["DE"], dtype=np.intp)
    categorical[: WINDOW // 2, 0] = codes["FR"]
    (result,) = monitor.add([payloads.Batch("request", numeric, categorical)])
    assert [c.feature for c in result.crossings if c.missing_share] == ["income"]
    assert result.alarm_scores[1] <= result.thresholds[1]
