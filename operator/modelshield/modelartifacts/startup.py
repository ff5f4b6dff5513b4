"""The init container that re-verifies a model when the pod starts (``models.verifyAtStartup``).

The mutating webhook injects it in front of the model server. It runs
``modelshield model verify`` on the mounted model with the digest and signer the
ModelArtifact's status recorded at admission, so a model swapped after admission fails
the pod instead of being served. Pure builder: returns the container as a dict.
"""

from __future__ import annotations

import hashlib
from typing import Any

CONTAINER_NAME = "modelshield-verify-model"
#: The ConfigMap (one per namespace, written by the operator) and pod volume holding the
#: public keys the init container trusts: one file per ModelArtifact and signer.
KEYS_CONFIG_MAP = "modelshield-model-keys"
#: Where the init container mounts that ConfigMap.
KEYS_MOUNT = "/etc/modelshield/model-keys"
#: A ConfigMap key is at most 253 characters of ``[-._a-zA-Z0-9]``.
_MAX_KEY_LENGTH = 253
_KEY_SUFFIX = ".pub"
#: Where the keyless trust root is mounted, when keyless signers are used.
TRUST_ROOT_MOUNT = "/etc/modelshield/trust"


def key_file_name(artifact: str, signer: str) -> str:
    """The ConfigMap key (and file name under ``KEYS_MOUNT``) of one artifact's signer key.

    ``<artifact>.<signer>.pub``: per artifact, so that two artifacts whose signers share a
    name never share a file, and unambiguous because signer names (DNS labels) hold no dot.
    An artifact name too long for a ConfigMap key is shortened and suffixed with its hash.
    """
    name = f"{artifact}.{signer}{_KEY_SUFFIX}"
    if len(name) <= _MAX_KEY_LENGTH:
        return name
    digest = hashlib.sha256(artifact.encode()).hexdigest()[:16]
    room = _MAX_KEY_LENGTH - len(f"-{digest}.{signer}{_KEY_SUFFIX}")
    return f"{artifact[:room].rstrip('.-')}-{digest}.{signer}{_KEY_SUFFIX}"


def verify_command(
    model_path: str,
    digest: str,
    *,
    key_path: str | None = None,
    policy_path: str | None = None,
    signature_path: str | None = None,
) -> list[str]:
    """The argv of ``modelshield model verify`` for one model."""
    if (key_path is None) == (policy_path is None):
        raise ValueError("give exactly one of key_path and policy_path")
    command = ["modelshield", "model", "verify", model_path, "--digest", digest]
    command += ["--key", key_path] if key_path is not None else ["--policy", str(policy_path)]
    if signature_path is not None:
        command += ["--signature", signature_path]
    return command


def build_init_container(
    *,
    image: str,
    model_volume: str,
    model_mount_path: str,
    digest: str,
    artifact: str,
    signer: str,
    keys_volume: str,
    model_sub_path: str = "",
    resources: dict[str, Any] | None = None,
    signature_path: str | None = None,
) -> dict[str, Any]:
    """The init container spec: read-only mounts, non-root, no privileges, bounded resources.

    ``keys_volume`` holds the PEM public keys the operator publishes, one per artifact and
    signer (``key_file_name``); only the key of the signer the ModelArtifact's status
    recorded is trusted at start. The signature bundle is
    ``model.sig`` in the mounted model unless ``signature_path`` names another mounted file.
    """
    model_path = model_mount_path.rstrip("/") + (
        "/" + model_sub_path.strip("/") if model_sub_path else ""
    )
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": verify_command(
            model_path,
            digest,
            key_path=f"{KEYS_MOUNT}/{key_file_name(artifact, signer)}",
            signature_path=signature_path,
        ),
        "env": [{"name": "MODELSHIELD_EXPECTED_SIGNER", "value": signer}],
        "volumeMounts": [
            {"name": model_volume, "mountPath": model_mount_path, "readOnly": True},
            {"name": keys_volume, "mountPath": KEYS_MOUNT, "readOnly": True},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": resources
        or {
            "requests": {"cpu": "500m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
