"""The operator publishes the keys the startup re-verification reads, against a real API server.

``modelshield operator`` runs as a local process under exactly the RBAC of ``modelshield
rbac``; models are local ``file://`` directories signed with the real model_signing
library. The ``modelshield-model-keys`` ConfigMap must follow the ModelArtifacts: a file
per verified artifact and signer holding the signer's public key, the new key after a
rotation, entries gone with their artifacts, the ConfigMap gone with the last one; and
the init container's own command, run against those files, must verify the model.
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from e2e import modelkeys, operators
from e2e.clients import Cluster
from e2e.operators import OperatorProcess, wait_for
from modelshield.controllers import modelkeypublishing as modelkeys_handlers
from modelshield.controllers.builders import ownership
from modelshield.modelartifacts import signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys

GROUP, VERSION = "modelshield.dev", "v1alpha1"
WAIT_SECONDS = 120.0


def _custom(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def _secret(cluster: Cluster, namespace: str, public_pem: bytes) -> None:
    core = client.CoreV1Api(cluster.api_client)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="signer-keys"),
        data={"release.pub": base64.b64encode(public_pem).decode()},
    )
    try:
        core.replace_namespaced_secret("signer-keys", namespace, body)
    except client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)


def _policy(cluster: Cluster, namespace: str, signer: dict[str, Any]) -> None:
    _custom(cluster).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelsecuritypolicies",
        operators.policy(
            "models",
            {
                "selector": {"matchLabels": {"app": "fraud"}},
                "models": {"signers": [signer], "verifyAtStartup": True},
            },
        ),
    )


def _artifact(cluster: Cluster, namespace: str, name: str, model: pathlib.Path) -> None:
    _custom(cluster).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelartifacts",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelArtifact",
            "metadata": {"name": name},
            "spec": {"uri": f"file://{model}"},
        },
    )


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body = _custom(cluster).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelartifacts", name
    )
    assert isinstance(body, dict)
    status: dict[str, Any] = body.get("status") or {}
    return status


def _ready(cluster: Cluster, namespace: str, name: str, generation: int = 1) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = _status(cluster, namespace, name)
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        good = ready is not None and ready["reason"] == "Ready"
        return status if good and status.get("observedGeneration") == generation else None

    return wait_for(f"ModelArtifact {name} Ready (generation {generation})", probe, WAIT_SECONDS)


def _wait_data(
    cluster: Cluster, namespace: str, expected: dict[str, str] | None, operator: OperatorProcess
) -> None:
    wait_for(
        f"{modelkeys.NAME} in {namespace} holding {sorted(expected or {})} "
        f"(now {modelkeys.data(cluster, namespace)}); operator log:\n{operator.tail()}",
        lambda: modelkeys.data(cluster, namespace) == expected,
        WAIT_SECONDS,
    )


def _delete_artifact(cluster: Cluster, namespace: str, name: str) -> None:
    _custom(cluster).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelartifacts", name
    )


def test_config_map_follows_verified_artifacts_key_rotation_and_deletion(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Secret's content changes without an event the operator watches: the resync reads it.
    monkeypatch.setenv(modelkeys_handlers.RESYNC_ENV, "2")
    old = keys.key_pair(tmp_path / "old", "release")
    new = keys.key_pair(tmp_path / "new", "release")
    first = models.benign_model(tmp_path / "first")
    second = models.benign_model(tmp_path / "second")
    digest = signing.sign_with_key(first, old.private_path).digest
    signing.sign_with_key(second, old.private_path)
    _secret(cluster, namespace, old.public_pem)
    _policy(
        cluster,
        namespace,
        {"name": "release", "secretRef": {"name": "signer-keys", "key": "release.pub"}},
    )
    _artifact(cluster, namespace, "fraud-v1", first)
    _artifact(cluster, namespace, "fraud-v2", second)
    operator = start_operator(f"--file-root={tmp_path}")

    _ready(cluster, namespace, "fraud-v1")
    _ready(cluster, namespace, "fraud-v2")
    _wait_data(
        cluster,
        namespace,
        {
            "fraud-v1.release.pub": old.public_pem.decode(),
            "fraud-v2.release.pub": old.public_pem.decode(),
        },
        operator,
    )
    published = modelkeys.config_map(cluster, namespace)
    assert published is not None
    metadata = published["metadata"]
    assert metadata["labels"][ownership.MANAGED_BY_LABEL] == ownership.MANAGED_BY
    assert {o["name"] for o in metadata["ownerReferences"]} == {"fraud-v1", "fraud-v2"}
    assert not any("PRIVATE" in value for value in published["data"].values())
    # A hand edit of the managed ConfigMap is undone.
    client.CoreV1Api(cluster.api_client).patch_namespaced_config_map(
        modelkeys.NAME, namespace, {"data": {"fraud-v1.release.pub": "edited by hand"}}
    )
    _wait_data(cluster, namespace, published["data"], operator)
    # The init container's command verifies the model with the published key...
    checked = modelkeys.run_startup_check(
        published["data"],
        tmp_path / "pod",
        model=first,
        digest=digest,
        artifact="fraud-v1",
        signer="release",
    )
    assert checked.returncode == 0, checked.stderr

    # Rotation: the model is signed again with the new key, and the Secret holds it.
    signing.sign_with_key(first, new.private_path)
    # ...and, before the rotation reaches the ConfigMap, the old key no longer verifies it.
    stale = modelkeys.run_startup_check(
        published["data"],
        tmp_path / "pod",
        model=first,
        digest=digest,
        artifact="fraud-v1",
        signer="release",
    )
    assert stale.returncode == 1, stale.stderr
    _secret(cluster, namespace, new.public_pem)
    _wait_data(
        cluster,
        namespace,
        {
            "fraud-v1.release.pub": new.public_pem.decode(),
            "fraud-v2.release.pub": new.public_pem.decode(),
        },
        operator,
    )
    rotated = modelkeys.data(cluster, namespace)
    assert rotated is not None
    checked = modelkeys.run_startup_check(
        rotated, tmp_path / "pod", model=first, digest=digest, artifact="fraud-v1", signer="release"
    )
    assert checked.returncode == 0, checked.stderr
    # The reconciler agrees on a re-check: the re-signed model verifies with the new key.
    _custom(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelartifacts", "fraud-v1", {"spec": {"recheckInterval": "1h"}}
    )
    assert _ready(cluster, namespace, "fraud-v1", generation=2)["signer"] == "release"

    _delete_artifact(cluster, namespace, "fraud-v2")
    _wait_data(cluster, namespace, {"fraud-v1.release.pub": new.public_pem.decode()}, operator)

    # The policy stops naming the signer: its key is no longer trusted at start.
    _custom(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelsecuritypolicies", "models", {"spec": {"models": None}}
    )
    _wait_data(cluster, namespace, {}, operator)

    _delete_artifact(cluster, namespace, "fraud-v1")
    _wait_data(cluster, namespace, None, operator)


def test_a_config_map_modelshield_does_not_manage_is_left_alone_and_reported(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(modelkeys_handlers.RESYNC_ENV, "2")
    core = client.CoreV1Api(cluster.api_client)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=modelkeys.NAME, labels={"team": "ml"}),
            data={"release.pub": "someone else's"},
        ),
    )
    before = modelkeys.config_map(cluster, namespace)
    assert before is not None
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    _policy(cluster, namespace, {"name": "release", "publicKey": pair.public_pem.decode()})
    _artifact(cluster, namespace, "fraud-v1", model)
    operator = start_operator(f"--file-root={tmp_path}")

    _ready(cluster, namespace, "fraud-v1")

    def reported() -> bool:
        found = core.list_namespaced_event(namespace, field_selector="involvedObject.name=fraud-v1")
        return any(event.reason == "ModelKeysConfigMapNotManaged" for event in found.items)

    wait_for(f"the conflict reported; operator log:\n{operator.tail()}", reported, WAIT_SECONDS)
    after = modelkeys.config_map(cluster, namespace)
    assert after is not None
    assert after["data"] == {"release.pub": "someone else's"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
