"""The drift monitor builders: ConfigMap, hardened Deployment, Service, logger patch."""

from __future__ import annotations

import yaml

from modelshield.api.v1alpha1 import policies
from modelshield.controllers.builders import driftmonitors as dm
from modelshield.drift import config as drift_config

DRIFT = policies.DriftMonitoring.model_validate(
    {
        "referenceProfile": {"name": "ref", "key": "p.json"},
        "features": ["age"],
        "threshold": 0.3,
        "window": 500,
    }
)
TARGET = dm.Target("apps/v1", "Deployment", "fraud", "ml", "uid-1")
SETTINGS = dm.MonitorSettings(image="modelshield:test")


def _config_map() -> dict[str, object]:
    return dm.build_config_map(
        name="m", namespace="ml", drift=DRIFT, target=TARGET, profile='{"x": 1}'
    )


def test_config_map_holds_profile_and_a_valid_monitor_config(tmp_path: object) -> None:
    config_map = _config_map()
    data = config_map["data"]
    assert isinstance(data, dict)
    assert data[dm.PROFILE_KEY] == '{"x": 1}'
    document = yaml.safe_load(data[dm.CONFIG_KEY])
    parsed = drift_config.parse(document, __import__("pathlib").Path("/etc/modelshield/drift"), {})
    assert parsed.threshold == 0.3
    assert parsed.window == 500
    assert parsed.features == ["age"]
    assert parsed.profile == "/etc/modelshield/drift/profile.json"
    assert parsed.workload is not None
    assert (parsed.workload.kind, parsed.workload.name, parsed.workload.uid) == (
        "Deployment",
        "fraud",
        "uid-1",
    )


def test_deployment_is_hardened_and_runs_the_monitor() -> None:
    deployment = dm.build_deployment(
        name="m", namespace="ml", config_map=_config_map(), settings=SETTINGS
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "modelshield:test"
    assert container["command"] == ["modelshield"]
    assert container["args"] == ["drift-monitor", "--config", "/etc/modelshield/drift/config.yaml"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["serviceAccountName"] == "m"
    assert (
        deployment["spec"]["selector"]["matchLabels"]
        == deployment["spec"]["template"]["metadata"]["labels"]
    )


def test_config_change_rolls_the_pods() -> None:
    first = dm.build_deployment(
        name="m", namespace="ml", config_map=_config_map(), settings=SETTINGS
    )
    other = dm.build_config_map(name="m", namespace="ml", drift=DRIFT, target=TARGET, profile="{}")
    second = dm.build_deployment(name="m", namespace="ml", config_map=other, settings=SETTINGS)
    annotation = dm.CONFIG_HASH_ANNOTATION
    assert (
        first["spec"]["template"]["metadata"]["annotations"][annotation]
        != second["spec"]["template"]["metadata"]["annotations"][annotation]
    )


def test_service_account_mounts_a_token() -> None:
    settings = dm.MonitorSettings(image="i", service_account="drift")
    pod = dm.build_deployment(
        name="m", namespace="ml", config_map=_config_map(), settings=settings
    )["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "drift"
    assert pod["automountServiceAccountToken"] is True


def test_service_selects_the_monitor_pods() -> None:
    service = dm.build_service(name="m", namespace="ml")
    assert service["spec"]["selector"] == dm.pod_labels("m")
    assert service["spec"]["ports"][0]["port"] == dm.PORT


def test_logger_set_only_when_absent() -> None:
    url = dm.service_url("m", "ml")
    patch, conflict = dm.logger_patch({"spec": {"predictor": {}}}, url)
    assert patch == {"spec": {"predictor": {"logger": {"mode": "all", "url": url}}}}
    assert conflict is None
    patch, conflict = dm.logger_patch({"spec": {"predictor": {"logger": {"url": url}}}}, url)
    assert (patch, conflict) == (None, None)
    patch, conflict = dm.logger_patch(
        {"spec": {"predictor": {"logger": {"url": "http://other/"}}}}, url
    )
    assert patch is None
    assert conflict is not None
    assert "http://other/" in conflict
    assert "fan out" in conflict


def test_own_account_may_only_create_events() -> None:
    role = dm.build_role(name="m", namespace="ml")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    binding = dm.build_role_binding(name="m", namespace="ml")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "m",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "m", "namespace": "ml"}]
    assert dm.build_service_account(name="m", namespace="ml")["metadata"] == {
        "name": "m",
        "namespace": "ml",
    }
