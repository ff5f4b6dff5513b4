"""`modelshield test` on a policy's runtime defences (spec.api outliers, probing, responses),
judged against the reference profile's ConfigMap when it is among the resources."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.cli import main
from modelshield.guard import outliermodel

ROWS = load_breast_cancer().data
NAMES = [f"f{i}" for i in range(ROWS.shape[1])]


def profile(rows: int, *, with_outliers: bool = True) -> str:
    """A profile document as `modelshield drift profile` writes it (only the key the guard reads
    matters here); its outlier model from the first ``rows`` rows (rows held out: ``rows``)."""
    document: dict[str, Any] = {"kind": "ReferenceProfile"}
    if with_outliers:
        columns = {name: ROWS[:rows, i].tolist() for i, name in enumerate(NAMES)}
        document["outliers"] = outliermodel.to_document(outliermodel.build(columns, NAMES))
    return json.dumps(document)


def policy(api: dict[str, Any], enforcement: str = "Enforce") -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "fraud-defences", "namespace": "ml-prod"},
        "spec": {
            "enforcement": enforcement,
            "selector": {"matchLabels": {"app": "fraud-detector"}},
            "monitoring": {
                "drift": {
                    "referenceProfile": {"name": "fraud-detector-reference", "key": "profile.json"}
                }
            },
            "api": api,
        },
    }


def configmap(text: str, namespace: str = "ml-prod") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "fraud-detector-reference", "namespace": namespace},
        "data": {"profile.json": text},
    }


def run(tmp_path: pathlib.Path, policy_body: dict[str, Any], *resources: dict[str, Any]) -> int:
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(policy_body))
    given = tmp_path / "resources.yaml"
    given.write_text(
        yaml.safe_dump_all([*resources, {"kind": "Namespace", "metadata": {"name": "ml-prod"}}])
    )
    return main.main(["test", str(policies), "--resources", str(given)])


SMALL_PROBING = {"action": "Alert", "maxClients": 100}


def test_a_usable_profile_gives_no_finding(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {"outliers": {"action": "Reject", "falseFlagRate": 0.01}, "probing": SMALL_PROBING}
    assert run(tmp_path, policy(api), configmap(profile(400))) == 0
    assert capsys.readouterr().err == ""


def test_a_profile_without_an_outlier_model_is_an_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {"probing": SMALL_PROBING}
    assert run(tmp_path, policy(api), configmap(profile(400, with_outliers=False))) == 2
    err = capsys.readouterr().err
    assert "error: " in err
    assert "spec.monitoring.drift.referenceProfile" in err
    assert "no outlier model" in err
    assert "503" in err


def test_a_rate_the_held_out_rows_cannot_honour_is_an_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 100 rows profiled: 100 held-out rows, so no rate below 1/100.
    api = {"outliers": {"action": "Flag", "falseFlagRate": 0.005}}
    assert run(tmp_path, policy(api), configmap(profile(100))) == 2
    err = capsys.readouterr().err
    assert "spec.api.outliers.falseFlagRate" in err
    assert "below 1/100" in err


def test_missing_key_unreadable_json_and_a_broken_model_are_errors(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {"probing": SMALL_PROBING}
    wrong_key = configmap(profile(400))
    wrong_key["data"] = {"other.json": wrong_key["data"]["profile.json"]}
    assert run(tmp_path, policy(api), wrong_key) == 2
    assert "has no key 'profile.json'" in capsys.readouterr().err
    assert run(tmp_path, policy(api), configmap("{not json")) == 2
    assert "is not JSON" in capsys.readouterr().err
    broken = json.loads(profile(400))
    broken["outliers"]["version"] = 99
    assert run(tmp_path, policy(api), configmap(json.dumps(broken))) == 2
    assert "outliers.version" in capsys.readouterr().err


def test_a_profile_elsewhere_or_absent_is_not_judged_and_says_so(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {"probing": SMALL_PROBING}
    # The same name in another namespace is not the policy's profile.
    other = configmap(profile(400, with_outliers=False), namespace="other")
    assert run(tmp_path, policy(api), other) == 0
    err = capsys.readouterr().err
    assert "warning: " in err
    assert "not judged against the profile: ConfigMap ml-prod/fraud-detector-reference" in err


def test_probing_summaries_beyond_the_guards_memory_are_a_warning(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The defaults: 10,000 clients of 1,000 queries of 30 features.
    assert run(tmp_path, policy({"probing": {}}), configmap(profile(400))) == 0
    err = capsys.readouterr().err
    assert "warning: " in err
    assert "spec.api.probing.maxClients" in err
    assert "30 features" in err
    # ~386 KiB each (the near-duplicate window counted since the tenth session) in 256 MiB
    assert "the guard will remember only the 662 most recent clients" in err


def test_settings_that_do_nothing_under_audit_or_a_throttle_too_fast_are_warnings(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {
        "rateLimits": {"perClient": {"requestsPerSecond": 5}},
        "outliers": {"action": "Reject", "falseFlagRate": 0.01},
        "probing": {
            "action": "Throttle",
            "throttle": {"requestsPerSecond": 10},
            "maxClients": 100,
        },
        "responses": {"topK": 1},
    }
    assert run(tmp_path, policy(api, "Audit"), configmap(profile(400))) == 0
    err = capsys.readouterr().err
    assert "spec.api.probing.action: Throttle under Audit only alerts" in err
    assert "spec.api.outliers.action: Reject under Audit forwards" in err
    assert "spec.api.responses: response hardening applies under Enforce only" in err
    assert "spec.api.probing.throttle.requestsPerSecond: 10 is not below" in err
    assert "error" not in err


def test_a_network_block_admitting_no_source_beside_an_api_block_is_a_warning(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = {"rateLimits": {"perClient": {"requestsPerSecond": 5}}}
    closed = policy(api)
    closed["spec"]["network"] = {"egress": [{"peers": [{"cidr": "10.0.0.0/8"}]}]}
    assert run(tmp_path, closed, configmap(profile(400))) == 0
    assert "spec.network.ingress: empty: with an api block" in capsys.readouterr().err
    opened = policy(api)
    opened["spec"]["network"] = {"ingress": [{"peers": [{"namespaceSelector": {}}]}]}
    assert run(tmp_path, opened, configmap(profile(400))) == 0
    assert "spec.network.ingress" not in capsys.readouterr().err
