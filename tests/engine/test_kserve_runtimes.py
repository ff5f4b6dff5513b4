"""An InferenceService judged with the containers of the ServingRuntime it names (issue 19).

Before, an InferenceService naming a runtime (``predictor.model.runtime``) was judged
without the runtime's containers: one that picked a runtime running an unsigned image
was admitted, and only the pods KServe made were refused. Now the runtime's images are
judged at the InferenceService, at a path naming the runtime, as KServe v0.17.0 merges
them (``engine.kserveruntimes``); ``runtimeVersion``'s retagging too.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.engine import compiling, decisions, evaluating, kserveruntimes, workloads
from modelshield.engine.decisions import Code
from tests.support import kservecorpus as corpus
from tests.support import workloadbuilders as b
from tests.support.kservecorpusjudging import _facts, _policy

RUNTIME = "fraud-runtime"
RUNTIME_PATH = f"spec.predictor.model.runtime[ServingRuntime {RUNTIME}]"


def runtime(*containers: dict[str, Any]) -> dict[str, Any]:
    """A ServingRuntime as the cache keeps it (its spec)."""
    return {
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": list(containers),
        }
    }


def _named(**model: Any) -> dict[str, Any]:
    return corpus.isvc(corpus.sklearn(storageUri=corpus.VERIFIED_URI, runtime=RUNTIME, **model))


def _decide(workload: workloads.Workload, requirement: str = corpus.IMAGES) -> decisions.Decision:
    policy_set = compiling.compile_policies([_policy(requirement)])
    governing = evaluating.governing_policies(workload, policy_set, {})
    return evaluating.decide(workload, governing, _facts(), b.NOW)


def _found(decision: decisions.Decision) -> set[tuple[str, str]]:
    return {(v.code, v.path) for v in decision.violations}


def test_the_named_runtimes_unsigned_image_is_refused_at_the_runtimes_path() -> None:
    parsed = workloads.parse(_named())
    assert _decide(parsed).allowed  # without the runtime: nothing it runs is seen
    served = runtime(corpus.hardened(corpus.UNSIGNED_IMAGE, "kserve-container"))
    decision = _decide(workloads.with_runtime(parsed, "ServingRuntime", served))
    assert _found(decision) == {
        (Code.IMAGE_UNSIGNED, f"{RUNTIME_PATH}.spec.containers[0].image")
    }, decision.message()


def test_a_cluster_serving_runtime_is_named_as_such() -> None:
    served = runtime(corpus.hardened(corpus.UNSIGNED_IMAGE, "kserve-container"))
    decision = _decide(
        workloads.with_runtime(workloads.parse(_named()), "ClusterServingRuntime", served)
    )
    path = f"spec.predictor.model.runtime[ClusterServingRuntime {RUNTIME}].spec.containers[0]"
    assert (Code.IMAGE_UNSIGNED, f"{path}.image") in _found(decision)


def test_a_signed_runtime_is_admitted() -> None:
    served = runtime(corpus.hardened(corpus.SIGNED_IMAGE, "kserve-container"))
    decision = _decide(workloads.with_runtime(workloads.parse(_named()), "ServingRuntime", served))
    assert decision.allowed, decision.message()


def test_every_other_runtime_container_joins_the_pod() -> None:
    served = runtime(
        corpus.hardened(corpus.SIGNED_IMAGE, "kserve-container"),
        corpus.hardened(corpus.UNSIGNED_IMAGE, "agent"),
    )
    decision = _decide(workloads.with_runtime(workloads.parse(_named()), "ServingRuntime", served))
    assert _found(decision) == {(Code.IMAGE_UNSIGNED, f"{RUNTIME_PATH}.spec.containers[1].image")}


def test_the_predictors_image_replaces_the_runtimes_serving_image() -> None:
    """KServe merges predictor.model into kserve-container: its image wins, so the
    runtime's is not run and not judged; the predictor's is, where it is written."""
    served = runtime(corpus.hardened(corpus.UNSIGNED_IMAGE, "kserve-container"))
    parsed = workloads.parse(_named(image=corpus.SIGNED_IMAGE))
    assert _decide(workloads.with_runtime(parsed, "ServingRuntime", served)).allowed
    unsigned = workloads.parse(_named(image=corpus.UNSIGNED_IMAGE))
    decision = _decide(workloads.with_runtime(unsigned, "ServingRuntime", runtime()))
    assert _found(decision) == {(Code.IMAGE_UNSIGNED, "spec.predictor.model.image")}


def test_the_predictors_transformer_container_replaces_the_runtimes() -> None:
    served = runtime(
        corpus.hardened(corpus.SIGNED_IMAGE, "kserve-container"),
        corpus.hardened(corpus.UNSIGNED_IMAGE, "transformer-container"),
    )
    body = _named()
    body["spec"]["predictor"]["containers"] = [
        corpus.hardened(corpus.SIGNED_IMAGE, "transformer-container")
    ]
    decision = _decide(workloads.with_runtime(workloads.parse(body), "ServingRuntime", served))
    assert decision.allowed, decision.message()


def test_runtime_version_retags_the_runtimes_serving_image() -> None:
    """UpdateImageTag: runtimeVersion replaces the tag, so a signed tag is not what runs."""
    tagged = "registry.example.com/ml/fraud-server:v1"
    served = runtime(corpus.hardened(tagged, "kserve-container"))
    parsed = workloads.parse(_named(runtimeVersion="evil"))
    (container,) = workloads.with_runtime(parsed, "ServingRuntime", served).containers[-1:]
    assert container.image == "registry.example.com/ml/fraud-server:evil"
    assert container.path == f"{RUNTIME_PATH}.spec.containers[0]"


def test_runtime_version_retags_the_predictors_own_image_too() -> None:
    parsed = workloads.parse(_named(image=corpus.UNSIGNED_IMAGE.replace(":latest", ":v1")))
    retagged = [c for c in parsed.containers if c.path == "spec.predictor.model.runtimeVersion"]
    assert retagged == []  # no runtimeVersion: the image runs as written
    parsed = workloads.parse(
        _named(image="registry.example.com/ml/evil:v1", runtimeVersion="latest")
    )
    decision = _decide(parsed)
    assert (Code.IMAGE_UNSIGNED, "spec.predictor.model.runtimeVersion.image") in _found(decision)


@pytest.mark.parametrize(
    ("image", "version", "runs"),
    [
        ("r.example.com/m:v1", "v2", "r.example.com/m:v2"),
        ("r.example.com/m", "v2", "r.example.com/m:v2"),
        ("r.example.com:5000/m", "v2", "r.example.com:5000/m:v2"),
        ("r.example.com/m@sha256:" + "a" * 64, "v2", "r.example.com/m@sha256:" + "a" * 64),
    ],
)
def test_retagging_follows_update_image_tag(image: str, version: str, runs: str) -> None:
    assert kserveruntimes.retagged(image, version) == runs


def test_borrowed_containers_are_judged_on_images_only_and_never_patched() -> None:
    """The runtime's other fields merge with the predictor's: they are judged on the
    runtime and on the pods, not here (a false refusal otherwise)."""
    bare = {"name": "kserve-container", "image": corpus.SIGNED_IMAGE}
    parsed = workloads.with_runtime(workloads.parse(_named()), "ServingRuntime", runtime(bare))
    policy = _policy(
        corpus.IMAGES, images={"signers": b.SIGNERS, "mutateToDigest": True}, runtime={}
    )
    policy_set = compiling.compile_policies([policy])
    decision = evaluating.decide(
        parsed, evaluating.governing_policies(parsed, policy_set, {}), _facts(), b.NOW
    )
    assert not any(v.path.startswith(RUNTIME_PATH) for v in decision.violations)
    assert not any("runtime[" in p["path"] for p in decision.patches)


def test_an_auto_selected_runtime_is_not_chosen_here() -> None:
    parsed = workloads.parse(corpus.isvc(corpus.sklearn(storageUri=corpus.VERIFIED_URI)))
    assert parsed.runtime is not None
    assert parsed.runtime.name is None
    served = runtime(corpus.hardened(corpus.UNSIGNED_IMAGE, "kserve-container"))
    assert workloads.with_runtime(parsed, "ServingRuntime", served) == parsed
