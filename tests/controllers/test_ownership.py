"""Owner references, labels, the content hash and hand-edit detection."""

from __future__ import annotations

import copy
from typing import Any

from modelshield.controllers.builders import ownership

WORKLOAD = ownership.ObjectRef("apps/v1", "Deployment", "fraud", "uid-w", "ml")
POLICY = ownership.ObjectRef("modelshield.dev/v1alpha1", "ModelSecurityPolicy", "p", "uid-p", "ml")
CLUSTER_POLICY = ownership.ObjectRef(
    "modelshield.dev/v1alpha1", "ClusterModelSecurityPolicy", "base", "uid-c"
)
GOVERNANCE = ownership.Governance(WORKLOAD, (POLICY, CLUSTER_POLICY), "network-policy")


def _network_policy() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "n", "namespace": "ml"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "fraud"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
        },
    }


def _as_stored(stamped: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: empty lists dropped, server metadata added."""
    live: dict[str, Any] = ownership.prune(copy.deepcopy(stamped))
    live["metadata"].update({"uid": "x", "resourceVersion": "7", "generation": 1})
    return live


def test_stamp_sets_owners_labels_and_hash() -> None:
    stamped = ownership.stamp(_network_policy(), GOVERNANCE)
    metadata = stamped["metadata"]
    owners = metadata["ownerReferences"]
    assert [(o["kind"], o["controller"]) for o in owners] == [
        ("Deployment", True),
        ("ModelSecurityPolicy", False),
        ("ClusterModelSecurityPolicy", False),
    ]
    assert all(o["blockOwnerDeletion"] is False for o in owners)
    assert metadata["labels"][ownership.MANAGED_BY_LABEL] == "modelshield"
    assert metadata["labels"][ownership.WORKLOAD_LABEL] == "fraud"
    assert metadata["labels"][ownership.POLICY_LABEL] == "p"
    assert metadata["annotations"][ownership.HASH_ANNOTATION].startswith("sha256:")
    assert metadata["annotations"][ownership.WORKLOAD_ANNOTATION] == "Deployment/ml/fraud"


def test_hash_changes_with_content_only() -> None:
    first = ownership.stamp(_network_policy(), GOVERNANCE)
    again = ownership.stamp(_network_policy(), GOVERNANCE)
    assert first == again
    changed = _network_policy()
    changed["spec"]["egress"] = []
    assert (
        ownership.stamp(changed, GOVERNANCE)["metadata"]["annotations"][ownership.HASH_ANNOTATION]
        != first["metadata"]["annotations"][ownership.HASH_ANNOTATION]
    )


def test_stored_copy_has_no_drift() -> None:
    desired = ownership.stamp(_network_policy(), GOVERNANCE)
    assert ownership.drift(_as_stored(desired), desired) is None


def test_added_rule_is_drift() -> None:
    desired = ownership.stamp(_network_policy(), GOVERNANCE)
    live = _as_stored(desired)
    live["spec"]["ingress"] = [{}]
    live["spec"]["egress"].append({})
    assert ownership.drift(live, desired) == "spec.egress has 2 entries, expected 1"


def test_changed_value_is_drift() -> None:
    desired = ownership.stamp(_network_policy(), GOVERNANCE)
    live = _as_stored(desired)
    live["spec"]["podSelector"]["matchLabels"]["app"] = "other"
    assert "spec.podSelector.matchLabels.app" in (ownership.drift(live, desired) or "")


def test_added_field_is_drift_unless_server_default() -> None:
    desired = ownership.stamp(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ml"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        },
        GOVERNANCE,
    )
    live = _as_stored(desired)
    live["spec"]["revisionHistoryLimit"] = 10
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/log"
    assert ownership.drift(live, desired) is None
    live["spec"]["template"]["spec"]["hostNetwork"] = True
    assert ownership.drift(live, desired) == "spec.template.spec.hostNetwork was added"


def test_tampered_labels_annotations_and_owners_are_drift() -> None:
    desired = ownership.stamp(_network_policy(), GOVERNANCE)
    live = _as_stored(desired)
    live["metadata"]["labels"].pop(ownership.MANAGED_BY_LABEL)
    assert (ownership.drift(live, desired) or "").startswith("label")
    live = _as_stored(desired)
    live["metadata"]["annotations"][ownership.HASH_ANNOTATION] = "x"
    assert (ownership.drift(live, desired) or "").startswith("annotation")
    live = _as_stored(desired)
    live["metadata"]["ownerReferences"].pop()
    assert (ownership.drift(live, desired) or "").startswith("owner reference")


def test_foreign_labels_and_annotations_are_tolerated() -> None:
    desired = ownership.stamp(_network_policy(), GOVERNANCE)
    live = _as_stored(desired)
    live["metadata"]["labels"]["team"] = "a"
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    assert ownership.drift(live, desired) is None


def test_config_map_data_compared_exactly() -> None:
    desired = ownership.stamp(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ml"},
            "data": {"a": "1"},
        },
        GOVERNANCE,
    )
    live = _as_stored(desired)
    assert ownership.drift(live, desired) is None
    live["data"]["b"] = "2"
    assert ownership.drift(live, desired) == "data.b was added"


def test_names_and_label_values_fit_kubernetes_limits() -> None:
    long_name = "x" * 250
    assert len(ownership.child_name("netpol", "Deployment", long_name)) <= 63
    assert ownership.child_name("netpol", "Deployment", "a") == "ms-netpol-deploy-a"
    assert ownership.child_name("netpol", "StatefulSet", "a") != ownership.child_name(
        "netpol", "Deployment", "a"
    )
    value = ownership.label_value(long_name)
    assert len(value) <= 63
    assert ownership.label_value(long_name + "y") != value
    assert ownership.label_value("fine-name") == "fine-name"
