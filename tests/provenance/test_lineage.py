"""`modelshield lineage` offline (both directions, JSON, CycloneDX) and `modelshield test` with lineage facts."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelshield.cli import main
from modelshield.engine import keyids

NS = "ml-prod"
DATA = "s3://data/fraud/transactions-2026-11/"
DATA_DIGEST = "sha256:" + "d" * 64
V1_DIGEST = "sha256:" + "1" * 64
IMAGE = "registry.example.com/ml/server@sha256:" + "a" * 64
TIME = "2026-11-25T10:00:00Z"
PIPELINE_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _condition(kind: str, status: str = "True", reason: str = "Ok") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "lastTransitionTime": TIME}


def _artifact(
    name: str, uri: str, digest: str, *, kind: str = "Model", provenance: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [_condition("Verified"), _condition("Scanned"), _condition("Ready")],
        "verifiedDigest": digest,
        "signer": "data-team" if kind == "Dataset" else "release",
        "signerKey": keyids.fingerprint(PIPELINE_PEM.encode()),
        "lastChecked": TIME,
    }
    if provenance:
        status["conditions"].append(_condition("Provenance", reason="ProvenanceVerified"))
        status["provenance"] = {
            "builder": "pipeline",
            "builderKey": keyids.fingerprint(PIPELINE_PEM.encode()),
            "builderId": "https://ci.example.com/pipelines/fraud",
            "source": "git+https://git.example.com/ml/fraud",
            "commit": "4f2d9c1e",
            "finished": "2026-11-20T08:00:00Z",
            "datasets": [{"name": "transactions", "uri": DATA, "digest": DATA_DIGEST}],
        }
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"uri": uri, "type": kind},
        "status": status,
    }


def _deployment(name: str, model: str, owned: bool = False) -> dict[str, Any]:
    labels = {"app": "fraud"}
    metadata: dict[str, Any] = {"name": name, "namespace": NS}
    if owned:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "1"}
        ]
    container = {
        "name": "server",
        "image": IMAGE,
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"modelshield.dev/model-artifact": model},
                },
                "spec": {"containers": [container]},
            },
        },
    }


@pytest.fixture
def resources(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "cluster.yaml"
    documents = [
        _artifact("fraud-v1", "s3://models/fraud/v1/", V1_DIGEST, provenance=True),
        _artifact("fraud-v0", "s3://models/fraud/v0/", "sha256:" + "0" * 64),
        _artifact("transactions", DATA, DATA_DIGEST, kind="Dataset"),
        _deployment("fraud", "fraud-v1"),
        _deployment("fraud-canary", "fraud-v1"),
        _deployment("legacy", "fraud-v0"),
        _deployment("owned-copy", "fraud-v1", owned=True),
    ]
    path.write_text(yaml.safe_dump_all(documents))
    return path


def _run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    code = main.main(["lineage", *arguments])
    return code, capsys.readouterr().out


def test_forward_from_a_workload_to_model_code_and_datasets(
    resources: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(
        capsys, "--resources", str(resources), "-n", NS, "--workload", "Deployment/fraud"
    )

    assert code == 0
    assert f"Deployment {NS}/fraud\n" in out
    assert f"image    {IMAGE}" in out
    assert f"model    fraud-v1 {V1_DIGEST} signer=release Ready" in out
    assert "code        git+https://git.example.com/ml/fraud@4f2d9c1e" in out
    assert (
        f"dataset     {DATA} {DATA_DIGEST} record transactions (verified, signer=data-team)" in out
    )
    assert "fraud-canary" not in out


def test_reverse_from_a_model_and_from_a_dataset(
    resources: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, by_model = _run(capsys, "--resources", str(resources), "-n", NS, "--model", "fraud-v1")
    _, by_uri = _run(capsys, "--resources", str(resources), "--dataset", DATA)
    _, by_record = _run(
        capsys, "--resources", str(resources), "-n", NS, "--dataset", "transactions"
    )
    code, none = _run(capsys, "--resources", str(resources), "--dataset", "s3://data/other/")

    for out in (by_model, by_uri, by_record):
        served = sorted(line for line in out.splitlines() if line.startswith("Deployment "))
        assert served == [f"Deployment {NS}/fraud", f"Deployment {NS}/fraud-canary"], out
    assert f"trained on it: ModelArtifact {NS}/fraud-v1" in by_uri
    assert "legacy" not in by_uri
    assert "owned-copy" not in by_model  # owned objects are listed through their owner
    assert (code, none) == (1, "")


def test_json_output_carries_the_lineage(
    resources: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = _run(capsys, "--resources", str(resources), "--dataset", DATA, "--output", "json")

    document = json.loads(out)
    assert [w["name"] for w in document["workloads"]] == ["fraud", "fraud-canary"]
    model = document["trainedModels"][0]
    assert (model["name"], model["provenance"]["commit"]) == ("fraud-v1", "4f2d9c1e")
    assert model["datasets"][0]["record_verified"] is True


def test_cyclonedx_export_validates_and_names_models_datasets_and_images(
    resources: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(
        capsys,
        "--resources",
        str(resources),
        "-n",
        NS,
        "--workload",
        "Deployment/fraud",
        "--output",
        "cyclonedx",
    )

    assert code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    document = json.loads(out)
    assert document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["name"] == "fraud"
    by_type = {c["type"]: c for c in document["components"]}
    assert set(by_type) == {"container", "machine-learning-model", "data"}
    model = by_type["machine-learning-model"]
    assert model["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    assert {
        "type": "vcs",
        "url": "git+https://git.example.com/ml/fraud",
        "comment": "4f2d9c1e",
    } in model["externalReferences"]
    assert by_type["data"]["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    dependencies = {d["ref"]: set(d.get("dependsOn", [])) for d in document["dependencies"]}
    assert dependencies[model["bom-ref"]] == {by_type["data"]["bom-ref"]}


def test_a_bom_of_every_workload_validates(
    resources: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "--resources", str(resources), "--output", "cyclonedx")

    assert code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    names = sorted(c["name"] for c in json.loads(out)["components"] if c["type"] == "application")
    assert names == ["fraud", "fraud-canary", "legacy"]


def test_modelshield_test_judges_provenance_facts_offline(
    resources: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    key = PIPELINE_PEM
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "modelshield.dev/v1alpha1",
                "kind": "ModelSecurityPolicy",
                "metadata": {"name": "provenance", "namespace": NS},
                "spec": {
                    "selector": {"matchLabels": {"app": "fraud"}},
                    "models": {
                        "signers": [{"name": "release", "publicKey": key}],
                        "provenance": {
                            "trustedBuilders": [{"name": "pipeline", "publicKey": key}],
                            "allowedDatasetSources": ["s3://data/fraud/"],
                            "requireSignedDatasets": True,
                            "datasetSigners": [{"name": "data-team", "publicKey": key}],
                        },
                    },
                },
            }
        )
    )

    code = main.main(
        ["test", str(policy), "--resources", str(resources), "--now", "2026-11-26T00:00:00Z"]
    )
    out = capsys.readouterr().out

    assert code == 1
    assert f"PASS  Deployment {NS}/fraud " in out
    assert f"FAIL  Deployment {NS}/legacy " in out
    assert "ProvenanceMissing" in out
