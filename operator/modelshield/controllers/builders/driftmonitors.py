"""The drift monitor next to a governed workload: a ConfigMap, a Deployment and a Service.

Unless the operator is told to use an existing ServiceAccount, each monitor also gets its own
ServiceAccount, bound by a Role to exactly one permission: creating Events in its namespace.

The ConfigMap holds the reference profile (copied from the ConfigMap key the policy names)
and the monitor's configuration (``modelshield.drift.config``: the policy's features,
statistic, threshold and window, and the workload that Events are attached to). The
Deployment runs our own image's ``modelshield drift-monitor`` entrypoint, hardened the way
the policies ask of everyone: non-root, read-only root filesystem, no privilege escalation,
no capabilities, resource limits. The Service is what a payload logger sends requests to.

For an InferenceService, ``logger_patch`` points the predictor's payload logger at the
monitor, but only when no logger is set: someone else's logger is never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import yaml

from modelshield.api.v1alpha1 import policies

COMPONENT = "drift-monitor"
PORT = 8080
CONFIG_KEY = "config.yaml"
PROFILE_KEY = "profile.json"
MOUNT_PATH = "/etc/modelshield/drift"
MONITOR_LABEL = "modelshield.dev/drift-monitor"
#: Pod-template annotation that rolls the monitor when its ConfigMap changes.
CONFIG_HASH_ANNOTATION = "modelshield.dev/config-hash"


@dataclasses.dataclass(frozen=True)
class MonitorSettings:
    """How the operator runs drift monitors (operator-wide settings, not policy fields)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    #: An existing ServiceAccount for every monitor; empty: each monitor gets its own, allowed
    #: only to create Events in its namespace (ServiceAccount, Role and RoleBinding).
    service_account: str = ""
    cpu_request: str = "50m"
    cpu_limit: str = "500m"
    memory_request: str = "128Mi"
    memory_limit: str = "512Mi"
    run_as_user: int = 1000


@dataclasses.dataclass(frozen=True)
class Target:
    """The workload being monitored."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str


def pod_labels(name: str) -> dict[str, str]:
    """The labels of the monitor's pods (and its Service's selector)."""
    return {MONITOR_LABEL: name, "app.kubernetes.io/name": "modelshield-drift-monitor"}


def monitor_config(drift: policies.DriftMonitoring, target: Target) -> dict[str, Any]:
    """The monitor's configuration document (see ``modelshield.drift.config``).

    With ``falseAlarmRate`` the monitor calibrates its thresholds on the profile it is
    given, at start-up, for its own window size and features (``modelshield.drift.calibration``).
    """
    document: dict[str, Any] = {
        "profile": PROFILE_KEY,
        "features": list(drift.features),
        "statistic": drift.statistic.value,
        "threshold": drift.threshold,
        "window": drift.window,
        "port": PORT,
        "workload": {
            "apiVersion": target.api_version,
            "kind": target.kind,
            "name": target.name,
            "namespace": target.namespace,
            "uid": target.uid,
        },
    }
    if drift.false_alarm_rate is not None:
        document["falseAlarmRate"] = drift.false_alarm_rate
    return document


def build_config_map(
    *, name: str, namespace: str, drift: policies.DriftMonitoring, target: Target, profile: str
) -> dict[str, Any]:
    """The ConfigMap with the reference profile and the monitor's configuration."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            CONFIG_KEY: yaml.safe_dump(monitor_config(drift, target), sort_keys=True),
            PROFILE_KEY: profile,
        },
    }


def config_hash(config_map: Mapping[str, Any]) -> str:
    """A digest of the ConfigMap's data: a changed profile or threshold rolls the pods."""
    data = config_map.get("data") or {}
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + str(data[key]).encode() + b"\0")
    return digest.hexdigest()[:16]


def build_deployment(
    *, name: str, namespace: str, config_map: Mapping[str, Any], settings: MonitorSettings
) -> dict[str, Any]:
    """The monitor's Deployment; every default the API server would add is spelled out."""
    labels = pod_labels(name)
    security_context = {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": settings.service_account or name,
        # The token is needed for one thing: posting drift Events (see build_role).
        "automountServiceAccountToken": True,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "drift-monitor",
                "image": settings.image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["modelshield"],
                "args": ["drift-monitor", "--config", f"{MOUNT_PATH}/{CONFIG_KEY}"],
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "resources": {
                    "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                    "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
                },
                "securityContext": security_context,
                "volumeMounts": [
                    {"name": "config", "mountPath": MOUNT_PATH, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash(config_map)},
                },
                "spec": pod_spec,
            },
        },
    }


def build_service_account(*, name: str, namespace: str) -> dict[str, Any]:
    """The monitor's own identity."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def build_role(*, name: str, namespace: str) -> dict[str, Any]:
    """All the monitor may do: create Events in its namespace (drift raised and cleared)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}],
    }


def build_role_binding(*, name: str, namespace: str) -> dict[str, Any]:
    """The monitor's ServiceAccount bound to its Role."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def build_service(*, name: str, namespace: str) -> dict[str, Any]:
    """The Service payload loggers send to."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": pod_labels(name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_url(name: str, namespace: str) -> str:
    """The in-cluster URL of the monitor's Service."""
    return f"http://{name}.{namespace}.svc.cluster.local:{PORT}/"


def logger_patch(
    inference_service: Mapping[str, Any], url: str
) -> tuple[dict[str, Any] | None, str | None]:
    """(merge patch pointing the predictor's logger at url, or None; conflict or None).

    No patch is needed when the logger already points at url. When another logger is set
    the second element says so and how to fan out, and nothing is patched.
    """
    predictor = (inference_service.get("spec") or {}).get("predictor") or {}
    logger = predictor.get("logger")
    if isinstance(logger, Mapping) and logger.get("url"):
        if logger.get("url") == url:
            return None, None
        return None, (
            f"the predictor's payload logger already sends to {logger.get('url')}; modelshield "
            f"did not overwrite it. To feed the drift monitor too, fan out: point the logger at "
            f"a broker (e.g. a Knative Broker with a Trigger for each consumer) and add a "
            f"Trigger that delivers to {url}"
        )
    patch = {"spec": {"predictor": {"logger": {"mode": "all", "url": url}}}}
    return patch, None
