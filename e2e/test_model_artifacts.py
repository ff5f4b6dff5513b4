"""The ModelArtifact reconciler against a real API server: the status and Events it writes.

kopf runs in a thread of the test process with only the artifact handlers registered
(``modelshield.controllers.artifacts.register``), logged in with the cluster's kubeconfig
and configured with modelshield's kopf settings. Models are local ``file://`` directories
signed with the real model_signing library.
"""

from __future__ import annotations

import io
import pathlib
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from e2e import operators
from e2e.clients import Cluster
from modelshield.controllers import artifacts as artifact_handlers
from modelshield.engine import keyids
from modelshield.modelartifacts import signing
from tests.support import artifactservers as servers
from tests.support import modelfiles as models
from tests.support import picklecode as op
from tests.support import signingkeys as keys

GROUP, VERSION = "modelshield.dev", "v1alpha1"
WAIT_SECONDS = 90.0


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    modelshield_crds: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[artifact_handlers.Reconciler]:
    # file:// models live under pytest's temporary directories, and only there.
    with operators.artifact_reconciler_in_thread(
        cluster.api_client,
        file_root=tmp_path_factory.getbasetemp(),
        work_dir=tmp_path_factory.mktemp("artifact-work"),
    ) as reconciler:
        yield reconciler


def _api(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api_client)


def _policy(cluster: Cluster, namespace: str, public_pem: bytes) -> None:
    _api(cluster).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelsecuritypolicies",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": "models"},
            "spec": {
                "selector": {"matchLabels": {"app": "fraud"}},
                "models": {"signers": [{"name": "release", "publicKey": public_pem.decode()}]},
            },
        },
    )


def _artifact(cluster: Cluster, namespace: str, name: str, uri: str, **spec: Any) -> None:
    _api(cluster).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelartifacts",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelArtifact",
            "metadata": {"name": name},
            "spec": {"uri": uri, **spec},
        },
    )


def _ready(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def _wait_status(
    cluster: Cluster, namespace: str, name: str, reason: str, generation: int = 1
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = _api(cluster).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelartifacts", name
        )
        assert isinstance(body, dict)
        status = body.get("status") or {}
        ready = _ready(status)
        if (
            ready is not None
            and ready["reason"] == reason
            and status.get("observedGeneration") == generation
        ):
            return status
        time.sleep(0.5)
    raise AssertionError(f"{name} never reached Ready reason {reason}: {status}")


def _events(cluster: Cluster, namespace: str, name: str) -> list[str]:
    found = client.CoreV1Api(cluster.api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [str(event.reason) for event in found.items]


@pytest.mark.usefixtures("operator")
def test_signed_model_becomes_ready_then_tampering_is_caught(
    cluster: Cluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signed = signing.sign_with_key(model, pair.private_path)
    _policy(cluster, namespace, pair.public_pem)
    _artifact(cluster, namespace, "fraud-v1", f"file://{model}")

    status = _wait_status(cluster, namespace, "fraud-v1", "Ready")

    assert status["verifiedDigest"] == signed.digest
    assert status["signer"] == "release"
    # The key that verified, through the CRD (a field missing from the schema is pruned).
    assert status["signerKey"] == keyids.fingerprint(pair.public_pem)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Verified": "True",
        "Scanned": "True",
        "Ready": "True",
    }
    assert status["lastChecked"]

    (model / "vocab.txt").write_text("swapped after signing\n")
    _api(cluster).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelartifacts", "fraud-v1", {"spec": {"recheckInterval": "1h"}}
    )

    status = _wait_status(cluster, namespace, "fraud-v1", "NotVerified", generation=2)

    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert verified["reason"] == "ContentMismatch"
    assert "vocab.txt" in verified["message"]
    assert "verifiedDigest" not in status or status["verifiedDigest"] is None
    deadline = time.monotonic() + 20
    while "ContentMismatch" not in _events(cluster, namespace, "fraud-v1"):
        assert time.monotonic() < deadline, _events(cluster, namespace, "fraud-v1")
        time.sleep(0.5)
    assert "SignatureVerified" in _events(cluster, namespace, "fraud-v1")


@pytest.mark.usefixtures("operator")
def test_malicious_model_is_not_ready_with_findings(
    cluster: Cluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    (model / "payload.pkl").write_bytes(op.call("os", "system", "true"))
    signing.sign_with_key(model, pair.private_path)
    _policy(cluster, namespace, pair.public_pem)
    _artifact(cluster, namespace, "evil", f"file://{model}")

    status = _wait_status(cluster, namespace, "evil", "BlockingFindings")

    assert status["findings"][0] == {
        "severity": "Critical",
        "file": "payload.pkl",
        "location": "offset 2: GLOBAL os.system",
        "reason": "imports os.system from a module that can run code",
    }
    assert next(c for c in status["conditions"] if c["type"] == "Verified")["status"] == "True"


@pytest.mark.usefixtures("operator")
def test_unreachable_source_is_a_fetch_failure(cluster: Cluster, namespace: str) -> None:
    _artifact(cluster, namespace, "gone", "http://127.0.0.1:9/model.joblib")

    status = _wait_status(cluster, namespace, "gone", "NotVerified")

    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert verified["reason"] == "FetchFailed"


@pytest.mark.usefixtures("operator")
def test_signer_key_from_a_secret(cluster: Cluster, namespace: str, tmp_path: pathlib.Path) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    client.CoreV1Api(cluster.api_client).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="model-keys"),
            string_data={"release.pub": pair.public_pem.decode()},
        ),
    )
    _api(cluster).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelsecuritypolicies",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": "models"},
            "spec": {
                "selector": {"matchLabels": {"app": "fraud"}},
                "models": {
                    "signers": [
                        {
                            "name": "from-secret",
                            "secretRef": {"name": "model-keys", "key": "release.pub"},
                        }
                    ]
                },
            },
        },
    )
    _artifact(cluster, namespace, "fraud-v2", f"file://{model}")

    status = _wait_status(cluster, namespace, "fraud-v2", "Ready")

    assert status["signer"] == "from-secret"
    assert status["signerKey"] == keyids.fingerprint(pair.public_pem)


@pytest.mark.usefixtures("operator")
def test_a_new_policy_signer_triggers_a_recheck(
    cluster: Cluster, namespace: str, tmp_path: pathlib.Path
) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    _artifact(cluster, namespace, "before-policy", f"file://{model}")
    first = _wait_status(cluster, namespace, "before-policy", "ReadyWithoutSignature")
    assert next(c for c in first["conditions"] if c["type"] == "Verified")["reason"] == "NoSigners"

    _policy(cluster, namespace, pair.public_pem)

    status = _wait_status(cluster, namespace, "before-policy", "Ready")
    assert status["signer"] == "release"


def _tar_of(model: pathlib.Path, target: pathlib.Path, extra: dict[str, bytes]) -> None:
    with tarfile.open(target, "w") as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(model).as_posix())
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_a_model_swapped_with_an_archive_that_breaks_the_fetch_is_not_kept_ready(
    cluster: Cluster,
    namespace: str,
    tmp_path: pathlib.Path,
    operator: artifact_handlers.Reconciler,
) -> None:
    # Issue 21: the swapped archive has both `x` and `x/y`; unpacking it raised an OSError
    # that the handler did not catch, kopf retried every minute and the status (Ready, the
    # old digest, the old lastChecked) stayed for good. The timer re-check (no spec
    # change) must now turn the artifact NotVerified, with an Event and a metric.
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    served = tmp_path / "served"
    served.mkdir()
    _tar_of(model, served / "model.tar", {})
    _policy(cluster, namespace, pair.public_pem)

    with servers.file_server(served) as (base, _):
        _artifact(cluster, namespace, "swapped", f"{base}/model.tar", recheckInterval="1s")
        ready = _wait_status(cluster, namespace, "swapped", "Ready")
        assert ready["verifiedDigest"]

        (model / "vocab.txt").write_text("swapped after signing\n")
        _tar_of(model, served / "swapped.tar", {"x": b"a file", "x/y": b"below a file"})
        (served / "swapped.tar").replace(served / "model.tar")

        status = _wait_status(cluster, namespace, "swapped", "NotVerified")

    by_type = {c["type"]: c for c in status["conditions"]}
    assert (by_type["Verified"]["status"], by_type["Verified"]["reason"]) == (
        "False",
        "FetchFailed",
    )
    assert by_type["Ready"]["status"] == "False"
    assert status.get("verifiedDigest") is None
    assert status["lastChecked"] > ready["lastChecked"]
    deadline = time.monotonic() + 20
    while "FetchFailed" not in _events(cluster, namespace, "swapped"):
        assert time.monotonic() < deadline, _events(cluster, namespace, "swapped")
        time.sleep(0.5)
    # Every failed re-check says so, not only the one where Ready turned False.
    core = client.CoreV1Api(cluster.api_client)
    deadline = time.monotonic() + 30
    while not any(
        str(event.message).startswith("check failed again")
        for event in core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=swapped"
        ).items
    ):
        assert time.monotonic() < deadline, _events(cluster, namespace, "swapped")
        time.sleep(0.5)
    failures = operator.metrics.registry.get_sample_value(
        "modelshield_model_artifact_check_failures_total",
        {"namespace": namespace, "reason": "FetchFailed"},
    )
    assert failures is not None
    assert failures >= 2


def test_a_uri_with_credentials_is_not_echoed_in_status_or_events(
    cluster: Cluster, namespace: str, operator: artifact_handlers.Reconciler
) -> None:
    secret = "s3cr3t-t0ken"
    _artifact(
        cluster,
        namespace,
        "with-credentials",
        f"http://user:{secret}@127.0.0.1:9/model.joblib?X-Amz-Signature={secret}",
    )

    status = _wait_status(cluster, namespace, "with-credentials", "NotVerified")

    assert secret not in str(status)
    found = client.CoreV1Api(cluster.api_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=with-credentials"
    )
    assert found.items
    assert all(secret not in str(event.message) for event in found.items)
