"""The admission server judges an InferenceService with its named ServingRuntime (issue 19).

The webhook keeps KServe's runtimes by list+watch; an InferenceService naming one
(``predictor.model.runtime``) is judged on the runtime's images at a path naming it.
A runtime not known is no verdict (KServe makes no pod before it exists), nor is a
runtime KServe would auto-select by model format. KServe's CRDs are optional: a 404 on
their list neither blocks readiness nor logs a warning.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from modelshield_webhooks import caches, connections, contexts, servingruntimes, watching
from tests.support import admissionscenarios as scenarios
from tests.support import apiservers
from tests.support import imageverdicts as verdicts
from tests.support import kservecorpus as corpus
from tests.support.httpsclient import HttpsClient
from tests.support.kserveadmission import SERVICES, _artifacts, _policy
from tests.support.watchingapiserver import (
    PATIENCE_SECONDS,
    Sleeps,
    _running,
    _stop,
    _until,
    apiserver,
    connection,
    session,
)

__all__ = ["apiserver", "connection", "session"]

pytestmark = pytest.mark.integration

RUNTIME = "fraud-runtime"


def _runtime(image: str, *, namespace: str = corpus.NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime" if namespace else "ClusterServingRuntime",
        "metadata": {"name": RUNTIME, **({"namespace": namespace} if namespace else {})},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": [corpus.hardened(image, "kserve-container")],
        },
    }


def _service(**model: Any) -> dict[str, Any]:
    return corpus.isvc(corpus.sklearn(storageUri=corpus.VERIFIED_URI, **model))


@pytest.fixture
def context(verifier: verdicts.FixedVerdictVerifierForTests) -> contexts.AdmissionContext:
    """The corpus's policy and artifacts; no runtime known yet."""
    return contexts.AdmissionContext(
        state=scenarios.synced_state([_policy()], _artifacts(), namespaces=(corpus.NAMESPACE,)),
        verifier=verifier,
        verify_deadline_seconds=1.0,
        clock=lambda: scenarios.NOW,
    )


async def _review(client: HttpsClient, body: dict[str, Any]) -> dict[str, Any]:
    return await client.review("/validate", scenarios.review(SERVICES, "CREATE", body))


async def test_the_named_runtimes_image_is_judged_at_the_service(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    state = context.state
    assert state.synced  # readiness never waits for KServe's kinds
    named = _service(runtime=RUNTIME)
    assert (await _review(client, named))["allowed"] is True  # not known: no verdict

    state.apply(servingruntimes.RUNTIMES, "ADDED", _runtime(corpus.UNSIGNED_IMAGE))
    denied = await _review(client, named)
    assert denied["allowed"] is False
    path = f"spec.predictor.model.runtime[ServingRuntime {RUNTIME}].spec.containers[0].image"
    assert f"] {path}: " in denied["status"]["message"], denied["status"]["message"]

    # Auto-selection is KServe's (ordering by protocol, age, name, priority): not here.
    assert (await _review(client, _service()))["allowed"] is True
    # The predictor's own image replaces the runtime's serving image.
    assert (await _review(client, _service(runtime=RUNTIME, image=corpus.SIGNED_IMAGE)))[
        "allowed"
    ] is True

    state.apply(servingruntimes.RUNTIMES, "DELETED", _runtime(corpus.UNSIGNED_IMAGE))
    assert (await _review(client, named))["allowed"] is True


async def test_the_namespaces_runtime_wins_over_the_clusters(
    client: HttpsClient, context: contexts.AdmissionContext
) -> None:
    """GetServingRuntime: the namespace's runtime first, then the cluster's."""
    state = context.state
    state.replace(servingruntimes.CLUSTER_RUNTIMES, [_runtime(corpus.UNSIGNED_IMAGE, namespace="")])
    denied = await _review(client, _service(runtime=RUNTIME))
    assert f"runtime[ClusterServingRuntime {RUNTIME}]" in denied["status"]["message"]
    state.replace(servingruntimes.RUNTIMES, [_runtime(corpus.SIGNED_IMAGE)])
    assert (await _review(client, _service(runtime=RUNTIME)))["allowed"] is True
    # Another namespace's runtime of that name is not this one's.
    state.replace(servingruntimes.RUNTIMES, [_runtime(corpus.SIGNED_IMAGE, namespace="other")])
    assert (await _review(client, _service(runtime=RUNTIME)))["allowed"] is False


async def test_absent_kserve_crds_are_looked_for_quietly(
    apiserver: apiservers.FakeApiServerForTests,
    session: aiohttp.ClientSession,
    connection: connections.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apiserver.failing_lists = [404, 404]
    sleeps = Sleeps(limit=2)
    state = caches.ClusterState()
    freshness = watching.Freshness()
    caplog.set_level(logging.DEBUG, logger=watching.__name__)
    task = _running(
        watching.informer(
            session,
            connection,
            servingruntimes.RUNTIMES,
            state,
            backoff=watching.Backoff(0.1, 0.4),
            freshness=freshness,
            sleep=sleeps,
        )
    )
    try:
        await asyncio.wait_for(sleeps.full.wait(), PATIENCE_SECONDS)
        # Not served is an answer: the (empty) cache is current, no warning is logged.
        assert servingruntimes.RUNTIMES in freshness.snapshot()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        apiserver.add(servingruntimes.PATHS[servingruntimes.RUNTIMES], _runtime("r/x:1"))
        sleeps.allow(1)
        await _until(
            "the runtime to be cached",
            lambda: state.runtimes.lookup(corpus.NAMESPACE, RUNTIME) is not None,
        )
    finally:
        await _stop(task)
    assert state.unsynced() == [k for k in caches.KINDS]
