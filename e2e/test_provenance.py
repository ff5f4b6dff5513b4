"""Training provenance on a real API server: the operator verifies, admission refuses by code.

The ModelArtifact reconciler runs in a kopf thread (as in test_model_artifacts) and the
admission webhook as a local process (as in test_admission). Models and datasets are
local ``file://`` directories signed with the real model_signing library; provenance is
written and signed by ``modelshield model attest`` (the code under test). Each tampering
case gets its own model and ModelArtifact, and a Deployment serving it is refused at
admission with its stable code; the untampered model is admitted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from kubernetes import client

from e2e import operators
from e2e.clients import Cluster, Kubectl
from e2e.webhooks import DENIED, Images, WebhookProcess, container, images, wait_for, webhook
from modelshield.controllers import artifacts as artifact_handlers
from modelshield.controllers import servingindex, writing
from modelshield.modelartifacts import signing
from modelshield.provenance import statements
from tests.support import signedprovenance as helpers
from tests.support import signingkeys as keys
from tests.support import sigstoretestroot

__all__ = ["images", "webhook"]  # module-scoped fixtures, shared by name

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
        work_dir=tmp_path_factory.mktemp("provenance-work"),
    ) as reconciler:
        yield reconciler


def _apply(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input_text=yaml.safe_dump(body))


def _artifact(name: str, uri: str, kind: str = "Model") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelArtifact",
        "metadata": {"name": name},
        "spec": {"uri": uri, "type": kind},
    }


def _policy(
    release: keys.KeyPair, pipeline: keys.KeyPair, data_team: keys.KeyPair, sources: str
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "provenance"},
        "spec": {
            "selector": {"matchLabels": {"app": "fraud-detector"}},
            "models": {
                "signers": [{"name": "release", "publicKey": release.public_pem.decode()}],
                "provenance": {
                    "trustedBuilders": [
                        {"name": "pipeline", "publicKey": pipeline.public_pem.decode()}
                    ],
                    "allowedDatasetSources": [sources],
                    "requireSignedDatasets": True,
                    "datasetSigners": [
                        {"name": "data-team", "publicKey": data_team.public_pem.decode()}
                    ],
                    "maxAge": "30d",
                },
            },
        },
    }


def _deployment(name: str, model: str, image: str) -> str:
    labels = {"app": "fraud-detector", "instance": name}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"modelshield.dev/model-artifact": model},
                    },
                    "spec": {"containers": [container(image)]},
                },
            },
        }
    )


def _conditions(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    body = client.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelartifacts", name
    )
    assert isinstance(body, dict)
    status = body.get("status") or {}
    if status.get("observedGeneration") != 1:
        return {}
    return {c["type"]: c for c in status.get("conditions", [])}


def _checked(cluster: Cluster, namespace: str, name: str, condition: str) -> dict[str, Any]:
    """Wait until the operator has written the condition for the artifact's first generation."""
    return wait_for(
        f"{name} to have its {condition} condition",
        lambda: _conditions(cluster, namespace, name).get(condition),
        WAIT_SECONDS,
    )


def _judged(kubectl: Kubectl, namespace: str, model: str, image: str, expected: str | None) -> str:
    """Dry-run a Deployment serving the model until admission says what is expected."""
    text = _deployment(f"serve-{model}", model, image)
    last: list[str] = []

    def probe() -> str | None:
        result = kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input_text=text, check=False
        )
        last[:] = [result.stderr]
        if expected is None:
            return "admitted" if result.returncode == 0 else None
        # The denial carries the messages, not the codes: each code's own wording.
        if result.returncode != 0 and DENIED in result.stderr and expected in result.stderr:
            return result.stderr
        return None

    try:
        return wait_for(f"admission of a Deployment serving {model} to say {expected!r}", probe)
    except BaseException:
        print(f"last answer for {model}: {last}")
        raise


@pytest.mark.usefixtures("operator")
def test_admission_judges_training_provenance_from_status(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    webhook: WebhookProcess,
    images: Images,
    tmp_path: pathlib.Path,
) -> None:
    started = time.monotonic()
    key_dir = tmp_path / "keys"
    release, pipeline = keys.key_pair(key_dir, "release"), keys.key_pair(key_dir, "pipeline")
    data_team, stranger = keys.key_pair(key_dir, "data-team"), keys.key_pair(key_dir, "stranger")
    data_root = tmp_path / "data"
    transactions = helpers.dataset(data_root / "transactions")
    signing.sign_with_key(transactions, data_team.private_path)
    data_uri = f"file://{transactions}"
    # A dataset whose record verified, then one byte changed: its record fails to verify.
    changed = helpers.dataset(data_root / "changed")
    changed_digest = helpers.digest_of(changed)
    signing.sign_with_key(changed, data_team.private_path)
    (changed / "train.csv").write_text("amount,label\n12.5,1\n990.0,1\n")
    outside = helpers.dataset(tmp_path / "elsewhere" / "scraped")
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=60)).isoformat()

    _apply(kubectl, namespace, _policy(release, pipeline, data_team, f"file://{data_root}/"))
    _apply(kubectl, namespace, _artifact("transactions", data_uri, "Dataset"))
    _apply(kubectl, namespace, _artifact("changed", f"file://{changed}", "Dataset"))

    models: dict[str, pathlib.Path] = {}

    def model(name: str) -> pathlib.Path:
        models[name] = helpers.signed_model(tmp_path / name, release, seed=name)
        return models[name]

    helpers.attest(model("good"), pipeline, {data_uri: transactions})
    model("unattested")
    helpers.attest(model("stranger"), stranger, {data_uri: transactions})
    helpers.attest(model("outside"), pipeline, {f"file://{outside}": outside})
    helpers.attest(model("changed-data"), pipeline, {f"file://{changed}": changed_digest})
    helpers.attest(model("expired"), pipeline, {data_uri: transactions}, finished=old)
    # Two versions' provenance swapped: v2 carries v1's genuine statement.
    helpers.attest(model("swapped"), pipeline, {data_uri: transactions})
    pathlib.Path(f"{models['swapped']}.intoto.jsonl").write_bytes(
        pathlib.Path(f"{models['good']}.intoto.jsonl").read_bytes()
    )
    # Re-pointed to another model's digest without the builder's key.
    path = helpers.attest(model("repointed"), pipeline, {data_uri: transactions})
    statement = helpers.statement_of(pathlib.Path(f"{models['good']}.intoto.jsonl"))
    statement["subject"][0]["digest"]["sha256"] = helpers.digest_of(models["repointed"])[7:]
    helpers.rewrite_payload(path, statement)
    for name, directory in models.items():
        _apply(kubectl, namespace, _artifact(name, f"file://{directory}"))

    good = _checked(cluster, namespace, "good", "Provenance")
    assert (good["status"], good["reason"]) == ("True", "ProvenanceVerified")
    untrusted = "carries a valid signature by a trusted builder (pipeline)"
    expected = {  # name -> the wording of its code (tests/engine pins the codes themselves)
        "good": None,
        "unattested": "has no verified training provenance: no provenance at",  # Missing
        "stranger": untrusted,  # ProvenanceUntrustedBuilder
        "repointed": untrusted,  # ProvenanceUntrustedBuilder
        "swapped": "not for this model's verified digest",  # ProvenanceSubjectMismatch
        "outside": "outside allowedDatasetSources",  # DatasetSourceNotAllowed
        "changed-data": "has a Dataset record without a verified signature",  # Unverified
        "expired": "longer ago than maxAge 30d",  # ProvenanceExpired
    }
    for name in expected:
        _checked(cluster, namespace, name, "Provenance")
    changed_ready = _checked(cluster, namespace, "changed", "Verified")
    assert changed_ready["status"] == "False"
    verified_at = time.monotonic()
    for name, code in expected.items():
        _judged(kubectl, namespace, name, images.signed, code)

    described = kubectl("get", "modelartifact", "good", "-n", namespace, "-o", "wide").stdout
    assert "pipeline" in described
    assert helpers.COMMIT in described
    shown = kubectl("get", "modelartifact", "good", "-n", namespace, "-o", "yaml").stdout
    assert helpers.SOURCE in shown
    assert data_uri in shown
    print(
        f"\n{len(models) + 2} artifacts checked with provenance in {verified_at - started:.1f} s; "
        f"{len(expected)} admission verdicts in {time.monotonic() - verified_at:.1f} s"
    )

    # Lineage against the cluster, both directions, and the CycloneDX export.
    kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=_deployment("fraud", "good", images.signed)
    )
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=_deployment("fraud-canary", "good", images.signed),
    )

    # An UPDATE that points the running Deployment at a model without provenance is refused.
    switched = _deployment("fraud", "unattested", images.signed)
    refused = kubectl("apply", "-n", namespace, "-f", "-", input_text=switched, check=False)
    assert refused.returncode != 0
    assert DENIED in refused.stderr
    assert "has no verified training provenance" in refused.stderr

    # Where it runs: the operator's serving index (its recorder, run here in-process on the
    # statuses the real reconciler wrote) records both Deployments on the model, and on the
    # Dataset record through the model whose verified provenance names it.
    recorder = servingindex.Recorder(writing.Kube(cluster.api_client))

    async def record() -> int:
        await recorder.resync()
        for marked in sorted(recorder.dirty):
            assert await recorder.write(marked)
        return recorder.writes

    assert asyncio.run(record()) > 0
    assert asyncio.run(record()) == recorder.writes  # what it wrote reads back equal: no rewrite
    served = operators.get_json(kubectl, namespace, "modelartifact", "transactions")["status"]
    assert [(w["name"], w["model"]) for w in served["servedBy"]["workloads"]] == [
        ("fraud", "good"),
        ("fraud-canary", "good"),
    ]

    def lineage(*arguments: str) -> str:
        command = [sys.executable, "-m", "modelshield.cli.main", "lineage"]
        command += ["--kubeconfig", str(cluster.kubeconfig_path), "-n", namespace, *arguments]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "no status.servedBy" not in done.stderr  # read from the index, not listed
        return done.stdout

    forward = lineage("--workload", "Deployment/fraud")
    assert f"model    good {helpers.digest_of(models['good'])} signer=release Ready" in forward
    assert f"code        {helpers.SOURCE}@{helpers.COMMIT}" in forward
    assert (
        f"dataset     {data_uri} {helpers.digest_of(transactions)} record transactions (verified"
        in forward
    )
    for reverse in (lineage("--model", "good"), lineage("--dataset", data_uri)):
        served = sorted(line for line in reverse.splitlines() if line.startswith("Deployment "))
        assert served == [f"Deployment {namespace}/fraud", f"Deployment {namespace}/fraud-canary"]
    document = lineage("--workload", "Deployment/fraud", "--output", "cyclonedx")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    kinds = sorted(c["type"] for c in json.loads(document)["components"])
    assert kinds == ["container", "data", "machine-learning-model"]


def test_a_keyless_builder_is_trusted_by_its_identity_at_admission(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    operator: artifact_handlers.Reconciler,
    webhook: WebhookProcess,
    images: Images,
    tmp_path: pathlib.Path,
) -> None:
    # The pipeline signs keyless: a sigstore bundle from a private trust root the test
    # creates (our own CA, CT log and transparency log), verified by the real sigstore
    # library in the operator's worker; admission reads the identity from status.
    root = sigstoretestroot.TestTrustRoot("provenance-e2e")
    operator.settings = dataclasses.replace(
        operator.settings, trust_config=root.write(tmp_path / "trusted_root.json")
    )
    issuer, identity = "https://token.actions.example.com", "https://git.example.com/ml/train@main"
    release = keys.key_pair(tmp_path / "keys", "release")
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": "keyless-provenance"},
        "spec": {
            "selector": {"matchLabels": {"app": "fraud-detector"}},
            "models": {
                "signers": [{"name": "release", "publicKey": release.public_pem.decode()}],
                "provenance": {
                    "trustedBuilders": [
                        {"name": "pipeline", "keyless": {"issuer": issuer, "subject": identity}}
                    ]
                },
            },
        },
    }
    _apply(kubectl, namespace, policy)
    signed_by = {"keyless-good": identity, "keyless-fork": "https://git.example.com/fork@main"}
    for name, who in signed_by.items():
        model = helpers.signed_model(tmp_path / name, release, seed=name)
        now = datetime.datetime.now(datetime.UTC)
        statement = statements.build(
            subject_name=name,
            subject_digest=helpers.digest_of(model),
            builder_id="https://ci.example.com/pipelines/fraud",
            source=helpers.SOURCE,
            commit=helpers.COMMIT,
            datasets=[],
            started=now,
            finished=now,
        )
        pathlib.Path(f"{model}.intoto.jsonl").write_bytes(
            root.keyless_bundle(statement, who, issuer)
        )
        _apply(kubectl, namespace, _artifact(name, f"file://{model}"))

    good = _checked(cluster, namespace, "keyless-good", "Provenance")
    assert (good["status"], good["reason"]) == ("True", "ProvenanceVerified"), good
    fork = _checked(cluster, namespace, "keyless-fork", "Provenance")
    assert (fork["status"], fork["reason"]) == ("False", "ProvenanceUntrustedBuilder"), fork
    recorded = operators.get_json(kubectl, namespace, "modelartifact", "keyless-good")
    said = recorded["status"]["provenance"]
    assert (said["builderIssuer"], said["builderIdentity"]) == (issuer, identity)
    _judged(kubectl, namespace, "keyless-good", images.signed, None)
    _judged(
        kubectl,
        namespace,
        "keyless-fork",
        images.signed,
        "carries a valid signature by a trusted builder (pipeline)",
    )
