"""AdmissionReviews shaped like the API server's, policies, artifacts and a fixed-verdict verifier.

The review documents follow what kube-apiserver v1.36 sends (uid, kind, resource,
requestKind, requestResource, userInfo, object, oldObject, dryRun, options); objects
carry the defaults the API server fills in, so that they are several KB like real ones.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.engine import keyids
from modelshield_webhooks import caches

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
ENFORCED = "ml"
AUDITED = "ml-audit"
UNGOVERNED = "sandbox"
LABELS = {"app": "fraud-detector"}
DIGEST = "sha256:" + "a" * 64
SIGNED = f"registry.example.com/ml/fraud-server@{DIGEST}"
SIGNED_BY_TAG = "registry.example.com/ml/fraud-server:v7"
UNSIGNED = "registry.example.com/ml/fraud-server:unsigned"
ARTIFACT = "fraud-v7"
SIGNER = "release-2026"
MODEL_SIGNER = "model-release"
PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+3FW22ax1ES2P0iuO01yfpx9G9J8\n"
    "DAvb+RjS0IbAhs4ubcwl4zQzfNmgs/4iQxD+gktKNvbZ/VQcmL7ihek9qw==\n"
    "-----END PUBLIC KEY-----\n"
)


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """A kind the webhook receives, as request.kind and request.resource name it."""

    kind: str
    group: str
    version: str
    resource: str
    sub_resource: str = ""

    @property
    def api_version(self) -> str:
        """The object's apiVersion."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def label(self) -> str:
        """A test id."""
        return self.kind + (f"/{self.sub_resource}" if self.sub_resource else "")


KINDS = (
    KindInfo("Pod", "", "v1", "pods"),
    KindInfo("Pod", "", "v1", "pods", "ephemeralcontainers"),
    KindInfo("ReplicationController", "", "v1", "replicationcontrollers"),
    KindInfo("Deployment", "apps", "v1", "deployments"),
    KindInfo("StatefulSet", "apps", "v1", "statefulsets"),
    KindInfo("DaemonSet", "apps", "v1", "daemonsets"),
    KindInfo("ReplicaSet", "apps", "v1", "replicasets"),
    KindInfo("Job", "batch", "v1", "jobs"),
    KindInfo("CronJob", "batch", "v1", "cronjobs"),
    KindInfo("InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices"),
)
BY_LABEL = {info.label: info for info in KINDS}


def container(image: str, name: str = "server", *, realistic: bool = True) -> dict[str, Any]:
    """A hardened container, with the fields the API server defaults when realistic."""
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "limits": {"cpu": "2", "memory": "4Gi"},
            "requests": {"cpu": "500m", "memory": "1Gi"},
        },
    }
    if realistic:
        body.update(
            {
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [
                    {"name": f"MODEL_SETTING_{index}", "value": f"value-{index}"}
                    for index in range(8)
                ],
                "volumeMounts": [
                    {"name": "model", "mountPath": "/models", "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/v2/health/ready", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 10,
                    "timeoutSeconds": 1,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/v2/health/live", "port": 8080, "scheme": "HTTP"},
                    "periodSeconds": 10,
                    "timeoutSeconds": 1,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        )
    return body


def pod_spec(images: Sequence[str], *, realistic: bool = True) -> dict[str, Any]:
    """A hardened pod spec running these images (the first is the server, then sidecars)."""
    spec: dict[str, Any] = {
        "containers": [
            container(image, "server" if index == 0 else f"sidecar-{index}", realistic=realistic)
            for index, image in enumerate(images)
        ],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
    }
    if realistic:
        spec.update(
            {
                "volumes": [
                    {"name": "model", "persistentVolumeClaim": {"claimName": "fraud-model"}},
                    {"name": "tmp", "emptyDir": {}},
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "schedulerName": "default-scheduler",
                "enableServiceLinks": True,
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                ],
            }
        )
    return spec


def workload(
    info: KindInfo,
    images: Sequence[str] = (SIGNED,),
    *,
    namespace: str = ENFORCED,
    labels: Mapping[str, str] = LABELS,
    model: str | None = ARTIFACT,
    name: str = "fraud-detector",
    realistic: bool = True,
) -> dict[str, Any]:
    """An object of the kind whose pods run the images, labelled and naming the model."""
    spec = pod_spec(images, realistic=realistic)
    annotations = {"modelshield.dev/model-artifact": model} if model else {}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{info.kind}/{namespace}/{name}")),
        "creationTimestamp": None,
    }
    template = {"metadata": {"labels": dict(labels), "annotations": annotations}, "spec": spec}
    body: dict[str, Any] = {"apiVersion": info.api_version, "kind": info.kind, "metadata": metadata}
    if info.kind == "Pod":
        metadata.update(template["metadata"])
        body["spec"] = spec
        if info.sub_resource == "ephemeralcontainers":
            # The debug container carries the image under test; the pod's own are signed.
            debug = container(images[-1], "debugger", realistic=False)
            spec["containers"] = [container(SIGNED, "server", realistic=realistic)]
            spec["ephemeralContainers"] = [{**debug, "targetContainerName": "server"}]
        body["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    elif info.kind == "CronJob":
        body["spec"] = {
            "schedule": "@daily",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": template}},
        }
    elif info.kind == "InferenceService":
        metadata["labels"] = dict(labels)
        metadata["annotations"] = annotations
        body["spec"] = {"predictor": {**spec, "minReplicas": 1}}
    else:
        body["spec"] = {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "template": template,
        }
        if info.kind in ("Deployment", "StatefulSet", "DaemonSet"):
            body["spec"]["revisionHistoryLimit"] = 10
    return body


def review(
    info: KindInfo,
    operation: str,
    obj: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None = None,
    *,
    namespace: str | None = None,
    uid: str | None = None,
    dry_run: bool = False,
    copy_objects: bool = True,
) -> dict[str, Any]:
    """An AdmissionReview request as kube-apiserver sends it (objects copied unless told)."""
    gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    gvr = {"group": info.group, "version": info.version, "resource": info.resource}
    metadata = (obj or old or {}).get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": metadata.get("name", ""),
        "namespace": namespace if namespace is not None else metadata.get("namespace", ""),
        "operation": operation,
        "userInfo": {
            "username": "system:serviceaccount:ci:deployer",
            "uid": "6b1b7e4e-7f1e-4c1e-9a5e-6d3b1c0e4a11",
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated",
            ],
        },
        "object": copy.deepcopy(obj) if obj is not None and copy_objects else obj,
        "oldObject": copy.deepcopy(old) if old is not None and copy_objects else old,
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions",
            "fieldManager": "kubectl-client-side-apply",
        },
    }
    if info.sub_resource:
        request["subResource"] = info.sub_resource
        request["requestSubResource"] = info.sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def policy(
    namespace: str,
    enforcement: str = "Enforce",
    *,
    name: str = "fraud-model",
    mutate_to_digest: bool = False,
    verify_at_startup: bool = False,
    generation: int = 1,
) -> dict[str, Any]:
    """A ModelSecurityPolicy: signed images, signed and scanned model, hardened runtime.

    The API server bumps metadata.generation on every spec change; pass a new one when
    a test changes a policy the cache already holds.
    """
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {
            "enforcement": enforcement,
            "selector": {"matchLabels": dict(LABELS)},
            "images": {
                "allowedRegistries": ["registry.example.com/ml/"],
                "mutateToDigest": mutate_to_digest,
                "signers": [{"name": SIGNER, "publicKey": PUBLIC_KEY}],
            },
            "models": {
                "signers": [{"name": MODEL_SIGNER, "publicKey": PUBLIC_KEY}],
                "requireScan": True,
                "verifyAtStartup": verify_at_startup,
            },
            "runtime": {},
        },
    }


def model_artifact(
    namespace: str, name: str = ARTIFACT, *, verified: bool = True
) -> dict[str, Any]:
    """A ModelArtifact whose status says it verified (signed by MODEL_SIGNER) and scanned clean."""
    status = "True" if verified else "False"
    when = "2026-11-26T08:00:00Z"
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": name, "namespace": namespace, "generation": 2},
        "spec": {"uri": f"s3://models/{name}/", "digest": "sha256:" + "b" * 64},
        "status": {
            "observedGeneration": 2,
            "lastChecked": when,
            "verifiedDigest": "sha256:" + "b" * 64,
            "signer": MODEL_SIGNER,
            # The key that verified: admission trusts the policy's key, not the name.
            "signerKey": keyids.fingerprint(PUBLIC_KEY.encode()),
            "conditions": [
                {
                    "type": "Verified",
                    "status": status,
                    "reason": "Signed",
                    "lastTransitionTime": when,
                },
                {
                    "type": "Scanned",
                    "status": "True",
                    "reason": "Clean",
                    "lastTransitionTime": when,
                },
            ],
            "findings": [],
        },
    }


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Namespace object."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
    }


def synced_state(
    policy_objects: Sequence[Mapping[str, Any]] = (),
    artifact_objects: Sequence[Mapping[str, Any]] = (),
    namespaces: Sequence[str] = (ENFORCED, AUDITED, UNGOVERNED),
) -> caches.ClusterState:
    """A ClusterState as list+watch would leave it."""
    state = caches.ClusterState()
    state.replace(
        caches.POLICIES, [p for p in policy_objects if p["kind"] == "ModelSecurityPolicy"]
    )
    state.replace(
        caches.CLUSTER_POLICIES, [p for p in policy_objects if p["kind"] != "ModelSecurityPolicy"]
    )
    state.replace(caches.ARTIFACTS, artifact_objects)
    state.replace(caches.NAMESPACES, [namespace(name) for name in namespaces])
    return state


def standard_state(**policy_options: Any) -> caches.ClusterState:
    """An Enforce policy in ENFORCED, an Audit one in AUDITED, verified artifacts in both."""
    return synced_state(
        [policy(ENFORCED, "Enforce", **policy_options), policy(AUDITED, "Audit", **policy_options)],
        [model_artifact(ENFORCED), model_artifact(AUDITED)],
    )
