"""The webhook configurations, and the CLI command that prints them."""

from __future__ import annotations

import base64
import contextlib
import io
import pathlib

import pytest
import yaml

from modelshield.cli import main
from modelshield.engine import workloads
from modelshield_webhooks import configurations
from tests.support import pki


def _endpoint() -> configurations.Endpoint:
    return configurations.Endpoint(ca_bundle=b"PEM", url="https://127.0.0.1:8443/")


def test_validating_configuration_fails_closed_but_spares_system_namespaces() -> None:
    config = configurations.validating_configuration(_endpoint(), own_namespace="modelshield")
    workloads, own_resources = config["webhooks"]
    assert workloads["failurePolicy"] == "Fail"
    assert workloads["sideEffects"] == "None"
    assert workloads["admissionReviewVersions"] == ["v1"]
    assert workloads["timeoutSeconds"] == 10
    assert workloads["clientConfig"] == {
        "caBundle": base64.b64encode(b"PEM").decode(),
        "url": "https://127.0.0.1:8443/validate",
    }
    assert workloads["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-node-lease", "kube-public", "kube-system", "modelshield"],
            },
            {"key": "modelshield.dev/ignore", "operator": "NotIn", "values": ["true"]},
            {"key": "modelshield.dev/ungoverned", "operator": "NotIn", "values": ["true"]},
        ]
    }
    resources = {
        (group, resource)
        for rule in workloads["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert resources == {
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("", "replicationcontrollers"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("serving.kserve.io", "inferenceservices"),
        ("serving.kserve.io", "llminferenceservices"),
        ("serving.kserve.io", "servingruntimes"),
        ("serving.kserve.io", "clusterservingruntimes"),
    }
    assert all(rule["operations"] == ["CREATE", "UPDATE"] for rule in workloads["rules"])
    assert own_resources["clientConfig"]["url"].endswith("/validate-resources")
    assert "namespaceSelector" not in own_resources


def test_service_client_config() -> None:
    endpoint = configurations.Endpoint(
        ca_bundle=b"PEM", service_namespace="ms", service_name="hook", service_port=8443
    )
    config = configurations.mutating_configuration(endpoint)
    (webhook,) = config["webhooks"]
    assert webhook["clientConfig"]["service"] == {
        "namespace": "ms",
        "name": "hook",
        "path": "/mutate",
        "port": 8443,
    }
    assert webhook["reinvocationPolicy"] == "Never"


def test_only_the_mutating_webhook_spares_pods_by_condition() -> None:
    (mutating,) = configurations.mutating_configuration(_endpoint())["webhooks"]
    assert mutating["matchConditions"] == [
        {"name": "pod-may-need-a-patch", "expression": configurations.POD_MAY_NEED_A_PATCH}
    ]
    # The workload validating webhook judges every object; a condition there would be a
    # bypass. The resource webhook skips only updates that leave the spec alone, which
    # the server admits anyway.
    workloads_webhook, resources_webhook = configurations.validating_configuration(_endpoint())[
        "webhooks"
    ]
    assert "matchConditions" not in workloads_webhook
    assert resources_webhook["matchConditions"] == [
        {"name": "spec-changes", "expression": configurations.SPEC_CHANGES}
    ]


def test_pod_condition_names_the_engines_model_annotation() -> None:
    # A model annotation the condition did not know would skip the startup check.
    expression = configurations.POD_MAY_NEED_A_PATCH
    assert f"'{workloads.MODEL_ANNOTATION}' in object.metadata.annotations" in expression
    for field in ("containers", "initContainers", "ephemeralContainers"):
        assert f"has(object.spec.{field}) && object.spec.{field}.exists(" in expression


def test_cli_prints_both_configurations(tmp_path: pathlib.Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main.main(
            ["webhook", "configuration", "--url", "https://127.0.0.1:9443", "--ca-bundle", str(ca)]
        )
    assert code == 0
    mutating, validating = yaml.safe_load_all(output.getvalue())
    assert mutating["kind"] == "MutatingWebhookConfiguration"
    assert validating["kind"] == "ValidatingWebhookConfiguration"
    assert validating["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/validate"
    (condition,) = mutating["webhooks"][0]["matchConditions"]
    assert condition["expression"] == configurations.POD_MAY_NEED_A_PATCH


@pytest.mark.parametrize(
    ("timeout", "accepted"), [("0", False), ("1", True), ("30", True), ("31", False)]
)
def test_cli_configuration_takes_only_timeouts_the_api_server_accepts(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], timeout: str, accepted: bool
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    arguments = ["webhook", "configuration", "--url=https://127.0.0.1:9443", f"--ca-bundle={ca}"]
    if accepted:
        assert main.main([*arguments, f"--timeout-seconds={timeout}"]) == 0
        for configuration in yaml.safe_load_all(capsys.readouterr().out):
            assert {w["timeoutSeconds"] for w in configuration["webhooks"]} == {int(timeout)}
    else:
        with pytest.raises(SystemExit) as exited:
            main.main([*arguments, f"--timeout-seconds={timeout}"])
        assert exited.value.code == 2
        assert "must be 1 to 30" in capsys.readouterr().err


def test_cli_serve_needs_certificate_files(tmp_path: pathlib.Path) -> None:
    assert main.main(["webhook", "--cert", str(tmp_path / "x"), "--key", str(tmp_path / "y")]) == 2


def test_cli_serve_without_a_cluster_says_so(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    authority = pki.Authority.create()
    cert, key = pki.write_serving_pair(authority, tmp_path, "cli")
    missing = tmp_path / "no-kubeconfig"
    code = main.main(["webhook", f"--cert={cert}", f"--key={key}", f"--kubeconfig={missing}"])
    assert code == 2
    assert "cannot reach the Kubernetes API" in capsys.readouterr().err


def test_cluster_serving_runtimes_are_matched_at_cluster_scope() -> None:
    """A cluster-scoped kind under a Namespaced rule would never reach the webhook."""
    endpoint = configurations.Endpoint(ca_bundle=b"ca", url="https://127.0.0.1:8443")
    for configuration in (
        configurations.validating_configuration(endpoint),
        configurations.mutating_configuration(endpoint),
    ):
        rules = configuration["webhooks"][0]["rules"]
        scopes = {r: rule["scope"] for rule in rules for r in rule["resources"]}
        assert scopes["clusterservingruntimes"] == "Cluster"
        assert scopes["servingruntimes"] == scopes["inferenceservices"] == "Namespaced"
