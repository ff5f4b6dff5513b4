"""models.provenance judged at admission from ModelArtifact status facts only (pure engine)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelshield.engine import compiling, evaluating, facts, keyids, provenancechecks
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b


def _public_pem() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PIPELINE_PEM, IMPOSTOR_PEM, DATA_TEAM_PEM = _public_pem(), _public_pem(), _public_pem()
DATA = "s3://data/fraud/transactions-2026-11/"
DATA_DIGEST = "sha256:" + "d" * 64
FINISHED = b.NOW - datetime.timedelta(days=10)


def _provenance(**overrides: Any) -> facts.ProvenanceFacts:
    values: dict[str, Any] = {
        "verified": True,
        "reason": "ProvenanceVerified",
        "builder": "pipeline",
        "builder_key": keyids.fingerprint(PIPELINE_PEM.encode()),
        "source": "git+https://git.example.com/ml/fraud",
        "commit": "4f2d9c1e",
        "finished": FINISHED,
        "datasets": (("transactions", DATA, DATA_DIGEST),),
    }
    values.update(overrides)
    return facts.ProvenanceFacts(**values)


def _model(provenance: facts.ProvenanceFacts | None) -> facts.ArtifactFacts:
    return dataclasses.replace(b.artifact(), provenance=provenance)


def _dataset(**overrides: Any) -> facts.ArtifactFacts:
    values: dict[str, Any] = {
        "namespace": b.NAMESPACE,
        "name": "transactions-2026-11",
        "uri": DATA,
        "expected_digest": None,
        "current": True,
        "verified": True,
        "verified_digest": DATA_DIGEST,
        "signer": "data-team",
        "signer_key": keyids.fingerprint(DATA_TEAM_PEM.encode()),
        "scanned": True,
        "last_checked": b.NOW,
        "artifact_type": "Dataset",
    }
    values.update(overrides)
    return facts.ArtifactFacts(**values)


def _requirement(**overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "trustedBuilders": [{"name": "pipeline", "publicKey": PIPELINE_PEM}],
        "allowedDatasetSources": ["s3://data/fraud/"],
        "requireSignedDatasets": True,
        "datasetSigners": [{"name": "data-team", "publicKey": DATA_TEAM_PEM}],
        "maxAge": "90d",
    }
    block.update(overrides)
    return {"signers": b.SIGNERS, "provenance": block}


def _codes(
    model: facts.ArtifactFacts,
    *records: facts.ArtifactFacts,
    now: datetime.datetime = b.NOW,
    **requirement: Any,
) -> list[Code]:
    tables = {(a.namespace, a.name): a for a in (model, *records)}
    source = facts.StaticFacts(artifacts=tables)
    policy_set = compiling.compile_policies([b.policy(models=_requirement(**requirement))])
    decision = evaluating.evaluate(b.workload("Deployment"), policy_set, {}, source, now)
    return [v.code for v in decision.violations]


def test_a_model_with_verified_provenance_and_signed_datasets_is_admitted() -> None:
    assert _codes(_model(_provenance()), _dataset()) == []


def test_a_model_without_provenance_is_refused() -> None:
    assert _codes(_model(None), _dataset()) == [Code.PROVENANCE_MISSING]
    missing = _provenance(verified=False, reason="ProvenanceMissing", message="no file")
    assert _codes(_model(missing), _dataset()) == [Code.PROVENANCE_MISSING]


def test_provenance_not_required_is_judged_only_when_present() -> None:
    missing = _provenance(verified=False, reason="ProvenanceMissing")
    assert _codes(_model(missing), _dataset(), required=False) == []
    assert _codes(_model(None), _dataset(), required=False) == []
    bad = _provenance(verified=False, reason="ProvenanceUntrustedBuilder", message="x")
    assert _codes(_model(bad), _dataset(), required=False) == [Code.PROVENANCE_UNTRUSTED_BUILDER]
    invalid = _provenance(verified=False, reason="ProvenanceInvalid", message="not SLSA")
    assert _codes(_model(invalid), _dataset(), required=False) == [Code.PROVENANCE_MISSING]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("ProvenanceUntrustedBuilder", Code.PROVENANCE_UNTRUSTED_BUILDER),
        ("ProvenanceSubjectMismatch", Code.PROVENANCE_SUBJECT_MISMATCH),
        ("ProvenanceInvalid", Code.PROVENANCE_MISSING),
        ("ModelNotHashed", Code.PROVENANCE_MISSING),
        ("SomethingNew", Code.PROVENANCE_MISSING),
    ],
)
def test_each_operator_refusal_has_its_code(reason: str, code: Code) -> None:
    refused = _provenance(verified=False, reason=reason, message="why")
    assert _codes(_model(refused), _dataset()) == [code]


def test_a_verified_true_condition_without_status_provenance_proves_nothing() -> None:
    # from_model_artifact: Provenance=True but no status.provenance -> not verified.
    assert _codes(_model(_provenance(verified=False, reason="ProvenanceVerified"))) == [
        Code.PROVENANCE_MISSING
    ]


def test_a_builder_another_policy_trusts_is_not_trusted_here() -> None:
    other = _provenance(builder="someone-else")
    assert _codes(_model(other), _dataset()) == [Code.PROVENANCE_UNTRUSTED_BUILDER]


def test_a_builder_of_the_same_name_with_another_key_is_not_trusted() -> None:
    # Another policy (a namespaced one next to the cluster baseline) names its own key
    # "pipeline": the operator verified with that key, and this policy refuses it.
    impostor = _provenance(builder_key=keyids.fingerprint(IMPOSTOR_PEM.encode()))
    assert _codes(_model(impostor), _dataset()) == [Code.PROVENANCE_UNTRUSTED_BUILDER]
    assert _codes(_model(_provenance(builder_key="")), _dataset()) == [
        Code.PROVENANCE_UNTRUSTED_BUILDER
    ]
    # A builder whose key is in a Secret (namespaced policies only) is trusted by name.
    from_secret = [{"name": "pipeline", "secretRef": {"name": "keys", "key": "pipeline.pub"}}]
    assert _codes(_model(impostor), _dataset(), trustedBuilders=from_secret) == []


def test_an_unreadable_inline_key_trusts_nothing() -> None:
    builders = [{"name": "pipeline", "publicKey": b.PUBLIC_KEY}]  # a PEM header, no key
    assert _codes(_model(_provenance()), _dataset(), trustedBuilders=builders) == [
        Code.PROVENANCE_UNTRUSTED_BUILDER
    ]


def test_an_old_or_undated_training_run_expires() -> None:
    old = _provenance(finished=b.NOW - datetime.timedelta(days=91))
    assert _codes(_model(old), _dataset()) == [Code.PROVENANCE_EXPIRED]
    undated = _provenance(finished=None)
    assert _codes(_model(undated), _dataset()) == [Code.PROVENANCE_EXPIRED]
    assert _codes(_model(old), _dataset(), maxAge=None) == []


@pytest.mark.parametrize(
    "uri",
    [
        "s3://data/fraud-evil/transactions/",
        "s3://data/other/",
        "s3://data-evil/fraud/x/",
        "gs://data/fraud/x/",
        "s3://data/fraud/../secret/",
        "s3://data/fraud/%2e%2e/secret/",
        "s3://data/fraud/x/?versionId=3",
        "s3://user@data/fraud/x/",
        "s3://data/fraud",
    ],
)
def test_a_dataset_outside_the_allowed_sources_is_refused(uri: str) -> None:
    found = _provenance(datasets=(("x", uri, DATA_DIGEST),))
    codes = _codes(_model(found), _dataset(uri=uri))
    assert codes == [Code.DATASET_SOURCE_NOT_ALLOWED]


@pytest.mark.parametrize(
    ("prefix", "uri", "allowed"),
    [
        ("s3://data/fraud", "s3://data/fraud", True),
        ("s3://data/fraud", "s3://data/fraud/x", True),
        ("s3://data/fraud", "s3://data/fraud-evil", False),
        ("s3://data/fraud/", "s3://data/fraud", False),
        ("s3://data/fraud/", "s3://data/fraud/x", True),
        ("s3://data", "s3://data/anything/", True),
        ("s3://data", "s3://data2/anything/", False),
        ("https://Datasets.Example.com/public", "https://datasets.example.com/public/a.csv", True),
        ("https://datasets.example.com", "https://datasets.example.com:8443/a.csv", False),
        ("s3://data/fraud/", "s3://data/fraud/./x", False),
        ("file:///data/fraud/", "file:///data/fraud/x", True),
        ("file:///data/fraud", "file:///data/fraud-evil/x", False),
        ("file:///data/fraud/", "file://host/data/fraud/x", False),
    ],
)
def test_source_prefixes_have_path_boundaries(prefix: str, uri: str, allowed: bool) -> None:
    assert provenancechecks.allows_source([prefix], uri) is allowed


def test_no_allowed_sources_admit_any_source() -> None:
    found = _provenance(datasets=(("x", "s3://anywhere/x/", DATA_DIGEST),))
    record = _dataset(uri="s3://anywhere/x/")
    assert _codes(_model(found), record, allowedDatasetSources=[]) == []


def test_an_unrecorded_unverified_or_changed_dataset_is_refused() -> None:
    model = _model(_provenance())
    assert _codes(model) == [Code.DATASET_UNVERIFIED]
    assert _codes(model, _dataset(verified=False, verified_digest=None)) == [
        Code.DATASET_UNVERIFIED
    ]
    assert _codes(model, _dataset(current=False)) == [Code.DATASET_UNVERIFIED]
    changed = _dataset(verified_digest="sha256:" + "e" * 64)  # a changed byte re-hashes
    assert _codes(model, changed) == [Code.DATASET_UNVERIFIED]
    other_key = keyids.fingerprint(IMPOSTOR_PEM.encode())
    assert _codes(model, _dataset(signer="release", signer_key=other_key)) == [
        Code.DATASET_UNVERIFIED
    ]
    # A Model record at the dataset's URI is not a dataset record.
    assert _codes(model, _dataset(artifact_type="Model")) == [Code.DATASET_UNVERIFIED]
    assert _codes(model, requireSignedDatasets=False) == []


def test_a_dataset_signed_with_another_policys_key_of_the_same_name_is_refused() -> None:
    # A namespaced policy naming its own key "data-team": the operator verified the Dataset
    # record with it and recorded that key, which is not this policy's "data-team".
    model = _model(_provenance())
    impostor = _dataset(signer_key=keyids.fingerprint(IMPOSTOR_PEM.encode()))
    assert _codes(model, impostor) == [Code.DATASET_UNVERIFIED]
    # A status from before the key was recorded fails closed until the operator re-checks.
    assert _codes(model, _dataset(signer_key="")) == [Code.DATASET_UNVERIFIED]
    assert _codes(model, _dataset()) == []


def test_a_dataset_named_without_a_digest_cannot_be_verified() -> None:
    found = _provenance(datasets=(("transactions", DATA, ""),))
    assert _codes(_model(found), _dataset()) == [Code.DATASET_UNVERIFIED]


def test_datasets_beyond_the_status_list_fail_closed() -> None:
    found = _provenance(datasets_truncated=True)
    assert _codes(_model(found), _dataset()) == [Code.DATASET_UNVERIFIED]


def test_a_dataset_record_is_never_served_as_a_model() -> None:
    record = dataclasses.replace(_dataset(), name=b.MODEL, signer="release")
    assert Code.MODEL_IS_DATASET in _codes(record)


def test_from_model_artifact_reads_the_provenance_condition_and_status() -> None:
    from modelshield.api.v1alpha1 import artifacts

    condition = {
        "type": "Provenance",
        "status": "True",
        "reason": "ProvenanceVerified",
        "lastTransitionTime": "2026-11-25T10:00:00Z",
    }
    artifact = artifacts.ModelArtifact.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ml", "generation": 1},
            "spec": {"uri": "s3://models/v1/"},
            "status": {
                "observedGeneration": 1,
                "conditions": [condition],
                "provenance": {
                    "builder": "pipeline",
                    "commit": "abc",
                    "finished": "2026-11-20T00:00:00",
                    "datasets": [{"name": "t", "uri": DATA, "digest": DATA_DIGEST}],
                },
            },
        }
    )

    found = facts.from_model_artifact(artifact).provenance

    assert found is not None
    assert (found.verified, found.builder, found.commit) == (True, "pipeline", "abc")
    assert found.datasets == (("t", DATA, DATA_DIGEST),)
    assert found.finished == datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC)
