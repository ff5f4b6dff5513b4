"""The pods: non-root everywhere, webhook highly available, operator single and Recreate,
and command lines that the real `modelshield` parser accepts."""

from __future__ import annotations

import dataclasses

import pytest

from modelshield.cli import modelstoreflags, verifierflags
from tests.support import chartrendering as rendering
from tests.support.chartworkloads import OPERATOR, _parsed

WEBHOOK = f"{rendering.RELEASE}-webhook"


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_every_pod_and_container_runs_non_root_and_read_only(name: str) -> None:
    specs = list(rendering.pod_specs(rendering.rendered(name)))
    # webhook, operator, cleanup hook, helm test
    assert len(specs) == 4
    for label, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, label
        assert pod["runAsUser"] != 0, label
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", label
        assert not spec.get("hostNetwork"), label
        assert not spec.get("hostPID"), label
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            where = f"{label} container {container['name']}"
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert container["resources"]["limits"]["memory"], where


def test_webhook_is_highly_available() -> None:
    manifests = rendering.rendered("default")
    deployment = rendering.one(manifests, "Deployment", WEBHOOK)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    budget = rendering.one(manifests, "PodDisruptionBudget", WEBHOOK)
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # Readiness is the server's cache sync, served over the webhook's own TLS port.
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }


def test_hard_anti_affinity_is_required_scheduling() -> None:
    deployment = rendering.one(rendering.rendered("everything"), "Deployment", WEBHOOK)
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    assert deployment["spec"]["replicas"] == 3


def test_operator_is_one_replica_recreated() -> None:
    deployment = rendering.one(rendering.rendered("default"), "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_operator_peers_under_its_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = rendering.one(rendering.rendered("default"), "Deployment", OPERATOR)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The real parser takes its peering identity from POD_ID, and peering is not turned off.
    monkeypatch.setenv("POD_ID", "modelshield-operator-7d9f-abcde")
    arguments = _parsed(container["args"])
    assert arguments.identity == "modelshield-operator-7d9f-abcde"
    assert arguments.standalone is False


def test_one_replica_webhook_gets_no_budget_that_would_block_drains() -> None:
    manifests = rendering.parse(rendering.render_text({"webhook": {"replicas": 1}}))
    assert not rendering.of_kind(manifests, "PodDisruptionBudget")


@pytest.mark.parametrize("name", ["default", "everything"])
def test_command_lines_are_accepted_by_the_real_parser(name: str) -> None:
    manifests = rendering.rendered(name)
    webhook = rendering.one(manifests, "Deployment", WEBHOOK)["spec"]["template"]["spec"]
    arguments = _parsed(webhook["containers"][0]["args"])
    assert arguments.command == "webhook"
    assert arguments.cert.startswith("/etc/modelshield/tls/")
    assert arguments.port == webhook["containers"][0]["ports"][0]["containerPort"]
    mounts = {mount["mountPath"] for mount in webhook["containers"][0]["volumeMounts"]}
    assert "/etc/modelshield/tls" in mounts
    webhook_verifier = verifierflags.settings_from(arguments)
    webhook_store = modelstoreflags.store_from(arguments)

    operator = rendering.one(manifests, "Deployment", OPERATOR)["spec"]["template"]["spec"]
    container = operator["containers"][0]
    arguments = _parsed(container["args"])
    assert arguments.command == "operator"
    # --namespace would restrict the operator to one namespace: it must not be set.
    assert arguments.namespace == []
    assert arguments.webhook_namespace == rendering.NAMESPACE
    assert arguments.webhook_service == WEBHOOK
    assert arguments.webhook_configuration == [rendering.RELEASE]
    assert arguments.webhook_secret == f"{rendering.RELEASE}-webhook-tls"
    assert arguments.manage_certificates is (name == "default")
    assert arguments.image == container["image"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert arguments.metrics_port == ports["metrics"]
    assert arguments.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    if name == "everything":
        # The operator's audit verifies keyless signatures against the same trust root.
        assert arguments.trust_root == "/etc/modelshield/trust-root/trusted_root.json"
        assert "/etc/modelshield/trust-root" in mounts
        # ...and reaches the same registries the same way (issue 17).
        assert arguments.registry_ca == "/etc/modelshield/registry-ca/ca.crt"
        assert "/etc/modelshield/registry-ca" in mounts
        assert arguments.insecure_registry == ["registry.lab:5000"]
    else:
        assert arguments.trust_root is None
        assert arguments.registry_ca is None
    # The image-verification settings differ only in the Secret reads, which the chart
    # grants each process separately (webhook.readSignerSecrets, operator.readSignerSecrets).
    operator_verifier = verifierflags.settings_from(arguments)
    # One S3 endpoint (modelStore.s3Endpoint): where the operator fetches ModelArtifacts
    # is the server admission lets KServe's storage initializer download them from.
    assert modelstoreflags.store_from(arguments) == webhook_store
    expected = "https://minio.storage.svc.cluster.local:9000" if name == "everything" else None
    assert webhook_store.s3_endpoint == expected
    assert dataclasses.replace(
        operator_verifier, read_signer_secrets=False, read_pull_secrets=False
    ) == dataclasses.replace(webhook_verifier, read_signer_secrets=False, read_pull_secrets=False)


def test_image_digest_wins_over_tag() -> None:
    deployment = rendering.one(rendering.rendered("everything"), "Deployment", WEBHOOK)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/modelshield/modelshield@sha256:" + "ab" * 32


def test_services_select_their_pods_and_name_real_ports() -> None:
    manifests = rendering.rendered("default")
    for name in (WEBHOOK, OPERATOR):
        service = rendering.one(manifests, "Service", name)
        pod = rendering.one(manifests, "Deployment", name)["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        port_names = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
