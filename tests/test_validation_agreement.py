"""The resource webhook and ``modelshield test`` refuse the same policies with the same words.

Issue 17: a GitOps pull request checked with ``modelshield test`` must not pass there and
then fail at ``kubectl apply``. Every invalid fixture (each rule of
``api.v1alpha1.validation`` has one) goes through the real resource webhook handler, on
CREATE and on an UPDATE that changes the spec, and through the real ``modelshield test``
command: both refuse it, and the webhook's problem lines are exactly the ones the command
prints. Every valid fixture passes both.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pathlib
from typing import Any, cast

import pytest
import yaml

from modelshield.cli import main
from modelshield_webhooks import contexts, resources
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.support.paths import FIXTURES, REPOSITORY

INVALID = sorted((FIXTURES / "policies" / "invalid").glob("*.yaml"))
VALID = sorted((FIXTURES / "policies" / "valid").glob("*.yaml"))
WORKLOADS = REPOSITORY / "examples" / "workloads"
PLURALS = {
    "ModelSecurityPolicy": "modelsecuritypolicies",
    "ClusterModelSecurityPolicy": "clustermodelsecuritypolicies",
    "ModelArtifact": "modelartifacts",
}


def _documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _webhook(document: dict[str, Any], operation: str) -> dict[str, Any]:
    """The resource webhook's answer to a CREATE, or to an UPDATE from a spec it accepted."""
    kind = str(document["kind"])
    info = scenarios.KindInfo(kind, "modelshield.dev", "v1alpha1", PLURALS[kind])
    old = None
    if operation == "UPDATE":
        old = copy.deepcopy(document)
        old["spec"] = {"previous": "spec"}  # any other spec: the new one is judged
    namespace = (document.get("metadata") or {}).get("namespace")
    review = scenarios.review(info, operation, document, old, namespace=namespace)
    context = contexts.AdmissionContext(
        state=scenarios.standard_state(), verifier=verdicts.FixedVerdictVerifierForTests()
    )
    answer = asyncio.run(resources.review(json.dumps(review).encode(), context))
    return cast(dict[str, Any], answer["response"])


def _modelshield_test(path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main.main(["test", str(path), "--resources", str(WORKLOADS)])
    return code, capsys.readouterr().err


def test_every_rule_has_a_fixture_to_walk() -> None:
    words = " ".join(path.read_text() for path in INVALID)
    # The rules of api/v1alpha1/validation.py that a schema cannot say.
    for rule in (
        "signer name 'release' is used twice",
        "signer name 'trainer' is used twice",
        "attestation name 'scan' is used twice",
        "no one may sign this attestation",
        "so it needs spec.images.signers",
        "has no namespace to read a Secret from",
        "apiKeys: a ClusterModelSecurityPolicy has no namespace",
        "matchReferenceProfile: needs the reference profile of a monitoring.drift block",
        "outliers: needs the reference profile of a monitoring.drift block",
        "probing: needs the reference profile of a monitoring.drift block",
    ):
        assert rule in words, rule


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_what_the_webhook_refuses_modelshield_test_refuses_with_the_same_message(
    path: pathlib.Path, operation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (document,) = _documents(path)
    answer = _webhook(document, operation)
    assert answer["allowed"] is False, f"the webhook admitted {path.name}"
    message = str(answer["status"]["message"])
    header, _, body = message.partition(" is not valid:\n")
    assert body, message
    assert header.startswith(str(document["kind"]))
    problems = body.split("\n")

    code, err = _modelshield_test(path, capsys)
    assert code == 2, err
    assert f"{path}" in err
    # The same problems, in the same order, with the same words: "field.path: problem".
    printed = err.strip().removeprefix("error: ")
    assert printed.endswith(": " + "; ".join(problems)), (problems, err)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_what_the_webhook_admits_modelshield_test_reads(
    path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for document in _documents(path):
        assert _webhook(document, "CREATE")["allowed"] is True, path.name
    code, err = _modelshield_test(path, capsys)
    assert code != 2, err
    assert "error:" not in err
