"""`modelshield test` reads KServe objects as admission does (the same engine): a GitOps
review of the KServe bypass corpus fails with each trick's path (issue 19)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from modelshield.cli import main
from tests.support import kservecorpus as corpus
from tests.support import workloadbuilders as b

PUBLIC_KEY = b.RELEASE_KEY
WHEN = "2026-11-26T10:00:00Z"


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "models", "namespace": corpus.NAMESPACE},
        "spec": {
            "enforcement": "Enforce",
            "selector": {"matchLabels": dict(corpus.LABELS)},
            "models": {"signers": [{"name": "model-release", "publicKey": PUBLIC_KEY}]},
        },
    }


def _artifact(name: str, uri: str) -> dict[str, Any]:
    condition = {"status": "True", "reason": "Verified", "lastTransitionTime": WHEN}
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": name, "namespace": corpus.NAMESPACE},
        "spec": {"uri": uri},
        "status": {
            "conditions": [{"type": t, **condition} for t in ("Verified", "Scanned", "Ready")],
            "verifiedDigest": "sha256:" + "b" * 64,
            "signer": "model-release",
            "signerKey": b.RELEASE_KEY_ID,
            "lastChecked": WHEN,
        },
    }


def _named(case: corpus.Case) -> dict[str, Any]:
    body = case.object()
    body["metadata"]["name"] = case.name.lower().replace("_", "-")
    return body


MODEL_CASES = [c for c in corpus.INFERENCE_SERVICES + corpus.PODS if c.requirement == corpus.MODELS]


def test_a_gitops_review_of_the_corpus_fails_each_trick_at_its_path(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(_policy()))
    resources = tmp_path / "resources.yaml"
    artifacts = [_artifact(name, uri) for name, uri in corpus.ARTIFACTS.items()]
    workloads = [_named(case) for case in MODEL_CASES]
    resources.write_text(yaml.safe_dump_all(artifacts + workloads))
    code = main.main(
        ["test", str(policies), "--resources", str(resources), "--now", "2026-11-26T11:00:00Z"]
    )
    out = capsys.readouterr().out
    assert code == 1
    for case in MODEL_CASES:
        kind, name = case.body["kind"], _named(case)["metadata"]["name"]
        assert f"FAIL  {kind} {corpus.NAMESPACE}/{name}" in out, out
        assert (
            f"{case.code.value}: [ModelSecurityPolicy {corpus.NAMESPACE}/models] {case.path}:"
            in out
        )


def test_a_compliant_service_passes_the_review(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(_policy()))
    resources = tmp_path / "resources.yaml"
    artifact = _artifact(corpus.MODEL, corpus.VERIFIED_URI)
    resources.write_text(yaml.safe_dump_all([artifact, *corpus.COMPLIANT]))
    code = main.main(
        ["test", str(policies), "--resources", str(resources), "--now", "2026-11-26T11:00:00Z"]
    )
    assert code == 0, capsys.readouterr().out


def _runtime(kind: str, image: str, namespace: str | None = corpus.NAMESPACE) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "fraud-runtime"}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "supportedModelFormats": [{"name": "sklearn"}],
            "containers": [corpus.hardened(image, "kserve-container")],
        },
    }


def _images_policy() -> dict[str, Any]:
    policy = _policy()
    policy["spec"]["images"] = {"signers": [{"name": "release", "publicKey": PUBLIC_KEY}]}
    return policy


@pytest.mark.parametrize(
    ("runtime", "path"),
    [
        (
            _runtime("ServingRuntime", corpus.UNSIGNED_IMAGE),
            "spec.predictor.model.runtime[ServingRuntime fraud-runtime].spec.containers[0].image",
        ),
        (
            _runtime("ClusterServingRuntime", corpus.UNSIGNED_IMAGE, namespace=None),
            "spec.predictor.model.runtime[ClusterServingRuntime fraud-runtime]"
            ".spec.containers[0].image",
        ),
    ],
    ids=["namespaced", "cluster"],
)
def test_a_review_judges_the_named_runtime_given_among_the_resources(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    runtime: dict[str, Any],
    path: str,
) -> None:
    """As admission does (issue 19): the runtime's images, at a path naming it."""
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(_images_policy()))
    service = corpus.isvc(corpus.sklearn(storageUri=corpus.VERIFIED_URI, runtime="fraud-runtime"))
    resources = tmp_path / "resources.yaml"
    resources.write_text(yaml.safe_dump_all([runtime, service]))
    code = main.main(
        ["test", str(policies), "--resources", str(resources), "--now", "2026-11-26T11:00:00Z"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL  InferenceService {corpus.NAMESPACE}/iris" in out, out
    assert f"] {path}:" in out, out


def test_a_review_takes_the_s3_endpoint(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pod whose storage initializer downloads from the configured server passes."""
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(_policy()))
    endpoint = "http://minio.storage.svc.cluster.local:9000"
    pod = corpus.pod(
        init_args=[corpus.VERIFIED_URI, "/mnt/models"],
        init_env=[{"name": "AWS_ENDPOINT_URL", "value": endpoint}],
    )
    resources = tmp_path / "resources.yaml"
    artifacts = [_artifact(name, uri) for name, uri in corpus.ARTIFACTS.items()]
    resources.write_text(yaml.safe_dump_all([*artifacts, pod]))
    arguments = ["test", str(policies), "--resources", str(resources)]
    arguments += ["--now", "2026-11-26T11:00:00Z"]
    assert main.main(arguments) == 1
    assert "AWS_ENDPOINT_URL" in capsys.readouterr().out
    assert main.main([*arguments, f"--s3-endpoint={endpoint}"]) == 0, capsys.readouterr().out
    assert main.main([*arguments, "--s3-endpoint=http://minio:9000"]) == 2
    assert "--s3-endpoint host 'minio'" in capsys.readouterr().err
