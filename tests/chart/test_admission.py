"""The webhook configurations: fail closed, never kube-system or the release namespace,
pointing at the chart's Service with a CA that really signed the serving certificate, the
same webhooks the admission server's own builder produces, and removed before uninstall."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from modelshield.controllers.builders import webhookcerts
from modelshield_webhooks import configurations
from tests.support import chartrendering as rendering

WEBHOOK_SERVICE = f"{rendering.RELEASE}-webhook"
CONFIGURATION_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def _webhooks(manifests: list[rendering.Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (configuration["kind"], webhook)
        for kind in CONFIGURATION_KINDS
        for configuration in rendering.of_kind(manifests, kind)
        for webhook in configuration["webhooks"]
    ]


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_fail_closed_and_scoped(name: str) -> None:
    webhooks = _webhooks(rendering.rendered(name))
    assert {webhook["name"] for _, webhook in webhooks} == {
        "workloads.validate.modelshield.dev",
        "resources.validate.modelshield.dev",
        "workloads.mutate.modelshield.dev",
    }
    for kind, webhook in webhooks:
        assert webhook["failurePolicy"] == "Fail", (kind, webhook["name"])
        assert webhook["sideEffects"] == "None"
        assert webhook["timeoutSeconds"] in range(1, 31)
        groups = {group for rule in webhook["rules"] for group in rule["apiGroups"]}
        if webhook["name"].startswith("resources."):
            # Only modelshield's own kinds, so no namespace needs excluding.
            assert groups == {"modelshield.dev"}
            continue
        expressions = webhook["namespaceSelector"]["matchExpressions"]
        by_key = {expression["key"]: expression for expression in expressions}
        excluded = by_key["kubernetes.io/metadata.name"]
        assert excluded["operator"] == "NotIn"
        assert {"kube-system", rendering.NAMESPACE} <= set(excluded["values"])
        assert by_key["modelshield.dev/ignore"] == {
            "key": "modelshield.dev/ignore",
            "operator": "NotIn",
            "values": ["true"],
        }
        # Namespaces the operator judged ungoverned (no policy could govern them) are not
        # sent: a dead webhook then blocks only governed namespaces.
        assert by_key["modelshield.dev/ungoverned"] == {
            "key": "modelshield.dev/ungoverned",
            "operator": "NotIn",
            "values": ["true"],
        }


def test_opt_in_adds_the_enforce_label() -> None:
    for _, webhook in _webhooks(rendering.rendered("opt-in")):
        if webhook["name"].startswith("workloads."):
            assert {
                "key": "modelshield.dev/enforce",
                "operator": "In",
                "values": ["true"],
            } in webhook["namespaceSelector"]["matchExpressions"]


def test_same_webhooks_as_the_admission_servers_builder() -> None:
    manifests = rendering.rendered("default")
    ca_bundle = base64.b64decode(
        rendering.one(manifests, "Secret", f"{rendering.RELEASE}-webhook-tls")["data"]["ca.crt"]
    )
    endpoint = configurations.Endpoint(
        ca_bundle=ca_bundle,
        service_namespace=rendering.NAMESPACE,
        service_name=WEBHOOK_SERVICE,
        service_port=443,
    )
    options: dict[str, Any] = {"name": rendering.RELEASE, "own_namespace": rendering.NAMESPACE}
    for kind, expected in (
        (
            "ValidatingWebhookConfiguration",
            configurations.validating_configuration(endpoint, **options),
        ),
        (
            "MutatingWebhookConfiguration",
            configurations.mutating_configuration(endpoint, **options),
        ),
    ):
        chart = rendering.one(manifests, kind)
        assert chart["metadata"]["name"] == expected["metadata"]["name"]
        assert chart["webhooks"] == expected["webhooks"], kind


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_mutating_webhook_spares_pods_under_the_builders_condition(name: str) -> None:
    # One source of truth: the template spells the CEL out, this keeps it equal to the
    # builder's (the API server's check of the expression itself is e2e's).
    for kind, webhook in _webhooks(rendering.rendered(name)):
        if kind == "MutatingWebhookConfiguration":
            assert webhook["matchConditions"] == [
                {
                    "name": configurations.POD_CONDITION_NAME,
                    "expression": configurations.POD_MAY_NEED_A_PATCH,
                }
            ]
        elif webhook["name"] == "resources.validate.modelshield.dev":
            assert webhook["matchConditions"] == [
                {
                    "name": configurations.SPEC_CONDITION_NAME,
                    "expression": configurations.SPEC_CHANGES,
                }
            ]
        else:
            # The workload validating webhook must see every pod.
            assert "matchConditions" not in webhook, webhook["name"]


def test_chart_states_the_kubernetes_version_its_match_conditions_need() -> None:
    # matchConditions: beta and on by default in 1.29, GA in 1.30; older API servers
    # reject the chart (kubeVersion) rather than install a webhook they may not scope.
    chart = yaml.safe_load((rendering.CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.29.0-0"
    refused = rendering.helm(
        "template",
        rendering.RELEASE,
        str(rendering.CHART),
        "--kube-version",
        "v1.28.9",
        check=False,
    )
    assert refused.returncode != 0
    assert "requires kubeVersion" in refused.stderr


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_webhooks_point_at_the_rendered_service(name: str) -> None:
    manifests = rendering.rendered(name)
    service = rendering.one(manifests, "Service", WEBHOOK_SERVICE)
    ports = {port["port"] for port in service["spec"]["ports"]}
    for _, webhook in _webhooks(manifests):
        target = webhook["clientConfig"]["service"]
        assert target["name"] == WEBHOOK_SERVICE
        assert target["namespace"] == rendering.NAMESPACE
        assert target["port"] in ports
        assert target["path"] in (
            configurations.VALIDATE_PATH,
            configurations.MUTATE_PATH,
            configurations.VALIDATE_RESOURCES_PATH,
        )


def _verify_signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert certificate.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            padding.PKCS1v15(),
            certificate.signature_hash_algorithm,
        )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            ec.ECDSA(certificate.signature_hash_algorithm),
        )
    else:
        pytest.fail(f"unexpected CA key type {type(key)}")


def test_generated_ca_signed_the_serving_certificate_for_the_service() -> None:
    manifests = rendering.rendered("default")
    secret = rendering.one(manifests, "Secret", f"{rendering.RELEASE}-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    _verify_signed_by(serving, ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{WEBHOOK_SERVICE}.{rendering.NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    now = datetime.datetime.now(datetime.UTC)
    assert serving.not_valid_before_utc <= now < serving.not_valid_after_utc
    for _, webhook in _webhooks(manifests):
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]


@pytest.mark.parametrize("name", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_issues_the_secret_the_webhook_mounts_and_injects_the_ca(name: str) -> None:
    manifests = rendering.rendered(name)
    certificate = rendering.one(manifests, "Certificate", WEBHOOK_SERVICE)
    assert f"{WEBHOOK_SERVICE}.{rendering.NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    deployment = rendering.one(manifests, "Deployment", WEBHOOK_SERVICE)
    volumes = {
        volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    for kind in CONFIGURATION_KINDS:
        configuration = rendering.one(manifests, kind)
        assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{rendering.NAMESPACE}/{WEBHOOK_SERVICE}"
        )
        for webhook in configuration["webhooks"]:
            # cainjector fills it; a stale inline CA would fight it.
            assert "caBundle" not in webhook["clientConfig"]
    issuer = certificate["spec"]["issuerRef"]
    if name == "cert-manager":
        assert rendering.one(manifests, "Issuer", issuer["name"])["spec"]["ca"]
    else:
        assert issuer == {"kind": "ClusterIssuer", "name": "corp-ca", "group": "cert-manager.io"}


def test_pre_delete_hook_removes_exactly_the_webhook_configurations() -> None:
    manifests = rendering.rendered("default")
    hooks = [manifest for manifest in manifests if rendering.hook_of(manifest) == "pre-delete"]
    assert {manifest["kind"] for manifest in hooks} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Job",
    }
    job = rendering.one(hooks, "Job")
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"][:2] == ["python", "-c"]
    script = container["command"][2]
    compile(script, "remove-webhook-configurations.py", "exec")
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    names = {rendering.one(manifests, kind)["metadata"]["name"] for kind in CONFIGURATION_KINDS}
    assert names == {env["MODELSHIELD_WEBHOOK_CONFIGURATION"]}
    role = rendering.one(hooks, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
            "verbs": ["delete"],
            "resourceNames": sorted(names),
        }
    ]
    assert spec["serviceAccountName"] == rendering.one(hooks, "ServiceAccount")["metadata"]["name"]
    # The hook objects must exist before the Job runs.
    weights = {m["kind"]: int(m["metadata"]["annotations"]["helm.sh/hook-weight"]) for m in hooks}
    assert max(w for kind, w in weights.items() if kind != "Job") < weights["Job"]
    # Runs in the release namespace, which the webhooks never intercept.
    assert job["metadata"]["namespace"] == rendering.NAMESPACE


def test_helm_test_checks_the_webhook_over_tls() -> None:
    manifests = rendering.rendered("default")
    pod = next(m for m in manifests if rendering.hook_of(m) == "test")
    container = pod["spec"]["containers"][0]
    compile(container["command"][2], "check-webhook.py", "exec")
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["MODELSHIELD_WEBHOOK_URL"] == (
        f"https://{WEBHOOK_SERVICE}.{rendering.NAMESPACE}.svc:443"
    )
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == f"{rendering.RELEASE}-webhook-tls"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_operator_accepts_the_chart_made_certificate_until_renewal_is_due() -> None:
    # The operator (--manage-certificates) renews what the chart made; it must not treat
    # the first certificate as wrong (other names, unknown issuer) and replace it at once.
    secret = rendering.one(
        rendering.rendered("default"), "Secret", f"{rendering.RELEASE}-webhook-tls"
    )
    bundle = webhookcerts.from_secret(secret)
    now = datetime.datetime.now(datetime.UTC)
    assert webhookcerts.rotation_due(bundle, WEBHOOK_SERVICE, rendering.NAMESPACE, now) is None
    later = now + datetime.timedelta(days=300)
    assert webhookcerts.rotation_due(bundle, WEBHOOK_SERVICE, rendering.NAMESPACE, later)
