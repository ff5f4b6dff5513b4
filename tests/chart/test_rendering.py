"""helm lint and helm template succeed for the defaults and every documented combination."""

from __future__ import annotations

import pathlib

import pytest

from modelshield.controllers import leadership, settings
from tests.support import chartrendering as rendering


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_lint(name: str, tmp_path: pathlib.Path) -> None:
    completed = rendering.helm(
        "lint",
        "--strict",
        str(rendering.CHART),
        "--namespace",
        rendering.NAMESPACE,
        "--kube-version",
        rendering.kube_version(),
        *rendering.values_arguments(rendering.COMBINATIONS[name], tmp_path),
    )
    assert "0 chart(s) failed" in completed.stdout


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_template_renders_well_formed_objects(name: str) -> None:
    manifests = rendering.rendered(name)
    assert manifests
    for manifest in manifests:
        assert manifest.get("apiVersion"), manifest
        assert manifest.get("kind"), manifest
        metadata = manifest.get("metadata") or {}
        assert metadata.get("name"), manifest
        assert len(metadata["name"]) <= 63 or manifest["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize("name", sorted(rendering.COMBINATIONS))
def test_namespaced_objects_are_in_the_release_namespace(name: str) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ClusterKopfPeering",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for manifest in rendering.rendered(name):
        namespace = manifest["metadata"].get("namespace")
        if manifest["kind"] in cluster_scoped:
            assert namespace is None, f"{manifest['kind']} {manifest['metadata']['name']}"
        elif manifest["kind"] != "ConfigMap" or "dashboard" not in manifest["metadata"]["name"]:
            assert namespace == rendering.NAMESPACE, (
                f"{manifest['kind']} {manifest['metadata']['name']}"
            )


def test_schema_rejects_insecure_or_misspelt_values(tmp_path: pathlib.Path) -> None:
    for values, complaint in (
        ({"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
        ({"containerSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        (
            {"containerSecurityContext": {"allowPrivilegeEscalation": True, "runAsNonRoot": True}},
            "allowPrivilegeEscalation",
        ),
        ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
        ({"webhok": {"replicas": 3}}, "webhok"),
    ):
        completed = rendering.helm(
            "template",
            "x",
            str(rendering.CHART),
            "--kube-version",
            rendering.kube_version(),
            *rendering.values_arguments(values, tmp_path),
            check=False,
        )
        assert completed.returncode != 0, values
        assert complaint in completed.stderr, completed.stderr


def test_kubernetes_older_than_the_crds_need_is_refused() -> None:
    completed = rendering.helm(
        "template", "x", str(rendering.CHART), "--kube-version", "1.27.0", check=False
    )
    assert completed.returncode != 0
    assert "kubeVersion" in completed.stderr


@pytest.mark.parametrize(
    ("name", "kinds_present", "kinds_absent"),
    [
        (
            "default",
            {"CustomResourceDefinition", "Secret"},
            {"Certificate", "Issuer", "ServiceMonitor", "NetworkPolicy"},
        ),
        ("cert-manager", {"Certificate", "Issuer"}, {"Secret"}),
        ("cert-manager-issuer", {"Certificate"}, {"Issuer", "Secret"}),
        ("no-crds", set(), {"CustomResourceDefinition", "ClusterKopfPeering"}),
        ("service-monitor", {"ServiceMonitor"}, set()),
        ("network-policy", {"NetworkPolicy"}, set()),
        ("grafana-dashboard", {"ConfigMap"}, set()),
    ],
)
def test_combinations_switch_their_objects(
    name: str, kinds_present: set[str], kinds_absent: set[str]
) -> None:
    kinds = {manifest["kind"] for manifest in rendering.rendered(name)}
    assert kinds_present <= kinds, kinds_present - kinds
    assert not kinds & kinds_absent, kinds & kinds_absent


def test_crds_are_kept_on_uninstall_unless_asked() -> None:
    kept = rendering.of_kind(rendering.rendered("default"), "CustomResourceDefinition")
    assert len(kept) == 5
    for crd in kept:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for crd in rendering.of_kind(rendering.rendered("crds-not-kept"), "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_chart_crds_are_the_generated_ones() -> None:
    committed = {
        document["metadata"]["name"]: document["spec"]
        for path in sorted((rendering.REPOSITORY / "crds").glob("*.yaml"))
        for document in rendering.parse(path.read_text())
    }
    rendered = {
        crd["metadata"]["name"]: crd["spec"]
        for crd in rendering.of_kind(rendering.rendered("default"), "CustomResourceDefinition")
        if crd["spec"]["group"] == "modelshield.dev"
    }
    assert rendered == committed


def _crd(name: str, manifests: list[rendering.Manifest]) -> rendering.Manifest:
    return rendering.one(manifests, "CustomResourceDefinition", name)


def test_policy_report_crd_is_the_audit_one_and_can_be_left_out() -> None:
    fixture = rendering.parse(
        (rendering.REPOSITORY / "e2e" / "fixtures" / "policyreport-crd.yaml").read_text()
    )
    (expected,) = fixture
    crd = _crd("policyreports.wgpolicyk8s.io", rendering.rendered("default"))
    assert crd["spec"] == expected["spec"]
    for name in ("policy-reports-elsewhere", "no-crds"):
        names = {
            manifest["metadata"]["name"]
            for manifest in rendering.of_kind(rendering.rendered(name), "CustomResourceDefinition")
        }
        assert "policyreports.wgpolicyk8s.io" not in names, name
    # Leaving out the Policy Reports CRD leaves out nothing else.
    others = rendering.of_kind(
        rendering.rendered("policy-reports-elsewhere"), "CustomResourceDefinition"
    )
    assert len(others) == 4


def test_kopf_peering_crd_and_object_make_one_operator_active() -> None:
    manifests = rendering.rendered("default")
    crd = _crd("clusterkopfpeerings.kopf.dev", manifests)
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == leadership.PEERING_KIND
    assert [version["name"] for version in crd["spec"]["versions"]] == ["v1"]
    peering = rendering.one(manifests, leadership.PEERING_KIND, settings.PEERING_NAME)
    assert peering["apiVersion"] == "kopf.dev/v1"
    # Created after the CRD exists, and again on upgrades.
    assert rendering.hook_of(peering) == "post-install,post-upgrade"
