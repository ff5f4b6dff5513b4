"""The InferenceService bypass corpus through the admission server over HTTPS.

Each trick of tests/kservecorpus.py is denied at the InferenceService and at the Pod
KServe makes of it, with its path in the message; UPDATEs that change only what KServe
reads (an inline image, the runtime, a workerSpec) are judged, not waved through.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelshield_webhooks import contexts
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support import kservecorpus as corpus
from tests.support.httpsclient import HttpsClient
from tests.support.kserveadmission import SERVICES, _artifacts, _policy

pytestmark = pytest.mark.integration

PODS = scenarios.KindInfo("Pod", "", "v1", "pods")


@pytest.fixture
def context(verifier: verdicts.FixedVerdictVerifierForTests) -> contexts.AdmissionContext:
    """One Enforce policy over the corpus's labels, and the corpus's verified artifacts."""
    return contexts.AdmissionContext(
        state=scenarios.synced_state([_policy()], _artifacts(), namespaces=(corpus.NAMESPACE,)),
        verifier=verifier,
        verify_deadline_seconds=1.0,
        clock=lambda: scenarios.NOW,
    )


def _info(body: dict[str, Any]) -> scenarios.KindInfo:
    return SERVICES if body["kind"] == "InferenceService" else PODS


CASES = corpus.INFERENCE_SERVICES + corpus.PODS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_trick_is_denied_with_its_path(client: HttpsClient, case: corpus.Case) -> None:
    body = case.object()
    denied = await client.review("/validate", scenarios.review(_info(body), "CREATE", body))
    assert denied["allowed"] is False
    assert f"] {case.path}: " in denied["status"]["message"], denied["status"]["message"]


async def test_a_compliant_service_is_admitted(client: HttpsClient) -> None:
    body = corpus.COMPLIANT[0]
    admitted = await client.review("/validate", scenarios.review(SERVICES, "CREATE", body))
    assert admitted["allowed"] is True, admitted


def _with_unsigned_sidecar() -> dict[str, Any]:
    """Admitted before the policy existed: its transformer runs an unsigned image."""
    return corpus.isvc(
        corpus.sklearn(storageUri=corpus.VERIFIED_URI),
        transformer={"containers": [corpus.hardened(corpus.UNSIGNED_IMAGE, "transformer")]},
    )


def _set_image(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["model"]["image"] = corpus.UNSIGNED_IMAGE


def _set_runtime(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["model"]["runtime"] = "evil-runtime"


def _add_worker(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["workerSpec"] = {"containers": [corpus.hardened(corpus.SIGNED_IMAGE)]}


def _set_runtime_version(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["model"]["runtimeVersion"] = "evil"


@pytest.mark.parametrize(
    "change",
    [_set_image, _set_runtime, _add_worker, _set_runtime_version],
    ids=lambda f: f.__name__,
)
async def test_an_update_of_what_kserve_reads_is_judged(client: HttpsClient, change: Any) -> None:
    old = _with_unsigned_sidecar()
    new = copy.deepcopy(old)
    change(new)
    denied = await client.review("/validate", scenarios.review(SERVICES, "UPDATE", new, old))
    assert denied["allowed"] is False
    assert "] spec.transformer.containers[0].image: " in denied["status"]["message"]


async def test_an_update_of_nothing_kserve_reads_is_still_waved_through(
    client: HttpsClient,
) -> None:
    old = _with_unsigned_sidecar()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    admitted = await client.review("/validate", scenarios.review(SERVICES, "UPDATE", new, old))
    assert admitted["allowed"] is True


def _point_storage_elsewhere(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["model"]["storage"] = {
        "parameters": {"type": "s3", "endpoint_url": corpus.EVIL_ENDPOINT}
    }


def _use_a_storage_key(body: dict[str, Any]) -> None:
    body["spec"]["predictor"]["model"]["storage"] = {"key": "other-minio"}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_point_storage_elsewhere, "spec.predictor.model.storage.parameters.endpoint_url"),
        (_use_a_storage_key, "spec.predictor.model.storage.key"),
    ],
    ids=["endpoint_url", "storage-key"],
)
async def test_an_update_that_picks_another_storage_server_is_refused(
    client: HttpsClient, change: Any, path: str
) -> None:
    """The model's URI stays the verified one; only the server it is read from changes."""
    old = copy.deepcopy(corpus.COMPLIANT[0])
    new = copy.deepcopy(old)
    change(new)
    denied = await client.review("/validate", scenarios.review(SERVICES, "UPDATE", new, old))
    assert denied["allowed"] is False
    assert f"] {path}: " in denied["status"]["message"], denied["status"]["message"]
