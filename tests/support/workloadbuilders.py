"""Build workloads of every kind around one pod spec, and policies around requirements."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import facts, keyids

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)
NAMESPACE = "ml"
LABELS = {"app": "model-server"}
SIGNED_IMAGE = "registry.example.com/ml/server@sha256:" + "a" * 64
MODEL = "model-v1"

# Where each kind's first container lives: the JSON path the engine must report.
CONTAINER_PATHS = {
    "Pod": "spec.containers[0]",
    "Deployment": "spec.template.spec.containers[0]",
    "StatefulSet": "spec.template.spec.containers[0]",
    "DaemonSet": "spec.template.spec.containers[0]",
    "ReplicaSet": "spec.template.spec.containers[0]",
    "ReplicationController": "spec.template.spec.containers[0]",
    "Job": "spec.template.spec.containers[0]",
    "CronJob": "spec.jobTemplate.spec.template.spec.containers[0]",
    "InferenceService": "spec.predictor.containers[0]",
}
KINDS = tuple(CONTAINER_PATHS)
API_VERSIONS = {
    "Pod": "v1",
    "ReplicationController": "v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "InferenceService": "serving.kserve.io/v1beta1",
}


def hardened_container(image: str = SIGNED_IMAGE, name: str = "server") -> dict[str, Any]:
    """A container that passes every runtime check."""
    return {
        "name": name,
        "image": image,
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }


#: Fields that make a container fail every runtime check: merged into an injected init
#: container, they show that a look-alike of the startup check is not exempt.
PRIVILEGED = {
    "command": ["sh", "-c", "anything"],
    "securityContext": {
        "privileged": True,
        "runAsUser": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": True,
    },
}


def pod_spec(*containers: dict[str, Any]) -> dict[str, Any]:
    """A pod spec with these containers (a hardened one by default)."""
    return {"containers": list(containers) or [hardened_container()]}


def workload(
    kind: str,
    spec: dict[str, Any] | None = None,
    *,
    labels: dict[str, str] | None = None,
    model: str | None = MODEL,
) -> dict[str, Any]:
    """An object of the kind whose pods run spec, labelled and naming a model."""
    spec = copy.deepcopy(spec or pod_spec())
    labels = dict(LABELS if labels is None else labels)
    annotations = {"modelshield.dev/model-artifact": model} if model else {}
    template = {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}
    body: dict[str, Any] = {
        "apiVersion": API_VERSIONS.get(kind, "apps/v1"),
        "kind": kind,
        "metadata": {"name": f"{kind.lower()}-1", "namespace": NAMESPACE},
    }
    if kind == "Pod":
        body["metadata"].update(template["metadata"])
        body["spec"] = spec
    elif kind == "CronJob":
        body["spec"] = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "InferenceService":
        body["metadata"].update(template["metadata"])
        body["spec"] = {"predictor": spec}
    else:
        body["spec"] = {"selector": {"matchLabels": labels}, "template": template}
    return body


def policy(
    enforcement: str = "Enforce", selector: dict[str, Any] | None = None, **requirements: Any
) -> policies.ModelSecurityPolicy:
    """A namespaced policy over LABELS with the given requirement blocks (wire names)."""
    return policies.ModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "p", "namespace": NAMESPACE},
            "spec": {
                "enforcement": enforcement,
                "selector": selector if selector is not None else {"matchLabels": LABELS},
                **requirements,
            },
        }
    )


PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
#: A real key: a policy accepts a model only when the key that verified is its own.
RELEASE_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+3FW22ax1ES2P0iuO01yfpx9G9J8\n"
    "DAvb+RjS0IbAhs4ubcwl4zQzfNmgs/4iQxD+gktKNvbZ/VQcmL7ihek9qw==\n"
    "-----END PUBLIC KEY-----\n"
)
RELEASE_KEY_ID = keyids.fingerprint(RELEASE_KEY.encode())
SIGNERS = [{"name": "release", "publicKey": RELEASE_KEY}]
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"


def verified_image(
    reference: str = SIGNED_IMAGE,
    *,
    signer: str = "release",
    attested_at: datetime.datetime | None = None,
    vulnerabilities: dict[Any, int] | None = None,
) -> facts.ImageFacts:
    """Facts for an image signed by signer, optionally with a vulnerability attestation."""
    attestations: tuple[facts.AttestationFact, ...] = ()
    if attested_at is not None:
        attestations = (facts.AttestationFact(VULN, signer, attested_at, vulnerabilities),)
    return facts.ImageFacts(
        reference=reference,
        digest="sha256:" + "a" * 64,
        signature=facts.SignatureFact(facts.Outcome.VERIFIED, signer),
        attestations=attestations,
    )


def artifact(
    *,
    verified: bool = True,
    scanned: bool = True,
    signer: str | None = "release",
    findings: tuple[facts.ScanFindingFact, ...] = (),
    current: bool = True,
    last_checked: datetime.datetime | None = NOW,
    signer_key: str = RELEASE_KEY_ID,
) -> facts.ArtifactFacts:
    """Facts for MODEL, checked by the operator at NOW unless said otherwise."""
    return facts.ArtifactFacts(
        namespace=NAMESPACE,
        name=MODEL,
        uri="s3://models/v1/",
        expected_digest=None,
        current=current,
        verified=verified,
        verified_digest="sha256:" + "b" * 64 if verified else None,
        signer=signer if verified else None,
        scanned=scanned,
        findings=findings,
        last_checked=last_checked,
        signer_key=signer_key if verified else "",
    )
