"""The guard's configuration carries the profile's outlier model when a policy uses it."""

from __future__ import annotations

import json

import yaml

from modelshield.controllers import planning
from modelshield.controllers.builders import guards
from modelshield.guard import config, outliermodel
from tests.support.guardplanning import API, GUARD, SELECTOR, SETTINGS, _served
from tests.support.planningworld import _policy, _world

DRIFT = {"drift": {"referenceProfile": {"name": "ref", "key": "p.json"}}}
KEY = ("Deployment", "ml", "fraud")


def _profile() -> str:
    columns = {"a": [float(i % 7) for i in range(50)], "b": [float(i % 5) for i in range(50)]}
    outliers = outliermodel.to_document(outliermodel.build(columns, ["a", "b"]))
    return json.dumps({"kind": "DriftProfile", "features": [], "outliers": outliers})


def _loaded(api: dict[str, object], profile: str | None) -> config.GuardConfig:
    world = _world(
        _policy("api", {"selector": SELECTOR, "api": api, "monitoring": DRIFT}), _served()
    )
    plan = planning.plan(world, KEY, SETTINGS, profile)
    return config.GuardConfig.model_validate(
        yaml.safe_load(plan.desired[("ConfigMap", "ml", GUARD)]["data"][guards.CONFIG_KEY])
    )


def test_outliers_and_probing_policies_get_the_outlier_model() -> None:
    for block in ({"outliers": {"action": "Reject"}}, {"probing": {"action": "Alert"}}):
        loaded = _loaded({**API, **block}, _profile())
        assert loaded.outlier_model is not None
        model = outliermodel.from_document(loaded.outlier_model)
        assert model.fitted.names == ("a", "b")


def test_no_outlier_model_without_a_policy_that_uses_it_or_in_the_profile() -> None:
    assert _loaded(API, _profile()).outlier_model is None
    assert _loaded({**API, "outliers": {}}, '{"features": []}').outlier_model is None
    assert _loaded({**API, "outliers": {}}, "not json").outlier_model is None


def test_probing_gives_the_guard_a_role_to_create_events_on_its_workload() -> None:
    world = _world(
        _policy(
            "api",
            {"selector": SELECTOR, "api": {**API, "probing": {}}, "monitoring": DRIFT},
        ),
        _served(),
    )
    plan = planning.plan(world, KEY, SETTINGS, _profile())
    role = plan.desired[("Role", "ml", GUARD)]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    binding = plan.desired[("RoleBinding", "ml", GUARD)]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": GUARD, "namespace": "ml"}]
    assert binding["roleRef"]["name"] == GUARD
    loaded = config.GuardConfig.model_validate(
        yaml.safe_load(plan.desired[("ConfigMap", "ml", GUARD)]["data"][guards.CONFIG_KEY])
    )
    assert loaded.workload is not None
    assert (loaded.workload.kind, loaded.workload.namespace, loaded.workload.name) == (
        "Deployment",
        "ml",
        "fraud",
    )


def test_no_events_role_without_probing() -> None:
    world = _world(
        _policy("api", {"selector": SELECTOR, "api": {**API, "outliers": {}}, "monitoring": DRIFT}),
        _served(),
    )
    plan = planning.plan(world, KEY, SETTINGS, _profile())
    assert ("Role", "ml", GUARD) not in plan.desired
    assert ("RoleBinding", "ml", GUARD) not in plan.desired
