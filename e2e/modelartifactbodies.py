"""A ModelArtifact for the admission e2e tests: signed model files served to the operator,
and the object that names them.
"""

from __future__ import annotations

import datetime
import json

import yaml

from e2e.clients import Kubectl
from modelshield.engine import keyids


def _model_artifact(
    kubectl: Kubectl, namespace: str, name: str, key_pem: str, *, verified: bool
) -> None:
    """A ModelArtifact whose status (written here as the operator would) says what it proves."""
    digest = "sha256:" + "b" * 64
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=yaml.safe_dump(
            {
                "apiVersion": "modelshield.dev/v1alpha1",
                "kind": "ModelArtifact",
                "metadata": {"name": name},
                "spec": {"uri": f"s3://models/{name}/", "digest": digest},
            }
        ),
    )
    when = "2026-11-26T08:00:00Z"
    status = {
        "observedGeneration": 1,
        # The webhook judges the verdict's age on the wall clock: checked just now.
        "lastChecked": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verifiedDigest": digest,
        "signer": "model-release",
        # The key that verified (admission trusts the policy's key, not the name).
        "signerKey": keyids.fingerprint(key_pem.encode()),
        "conditions": [
            {
                "type": "Verified",
                "status": "True" if verified else "False",
                "reason": "Signed" if verified else "SignatureMismatch",
                "lastTransitionTime": when,
            },
            {"type": "Scanned", "status": "True", "reason": "Clean", "lastTransitionTime": when},
        ],
    }
    kubectl(
        "patch",
        "-n",
        namespace,
        f"modelartifact/{name}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
