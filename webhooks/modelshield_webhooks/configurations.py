"""The Validating- and MutatingWebhookConfiguration objects that register the server.

Pure builders. Decisions that keep a fail-closed webhook from wedging a cluster:
``failurePolicy: Fail`` but never for the namespaces outside modelshield's scope
(``engine.scopes``, which the operator shares: kube-system, kube-public,
kube-node-lease, modelshield's own namespace, a namespace labelled
``modelshield.dev/ignore=true``) or one the operator labelled
``modelshield.dev/ungoverned=true`` (no policy could govern it); a timeout; ``sideEffects: None`` so
that dry-run requests are sent too; a matchCondition that spares the mutating webhook
the pods it could not patch. The chart renders the same objects (tests/chart compares).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from modelshield.engine import scopes, workloads
from modelshield_webhooks import contexts

IGNORE_LABEL = scopes.IGNORE_LABEL
UNGOVERNED_LABEL = "modelshield.dev/ungoverned"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_NAME = "modelshield"
DEFAULT_NAMESPACE = scopes.DEFAULT_RELEASE_NAMESPACE

VALIDATE_PATH = "/validate"
MUTATE_PATH = "/mutate"
VALIDATE_RESOURCES_PATH = "/validate-resources"

#: Every pod-bearing kind the engine reads, as (apiGroups, resources).
WORKLOAD_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("",), ("pods", "pods/ephemeralcontainers", "replicationcontrollers")),
    (("apps",), ("deployments", "statefulsets", "daemonsets", "replicasets")),
    (("batch",), ("jobs", "cronjobs")),
    # KServe (engine.kserve): the services, and the runtimes whose images they run.
    (
        ("serving.kserve.io",),
        ("inferenceservices", "llminferenceservices", "servingruntimes"),
    ),
)
#: Cluster-scoped kinds the engine reads: the namespaceSelector never skips them.
CLUSTER_WORKLOAD_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("serving.kserve.io",), ("clusterservingruntimes",)),
)
RESOURCE_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("modelshield.dev",),
        ("modelsecuritypolicies", "clustermodelsecuritypolicies", "modelartifacts"),
    ),
)


def _unpinned(containers: str) -> str:
    return f"(has({containers}) && {containers}.exists(c, !has(c.image) || !c.image.contains('@')))"


#: The mutating webhook is a second HTTPS round trip on every create. Pods are most of
#: them (every replica), and a pod needs a patch only when an image is not pinned by
#: digest or it names a model (the startup re-verification): the API server skips the
#: call for the rest. Every field is guarded with has(): an evaluation error would fail
#: the request (failurePolicy: Fail). Other kinds are always sent: there are few of them
#: (one per rollout, not one per replica). The chart's webhook-configurations.yaml spells out the
#: same string; tests/chart fails when the two differ.
POD_MAY_NEED_A_PATCH = " || ".join(
    (
        "object.kind != 'Pod'",
        "!has(object.spec)",
        "(has(object.metadata.annotations) && "
        f"'{workloads.MODEL_ANNOTATION}' in object.metadata.annotations)",
        _unpinned("object.spec.containers"),
        _unpinned("object.spec.initContainers"),
        _unpinned("object.spec.ephemeralContainers"),
    )
)

POD_CONDITION_NAME = "pod-may-need-a-patch"


#: modelshield's own resources are judged again only when their spec changes (the server
#: admits any other UPDATE anyway): label, annotation and finalizer updates, which a
#: deletion needs, do not wait on the webhook, so deleting a ModelArtifact does not hang
#: while the server is down. On CREATE oldObject is null; `||` absorbs that error.
SPEC_CHANGES = (
    "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec) "
    "|| object.spec != oldObject.spec"
)
SPEC_CONDITION_NAME = "spec-changes"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """How the API server reaches the server: a URL, or a Service (namespace/name/port)."""

    ca_bundle: bytes
    url: str | None = None
    service_namespace: str = DEFAULT_NAMESPACE
    service_name: str = DEFAULT_NAME
    service_port: int = 443

    def client_config(self, path: str) -> dict[str, Any]:
        """The ``clientConfig`` of one webhook."""
        config: dict[str, Any] = {"caBundle": base64.b64encode(self.ca_bundle).decode()}
        if self.url is not None:
            config["url"] = self.url.rstrip("/") + path
        else:
            config["service"] = {
                "namespace": self.service_namespace,
                "name": self.service_name,
                "path": path,
                "port": self.service_port,
            }
        return config


def _rules(
    table: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], scope: str
) -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": list(groups),
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": list(resources),
            "scope": scope,
        }
        for groups, resources in table
    ]


def namespace_selector(own_namespace: str) -> dict[str, Any]:
    """Every namespace in modelshield's scope (``scopes.Scope``: not the system namespaces,
    not modelshield's own, not those that opt out), but those the operator labelled
    ungoverned (no policy could govern them)."""
    return {
        "matchExpressions": [
            {
                "key": NAMESPACE_NAME_LABEL,
                "operator": "NotIn",
                "values": list(scopes.Scope.of(own_namespace).excluded_names),
            },
            {"key": IGNORE_LABEL, "operator": "NotIn", "values": [scopes.TRUE]},
            # Set by the operator on namespaces no policy could govern; absent (and so
            # selected) until the operator has judged a namespace: fail closed.
            {"key": UNGOVERNED_LABEL, "operator": "NotIn", "values": ["true"]},
        ]
    }


def _webhook(
    name: str,
    endpoint: Endpoint,
    path: str,
    rules: list[dict[str, Any]],
    timeout_seconds: int,
    selector: dict[str, Any] | None,
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": endpoint.client_config(path),
        "rules": rules,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": timeout_seconds,
    }
    if selector is not None:
        webhook["namespaceSelector"] = selector
    return webhook


def validating_configuration(
    endpoint: Endpoint,
    *,
    name: str = DEFAULT_NAME,
    own_namespace: str = DEFAULT_NAMESPACE,
    timeout_seconds: int = contexts.WEBHOOK_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: workloads, and modelshield's own resources."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "modelshield"}},
        "webhooks": [
            _webhook(
                "workloads.validate.modelshield.dev",
                endpoint,
                VALIDATE_PATH,
                _rules(WORKLOAD_RULES, "Namespaced") + _rules(CLUSTER_WORKLOAD_RULES, "Cluster"),
                timeout_seconds,
                namespace_selector(own_namespace),
            ),
            # Policies are cluster-wide facts: no namespace opts out of their validation.
            {
                **_webhook(
                    "resources.validate.modelshield.dev",
                    endpoint,
                    VALIDATE_RESOURCES_PATH,
                    _rules(RESOURCE_RULES, "*"),
                    timeout_seconds,
                    None,
                ),
                "matchConditions": [{"name": SPEC_CONDITION_NAME, "expression": SPEC_CHANGES}],
            },
        ],
    }


def mutating_configuration(
    endpoint: Endpoint,
    *,
    name: str = DEFAULT_NAME,
    own_namespace: str = DEFAULT_NAMESPACE,
    timeout_seconds: int = contexts.WEBHOOK_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration: digest pinning and the startup init container.

    Pods reach it only under POD_MAY_NEED_A_PATCH (matchConditions: GA in Kubernetes
    1.30, beta and on by default in 1.28 and 1.29; with that feature gate turned off
    every pod is sent: slower, not less safe).
    """
    webhook = _webhook(
        "workloads.mutate.modelshield.dev",
        endpoint,
        MUTATE_PATH,
        _rules(WORKLOAD_RULES, "Namespaced") + _rules(CLUSTER_WORKLOAD_RULES, "Cluster"),
        timeout_seconds,
        namespace_selector(own_namespace),
    )
    webhook["reinvocationPolicy"] = "Never"
    webhook["matchConditions"] = [{"name": POD_CONDITION_NAME, "expression": POD_MAY_NEED_A_PATCH}]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "modelshield"}},
        "webhooks": [webhook],
    }
