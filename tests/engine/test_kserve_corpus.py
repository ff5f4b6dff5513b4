"""The InferenceService bypass corpus through the engine: each trick denied at its path."""

from __future__ import annotations

from typing import Any

import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling, decisions, evaluating, facts
from modelshield.engine.decisions import Code
from tests.support import kservecorpus as corpus
from tests.support import workloadbuilders as b
from tests.support.kservecorpusjudging import _facts, _policy


def evaluate(body: dict[str, Any], *policy_list: compiling.AnyPolicy) -> decisions.Decision:
    """The engine's decision under the corpus's facts."""
    policy_set = compiling.compile_policies(policy_list)
    return evaluating.evaluate(body, policy_set, {}, _facts(), b.NOW)


CASES = corpus.INFERENCE_SERVICES + corpus.PODS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_trick_is_denied_at_its_path(case: corpus.Case) -> None:
    decision = evaluate(case.object(), _policy(case.requirement))
    assert not decision.allowed
    assert (case.code, case.path) in {(v.code, v.path) for v in decision.violations}, (
        decision.message()
    )


@pytest.mark.parametrize("index", range(len(corpus.COMPLIANT)))
def test_what_kserve_makes_of_a_compliant_service_is_admitted(index: int) -> None:
    body = corpus.COMPLIANT[index]
    decision = evaluate(body, _policy(corpus.MODELS))
    assert decision.allowed, decision.message()
    assert decision.governed_by


def test_an_annotation_does_not_stand_in_for_the_source_it_does_not_match() -> None:
    """The decoy annotation names a verified model; the served source is still judged."""
    body = corpus.isvc(corpus.sklearn(storageUri=corpus.EVIL_URI))
    decision = evaluate(body, _policy(corpus.MODELS))
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.MODEL_ARTIFACT_NOT_FOUND, "spec.predictor.model.storageUri")
    ]


def test_storage_parameters_resolve_to_the_uri_kserve_builds() -> None:
    """type and bucket in storage.parameters: s3://<bucket>/<path> (leading '/' dropped)
    matches the verified artifact; the storage Secret's entry (its endpoint_url) is what
    still cannot be told, and it is the only violation."""
    body = corpus.isvc(
        corpus.sklearn(
            storage={"key": "k", "path": "/v1/", "parameters": {"type": "s3", "bucket": "models"}}
        )
    )
    decision = evaluate(body, _policy(corpus.MODELS))
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.MODEL_SOURCE_UNVERIFIABLE, "spec.predictor.model.storage.key")
    ]
    assert "storage Secret" in decision.violations[0].message


def test_a_component_label_overriding_the_objects_is_what_selects() -> None:
    """The pods carry the predictor's value of a label, not the object's."""
    body = corpus.isvc(
        {**corpus.sklearn(storageUri=corpus.EVIL_URI), "labels": {"app": "model-server"}},
        labels={"app": "other"},
    )
    assert not evaluate(body, _policy(corpus.MODELS)).allowed


LLM: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "LLMInferenceService",
    "metadata": {"name": "llm", "namespace": corpus.NAMESPACE, "labels": dict(corpus.LABELS)},
    "spec": {
        "model": {"uri": corpus.VERIFIED_URI, "name": "llama"},
        "template": {"containers": [corpus.hardened()]},
    },
}


def _llm(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**LLM, "spec": {**LLM["spec"], **changes}}
    return body


@pytest.mark.parametrize(
    ("name", "body", "requirement", "code", "path"),
    [
        (
            "model-uri",
            _llm(model={"uri": corpus.EVIL_URI}),
            corpus.MODELS,
            Code.MODEL_ARTIFACT_NOT_FOUND,
            "spec.model.uri",
        ),
        (
            "lora-adapter",
            _llm(
                model={"uri": corpus.VERIFIED_URI, "lora": {"adapters": [{"uri": corpus.EVIL_URI}]}}
            ),
            corpus.MODELS,
            Code.MODEL_ARTIFACT_NOT_FOUND,
            "spec.model.lora.adapters[0].uri",
        ),
        (
            "template-image",
            _llm(template={"containers": [corpus.hardened(corpus.UNSIGNED_IMAGE)]}),
            corpus.IMAGES,
            Code.IMAGE_UNSIGNED,
            "spec.template.containers[0].image",
        ),
        (
            "worker-image",
            _llm(worker={"containers": [corpus.hardened(corpus.UNSIGNED_IMAGE)]}),
            corpus.IMAGES,
            Code.IMAGE_UNSIGNED,
            "spec.worker.containers[0].image",
        ),
        (
            "prefill-image-selected-by-its-labels",
            {
                **_llm(
                    prefill={
                        "labels": dict(corpus.LABELS),
                        "template": {"containers": [corpus.hardened(corpus.UNSIGNED_IMAGE)]},
                    }
                ),
                "metadata": {"name": "llm", "namespace": corpus.NAMESPACE},
            },
            corpus.IMAGES,
            Code.IMAGE_UNSIGNED,
            "spec.prefill.template.containers[0].image",
        ),
    ],
)
def test_llm_inference_service(
    name: str, body: dict[str, Any], requirement: str, code: Code, path: str
) -> None:
    assert evaluate(LLM, _policy(requirement)).allowed
    decision = evaluate(body, _policy(requirement))
    assert (code, path) in {(v.code, v.path) for v in decision.violations}, decision.message()


def _runtime(kind: str, image: str, namespace: str | None = corpus.NAMESPACE) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "sklearn-server", "labels": dict(corpus.LABELS)}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": [corpus.hardened(image)],
        },
    }


def test_a_serving_runtime_is_judged_on_its_images_and_names_no_model() -> None:
    policy = _policy(corpus.IMAGES, models={"signers": b.SIGNERS})
    assert evaluate(_runtime("ServingRuntime", corpus.SIGNED_IMAGE), policy).allowed
    decision = evaluate(_runtime("ServingRuntime", corpus.UNSIGNED_IMAGE), policy)
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.IMAGE_UNSIGNED, "spec.containers[0].image")
    ]


def test_a_cluster_serving_runtime_is_judged_by_cluster_policies_in_any_namespace() -> None:
    cluster = policies.ClusterModelSecurityPolicy.model_validate(
        {
            "metadata": {"name": "baseline"},
            "spec": {
                "enforcement": "Enforce",
                "namespaceSelector": {"matchLabels": {"tier": "prod"}},
                "selector": {"matchLabels": corpus.LABELS},
                "images": {"signers": b.SIGNERS},
            },
        }
    )
    runtime = _runtime("ClusterServingRuntime", corpus.UNSIGNED_IMAGE, namespace=None)
    decision = evaluate(runtime, cluster, _policy(corpus.IMAGES))
    assert [str(p) for p in decision.governed_by] == ["ClusterModelSecurityPolicy baseline"]
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.IMAGE_UNSIGNED, "spec.containers[0].image")
    ]


def test_a_serving_runtime_that_hardcodes_a_model_source_is_judged_on_it() -> None:
    runtime = _runtime("ServingRuntime", corpus.SIGNED_IMAGE)
    runtime["spec"]["containers"][0]["env"] = [{"name": "STORAGE_URI", "value": corpus.EVIL_URI}]
    decision = evaluate(runtime, _policy(corpus.MODELS))
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.MODEL_ARTIFACT_NOT_FOUND, "spec.containers[0].env[0].value")
    ]


def test_a_raw_deployment_template_is_judged_on_its_storage_initializer() -> None:
    """KServe's controller puts the init container into the template for storageUris."""
    pod = corpus.pod(init_args=[corpus.VERIFIED_URI, "/mnt/base", corpus.EVIL_URI, "/mnt/lora"])
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "iris-predictor", "namespace": corpus.NAMESPACE},
        "spec": {
            "selector": {"matchLabels": corpus.LABELS},
            "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
        },
    }
    decision = evaluate(deployment, _policy(corpus.MODELS))
    assert [(v.code, v.path) for v in decision.violations] == [
        (Code.MODEL_ARTIFACT_NOT_FOUND, "spec.template.spec.initContainers[0].args[2]")
    ]


@pytest.mark.parametrize(
    "uri",
    [
        "S3://models/v1/",  # KServe does not recognise the scheme
        "s3://models//v1/",  # the same keys to KServe, another string: never a match
        "s3://models/v1/#x",
    ],
)
def test_other_spellings_of_the_verified_uri_never_match_it(uri: str) -> None:
    decision = evaluate(corpus.isvc(corpus.sklearn(storageUri=uri)), _policy(corpus.MODELS))
    assert not decision.allowed
    assert "spec.predictor.model.storageUri" in {v.path for v in decision.violations}


def test_an_inline_image_is_pinned_where_it_is_written() -> None:
    """mutateToDigest patches predictor.model.image itself, a pointer that exists."""
    tagged = "registry.example.com/ml/fraud-server:v7"
    body = corpus.isvc(corpus.sklearn(storageUri=corpus.VERIFIED_URI, image=tagged))
    policy = _policy(corpus.IMAGES, images={"signers": b.SIGNERS, "mutateToDigest": True})
    source = facts.StaticFacts(images={tagged: b.verified_image(tagged)})
    policy_set = compiling.compile_policies([policy])
    decision = evaluating.evaluate(body, policy_set, {}, source, b.NOW)
    assert decision.allowed, decision.message()
    assert decision.patches == (
        {
            "op": "replace",
            "path": "/spec/predictor/model/image",
            "value": f"{tagged}@sha256:" + "a" * 64,
        },
    )
