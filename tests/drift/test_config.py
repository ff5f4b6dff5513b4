"""The monitor configuration file and its environment."""

from __future__ import annotations

import pathlib

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.drift import config


def test_policy_fields_carry_over_and_profile_paths_are_relative_to_the_file(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "profile: profile.json\nfeatures: [a, b]\nstatistic: KolmogorovSmirnov\nthreshold: 0.15\n"
        "window: 2000\nqueueSize: 10\nworkload: {apiVersion: apps/v1, kind: Deployment, name: iris}\n"
    )
    settings = config.load(path, {})
    assert settings.profile == str(tmp_path / "profile.json")
    assert settings.features == ["a", "b"]
    assert settings.statistic is policies.DriftStatistic.KOLMOGOROV_SMIRNOV
    assert (settings.threshold, settings.window, settings.queue_size) == (0.15, 2000, 10)
    assert settings.workload is not None
    assert settings.workload.kind == "Deployment"


def test_the_policy_block_validates_as_a_config() -> None:
    # The operator copies the policy's fields; their wire names are the config's.
    block = policies.DriftMonitoring.model_validate(
        {
            "referenceProfile": {"name": "p", "key": "profile.json"},
            "features": ["a"],
            "statistic": "ChiSquare",
        }
    )
    wire = block.model_dump(by_alias=True, mode="json", exclude={"reference_profile"})
    settings = config.parse({"profile": "/etc/profile.json", **wire}, pathlib.Path("/"), {})
    assert settings.statistic is policies.DriftStatistic.CHI_SQUARE
    assert settings.window == block.window


def test_workload_and_file_from_the_environment(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"profile": "/p.json"}')
    environ = {
        config.CONFIG_ENV: str(path),
        config.WORKLOAD_ENV: "serving.kserve.io/v1beta1/InferenceService/iris",
        config.NAMESPACE_ENV: "models",
    }
    settings = config.load(None, environ)
    assert settings.workload == config.WorkloadReference(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        name="iris",
        namespace="models",
    )


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("profile: p.json\nthreshold: -1\n", {}, "threshold: Input should be greater than 0"),
        ("profile: p.json\nwindowSize: 10\n", {}, "windowSize: Extra inputs are not permitted"),
        (
            "profile: p.json\ncategoricalStatistic: Wasserstein\n",
            {},
            "does not apply to categorical",
        ),
        ("[1, 2]\n", {}, "a mapping of keys to values"),
        ("profile: [unclosed\n", {}, "is not YAML or JSON"),
        ("profile: p.json\n", {config.WORKLOAD_ENV: "iris"}, "expected <apiVersion>/<kind>/<name>"),
    ],
)
def test_bad_configurations_are_explained(
    tmp_path: pathlib.Path, text: str, environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load(path, environ)


def test_no_configuration_at_all() -> None:
    with pytest.raises(config.ConfigError, match="pass --config or set MODELSHIELD_DRIFT_CONFIG"):
        config.load(None, {})


def test_the_command_names_the_same_environment_variable() -> None:
    from modelshield.cli import drift as drift_command

    assert drift_command.CONFIG_ENV == config.CONFIG_ENV
