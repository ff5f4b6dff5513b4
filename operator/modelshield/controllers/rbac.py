"""The exact RBAC rules the operator needs: no wildcard verbs, resources or groups.

One place the chart and ``modelshield rbac`` read. Each rule says why it is there; a rule
not used by the code is a bug, and so is a request the code makes without a rule here
(the e2e suite runs the operator under exactly these rules).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from modelshield.controllers.builders import tokenreviewers

DEFAULT_WEBHOOK_CONFIGURATIONS = ("modelshield",)
DEFAULT_CERTIFICATE_SECRET = "modelshield-webhook-tls"  # noqa: S105 - a Secret name, not a secret


@dataclasses.dataclass(frozen=True)
class Rule:
    """One PolicyRule, with the reason it exists."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def manifest(self) -> dict[str, Any]:
        """The rule as it appears in a (Cluster)Role."""
        rule: dict[str, Any] = {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule


READ = ("get", "list", "watch")
OWN = ("get", "list", "watch", "create", "update", "delete")


def cluster_rules(
    webhook_configurations: Sequence[str] = DEFAULT_WEBHOOK_CONFIGURATIONS,
    guard_binding: str = tokenreviewers.DEFAULT_NAME,
    guard_role: str = tokenreviewers.DEFAULT_NAME,
) -> tuple[Rule, ...]:
    """The ClusterRole's rules."""
    return (
        Rule(
            ("modelshield.dev",),
            ("modelsecuritypolicies", "clustermodelsecuritypolicies"),
            READ,
            "policies are what the reconciler and the audit enforce",
        ),
        Rule(
            ("modelshield.dev",),
            ("modelsecuritypolicies/status", "clustermodelsecuritypolicies/status"),
            ("patch",),
            "status: conditions, counts and violators",
        ),
        Rule(
            ("modelshield.dev",),
            ("modelartifacts",),
            (*READ, "patch"),
            "artifact facts feed compliance; the ModelArtifact reconciler keeps kopf's "
            "bookkeeping in its annotations",
        ),
        Rule(
            ("modelshield.dev",),
            ("modelartifacts/status",),
            ("patch",),
            "the ModelArtifact reconciler writes verification and scan facts",
        ),
        Rule(("",), ("namespaces",), ("list", "watch"), "namespace labels select cluster policies"),
        Rule(
            ("",),
            ("namespaces",),
            ("patch",),
            "the modelshield.dev/ungoverned label on namespaces no policy governs "
            "(--label-ungoverned-namespaces); the chart's ValidatingAdmissionPolicy lets only "
            "the operator set it to true",
        ),
        Rule(
            ("apps",),
            ("deployments",),
            OWN,
            "Deployments are workloads (read) and drift monitors (owned)",
        ),
        Rule(("apps",), ("statefulsets",), ("list", "watch"), "StatefulSets are workloads"),
        Rule(
            ("apps",),
            ("daemonsets",),
            ("list", "watch"),
            "DaemonSets serving a model are recorded in the serving index (status.servedBy)",
        ),
        Rule(
            ("batch",),
            ("jobs", "cronjobs"),
            ("list", "watch"),
            "Jobs and CronJobs serving a model are recorded in the serving index",
        ),
        Rule(
            ("serving.kserve.io",),
            ("inferenceservices",),
            ("list", "watch", "patch"),
            "InferenceServices are workloads; their payload logger is pointed at the drift "
            "monitor when none is set",
        ),
        Rule(
            ("networking.k8s.io",),
            ("networkpolicies",),
            OWN,
            "the NetworkPolicy next to every governed workload",
        ),
        Rule(("",), ("services",), OWN, "drift monitor Services"),
        Rule(
            ("",),
            ("configmaps",),
            OWN,
            "drift monitor ConfigMaps and the modelshield-model-keys ConfigMap; "
            "get also reads the reference profile a policy names",
        ),
        Rule(
            ("",),
            ("serviceaccounts",),
            OWN,
            "each drift monitor's own ServiceAccount",
        ),
        Rule(
            ("rbac.authorization.k8s.io",),
            ("roles", "rolebindings"),
            OWN,
            "each drift monitor's Role (create events, nothing else) and its binding; the API "
            "server lets the operator grant only what it holds itself",
        ),
        Rule(
            ("rbac.authorization.k8s.io",),
            ("clusterrolebindings",),
            ("get", "update"),
            "the subjects of the one binding that lets inference guards create TokenReviews: "
            "the guards' ServiceAccounts, nothing else (the chart creates it; never create or "
            "delete)",
            (guard_binding,),
        ),
        Rule(
            ("rbac.authorization.k8s.io",),
            ("clusterroles",),
            ("bind",),
            "updating that binding needs bind on the ClusterRole it grants: that one role "
            "(create tokenreviews) only",
            (guard_role,),
        ),
        Rule(("",), ("events",), ("create",), "Events on policies, workloads and artifacts"),
        Rule(
            ("",),
            ("secrets",),
            ("get",),
            "the public keys of secretRef signers (model signers when a ModelArtifact is "
            "verified; image and attestation signers with --read-signer-secrets) and pod "
            "imagePullSecrets (--read-pull-secrets), by name: get only, never list or watch",
        ),
        Rule(
            ("wgpolicyk8s.io",),
            ("policyreports",),
            ("get", "list", "create", "update", "delete"),
            "the background audit's PolicyReports, one per namespace",
        ),
        Rule(
            ("admissionregistration.k8s.io",),
            ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
            ("get", "patch"),
            "keep the caBundle of modelshield's own webhooks in sync with its certificate",
            tuple(webhook_configurations),
        ),
        Rule(
            ("apiextensions.k8s.io",),
            ("customresourcedefinitions",),
            ("list", "watch"),
            "kopf notices when the InferenceService CRD is installed later",
        ),
        Rule(
            ("kopf.dev",),
            ("clusterkopfpeerings",),
            ("get", "list", "watch", "patch"),
            "kopf peering: one active operator instance",
        ),
    )


def namespace_rules(secret_name: str = DEFAULT_CERTIFICATE_SECRET) -> tuple[Rule, ...]:
    """The Role's rules in the operator's own namespace."""
    return (
        Rule(
            ("",),
            ("secrets",),
            ("create",),
            "create the webhook certificate Secret the first time (create cannot be limited "
            "by name)",
        ),
        Rule(
            ("",),
            ("secrets",),
            ("get", "update"),
            "read and rotate the webhook certificate; no other Secret",
            (secret_name,),
        ),
    )


def _metadata(name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": "modelshield",
            "app.kubernetes.io/component": "operator",
        },
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def manifests(
    *,
    name: str = "modelshield-operator",
    namespace: str = "modelshield-system",
    service_account: str = "modelshield-operator",
    webhook_configurations: Sequence[str] = DEFAULT_WEBHOOK_CONFIGURATIONS,
    secret_name: str = DEFAULT_CERTIFICATE_SECRET,
    guard_binding: str = tokenreviewers.DEFAULT_NAME,
) -> list[dict[str, Any]]:
    """ClusterRole, ClusterRoleBinding, Role and RoleBinding for the operator, then the
    inference guards' ClusterRole and its binding (named alike; subjects kept by the
    operator)."""
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    rules = cluster_rules(webhook_configurations, guard_binding, guard_binding)
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _metadata(name),
            "rules": [rule.manifest() for rule in rules],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _metadata(name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(name, namespace),
            "rules": [rule.manifest() for rule in namespace_rules(secret_name)],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        },
        *guard_manifests(guard_binding),
    ]


def guard_manifests(name: str = tokenreviewers.DEFAULT_NAME) -> list[dict[str, Any]]:
    """The inference guards' ClusterRole (create TokenReviews, nothing else) and the one
    ClusterRoleBinding whose subjects the operator keeps (none to begin with)."""
    metadata = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": "modelshield",
            "app.kubernetes.io/component": "inference-guard",
        },
    }
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": metadata,
            "rules": [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": tokenreviewers.RBAC_GROUP, "kind": "ClusterRole", "name": name},
        },
    ]
