"""The inference guard next to a governed workload: ConfigMap, ServiceAccount, Deployment,
Service, the guard's NetworkPolicy, and the requirement that closes the model's port. Pure.

Why a Deployment the operator owns rather than a sidecar: the operator knows (and sets)
how many guard replicas run, so it can give each replica its exact share of every rate
limit; the guard's identity (the ServiceAccount allowed to create TokenReviews) is not
handed to the model server's pod; and the model server's pods stay as their authors
wrote them (no injection to verify at admission). The model server's port is closed to
everyone but the guard's pods by ``model_ingress_requirement``, intersected with the
policies' own ``network`` blocks like any other.

The guard's ServiceAccount gets its one permission (create TokenReviews) through the
chart's single ClusterRoleBinding, whose subjects the operator keeps (``guardbindings``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from modelshield.api.v1alpha1 import policies
from modelshield.controllers.builders import driftmonitors

COMPONENT = "inference-guard"
GUARD_LABEL = "modelshield.dev/inference-guard"
CONFIG_KEY = "guard.yaml"
MOUNT_PATH = "/etc/modelshield/guard"
KEYS_PATH = "/etc/modelshield/api-keys"
PORT = 8443
MANAGEMENT_PORT = 9090
SERVICE_PORT = 80
#: Egress anywhere: what the guard's requirement leaves to the policies' network blocks.
_ANYWHERE = [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}, {"namespaceSelector": {}}]


def pod_labels(name: str) -> dict[str, str]:
    """The labels of the guard's pods (its Service's and NetworkPolicies' selector)."""
    return {GUARD_LABEL: name, "app.kubernetes.io/name": "modelshield-inference-guard"}


def guard_config(
    *,
    upstream: str,
    replicas: int,
    governing: Sequence[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy],
    drift_monitor: str | None = None,
    reference_features: list[dict[str, str]] | None = None,
    outlier_model: dict[str, Any] | None = None,
    workload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The guard's configuration document (``modelshield.guard.config``)."""
    document: dict[str, Any] = {
        "upstream": upstream,
        "port": PORT,
        "managementPort": MANAGEMENT_PORT,
        "replicas": replicas,
        "apiKeysDir": KEYS_PATH,
        "policies": [
            {
                "kind": policy.kind,
                "namespace": (
                    ""
                    if isinstance(policy, policies.ClusterModelSecurityPolicy)
                    else policy.metadata.namespace
                ),
                "name": policy.metadata.name,
                "enforcement": policy.spec.enforcement.value,
                "api": policy.spec.api.model_dump(by_alias=True, mode="json", exclude_none=True),
            }
            for policy in governing
            if policy.spec.api is not None
        ],
    }
    if drift_monitor is not None:
        document["driftMonitor"] = drift_monitor
    if reference_features is not None:
        document["referenceFeatures"] = reference_features
    if outlier_model is not None and any(
        policy.spec.api is not None
        and (policy.spec.api.outliers is not None or policy.spec.api.probing is not None)
        for policy in governing
    ):
        # Only when a policy uses it: the matrix can be a few hundred kB.
        document["outlierModel"] = outlier_model
    if workload is not None and probing_events(governing):
        metadata = workload.get("metadata") or {}
        document["workload"] = {
            "apiVersion": str(workload.get("apiVersion") or ""),
            "kind": str(workload.get("kind") or ""),
            "namespace": str(metadata.get("namespace") or ""),
            "name": str(metadata.get("name") or ""),
            "uid": str(metadata.get("uid") or ""),
        }
    return document


def probing_events(
    governing: Sequence[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy],
) -> bool:
    """Whether a governing policy's probing alarms become Events (then the guard may create
    Events in its namespace: ``build_events_role``)."""
    return any(p.spec.api is not None and p.spec.api.probing is not None for p in governing)


def build_events_role(*, name: str, namespace: str) -> dict[str, Any]:
    """All the guard's own Role allows: create Events (probing alarms) in its namespace,
    the same Role a drift monitor gets."""
    return driftmonitors.build_role(name=name, namespace=namespace)


def build_events_role_binding(*, name: str, namespace: str) -> dict[str, Any]:
    """The guard's ServiceAccount bound to its events Role."""
    return driftmonitors.build_role_binding(name=name, namespace=namespace)


def profile_features(profile: str | None) -> list[dict[str, str]] | None:
    """The reference profile's features, names and types in order; None when it is not
    there or cannot be read (then the guard refuses what must match it: fail closed)."""
    if profile is None:
        return None
    try:
        document = json.loads(profile)
        found = [
            {"name": str(feature["name"]), "type": str(feature["type"])}
            for feature in document["features"]
        ]
    except (ValueError, TypeError, KeyError):
        return None
    return found or None


def profile_outliers(profile: str | None) -> dict[str, Any] | None:
    """The reference profile's outlier model (``modelshield drift profile`` stores it under
    ``outliers``); None when absent (the guard then refuses what needs it: fail closed)."""
    if profile is None:
        return None
    try:
        found = json.loads(profile).get("outliers")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


def build_config_map(*, name: str, namespace: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap holding the guard's configuration."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {CONFIG_KEY: yaml.safe_dump(dict(config), sort_keys=True)},
    }


def build_service_account(*, name: str, namespace: str) -> dict[str, Any]:
    """The guard's identity: the one allowed to create TokenReviews, nothing else."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def build_deployment(
    *,
    name: str,
    namespace: str,
    config_map: Mapping[str, Any],
    replicas: int,
    key_secrets: Sequence[str],
    settings: driftmonitors.MonitorSettings,
) -> dict[str, Any]:
    """The guard's Deployment, hardened like the drift monitor's (same image and settings)."""
    labels = pod_labels(name)
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": MOUNT_PATH, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}}
    ]
    for index, secret in enumerate(sorted(key_secrets)):
        # Mounted, so the kubelet brings rotations in without a restart; optional: a
        # missing Secret means no key is accepted, not a guard that cannot start.
        volumes.append(
            {"name": f"keys-{index}", "secret": {"secretName": secret, "optional": True}}
        )
        mounts.append(
            {"name": f"keys-{index}", "mountPath": f"{KEYS_PATH}/{secret}", "readOnly": True}
        )
    container = {
        "name": "guard",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["modelshield"],
        "args": ["guard", "--config", f"{MOUNT_PATH}/{CONFIG_KEY}"],
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "management", "containerPort": MANAGEMENT_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "management"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "management"}},
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        driftmonitors.CONFIG_HASH_ANNOTATION: driftmonitors.config_hash(config_map)
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    # The token is what the guard authenticates its TokenReviews with.
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": settings.run_as_user,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_service(*, name: str, namespace: str) -> dict[str, Any]:
    """The Service clients call instead of the model server's."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": pod_labels(name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def model_ingress_requirement(
    *, guard_name: str, model_port: int | None
) -> policies.NetworkRequirements:
    """What the ``api`` block asks of the model server's NetworkPolicy: ingress only from
    the guard's pods, on the model port (no port known: no ingress at all, fail closed);
    egress left to the policies' network blocks."""
    ingress = (
        []
        if model_port is None
        else [
            {
                "peers": [{"podSelector": {"matchLabels": pod_labels(guard_name)}}],
                "ports": [{"port": model_port}],
            }
        ]
    )
    return policies.NetworkRequirements.model_validate(
        {
            "ingress": ingress,
            "egress": [{"peers": _ANYWHERE}],
            "allowDNS": True,
        }
    )


#: The port KServe's predictor container listens on.
KSERVE_MODEL_PORT = 8080


def model_port(workload: Mapping[str, Any]) -> int | None:
    """The model server's port: a container port named ``http``, else the first container's
    first port; 8080 for an InferenceService. None when the workload declares none."""
    if workload.get("kind") == "InferenceService":
        return KSERVE_MODEL_PORT
    template = (workload.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    declared = [
        port
        for container in containers
        for port in container.get("ports") or []
        if isinstance(port.get("containerPort"), int)
    ]
    named = [port for port in declared if port.get("name") == "http"]
    chosen = (named or declared or [None])[0]
    return None if chosen is None else int(chosen["containerPort"])


def build_upstream_service(
    *, name: str, namespace: str, pod_selector: Mapping[str, Any], port: int
) -> dict[str, Any] | None:
    """A Service the guard calls the model server's pods through (Deployments and
    StatefulSets); None when their selector is not plain labels (a Service cannot hold it)."""
    labels = pod_selector.get("matchLabels")
    if not labels or pod_selector.get("matchExpressions"):
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": dict(labels),
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def upstream_url(
    workload: Mapping[str, Any], service_name: str, port: int, cluster_ip: str | None = None
) -> str:
    """Where the guard sends what it lets through: the upstream Service's ClusterIP once it
    has one (the guard then needs no cluster DNS to reach the model), its DNS name before."""
    metadata = workload.get("metadata") or {}
    namespace = metadata.get("namespace", "")
    if workload.get("kind") == "InferenceService":
        return f"http://{metadata.get('name', '')}-predictor.{namespace}.svc.cluster.local"
    if cluster_ip:
        host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
        return f"http://{host}:{port}"
    return f"http://{service_name}.{namespace}.svc.cluster.local:{port}"
