"""The chart's artifact limits and file roots reach the operator as the settings it reads."""

from __future__ import annotations

from typing import Any

from modelshield.controllers import artifactchecks
from tests.support import chartrendering as rendering


def _settings(values: dict[str, Any]) -> artifactchecks.Settings:
    manifests = rendering.parse(rendering.render_text(values))
    deployment = rendering.one(manifests, "Deployment", f"{rendering.RELEASE}-operator")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    return artifactchecks.Settings.from_environment(plain)


def test_defaults_are_the_operator_s_own() -> None:
    fetch = _settings({}).fetch

    assert (fetch.max_bytes, fetch.max_files, fetch.deadline_seconds) == (256 << 30, 10000, 3600)
    assert fetch.file_roots == ()


def test_values_set_the_limits_and_the_file_roots() -> None:
    fetch = _settings(
        {
            "operator": {
                "artifactMaxBytes": 1 << 40,
                "artifactMaxFiles": 50,
                "artifactDeadlineSeconds": 120,
                "artifactFileRoots": ["/models", "/data/models"],
            }
        }
    ).fetch

    assert (fetch.max_bytes, fetch.max_files, fetch.deadline_seconds) == (1 << 40, 50, 120.0)
    assert [str(root) for root in fetch.file_roots] == ["/models", "/data/models"]
