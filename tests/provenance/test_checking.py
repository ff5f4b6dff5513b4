"""The operator's provenance check on real signatures: ours, and cosign's attest-blob."""

from __future__ import annotations

import datetime
import json
import pathlib

import pytest

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.api.v1alpha1.common import ConditionStatus, Severity
from modelshield.controllers import artifactchecks as checks
from modelshield.engine import keyids
from modelshield.modelartifacts import modelverifying, transfers
from modelshield.provenance import checking, envelopes, statements
from tests.support import localtools
from tests.support import signedprovenance as helpers
from tests.support import signingkeys as keys

DATA_URI = "s3://data/fraud/transactions-2026-11/"


@pytest.fixture
def builder(tmp_path: pathlib.Path) -> keys.KeyPair:
    return keys.key_pair(tmp_path / "keys", "pipeline")


@pytest.fixture
def releaser(tmp_path: pathlib.Path) -> keys.KeyPair:
    return keys.key_pair(tmp_path / "keys", "release")


def _request(*trusted: keys.KeyPair, uri: str | None = None) -> checking.Request:
    return checking.Request(
        uri=uri,
        builders=tuple(envelopes.TrustedKey(k.private_path.stem, k.public_pem) for k in trusted),
    )


def _job(
    tmp_path: pathlib.Path,
    model: pathlib.Path,
    releaser: keys.KeyPair,
    request: checking.Request | None,
) -> checks.Job:
    return checks.Job(
        uid="prov-1",
        spec=artifacts.ModelArtifactSpec(uri=f"file://{model}"),
        generation=1,
        previous=None,
        signers=(modelverifying.KeySigner("release", releaser.public_pem),),
        threshold=Severity.HIGH,
        settings=checks.Settings(
            fetch=transfers.Settings(file_roots=(tmp_path,)), work_dir=tmp_path / "work"
        ),
        provenance=request,
    )


def _provenance(verdict: object) -> tuple[ConditionStatus, str]:
    status = verdict.status  # type: ignore[attr-defined]
    condition = next(c for c in status.conditions if c.type == artifacts.PROVENANCE)
    return condition.status, condition.reason


def test_attested_model_verifies_in_the_worker_and_status_names_its_lineage(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    data = helpers.dataset(tmp_path / "transactions")
    helpers.attest(model, builder, {DATA_URI: data})
    uri = f"file://{model}.intoto.jsonl"

    verdict = checks.run_job(_job(tmp_path, model, releaser, _request(builder, uri=uri)))

    assert _provenance(verdict) == (ConditionStatus.TRUE, checking.VERIFIED)
    facts = verdict.status.provenance
    assert facts is not None
    assert (facts.builder, facts.source, facts.commit) == (
        "pipeline",
        helpers.SOURCE,
        helpers.COMMIT,
    )
    assert facts.builder_key == keyids.fingerprint(builder.public_pem)
    assert [(d.uri, d.digest) for d in facts.datasets] == [(DATA_URI, helpers.digest_of(data))]
    assert verdict.status.verified_digest == helpers.digest_of(model)
    ready = next(c for c in verdict.status.conditions if c.type == artifacts.READY)
    assert ready.status is ConditionStatus.TRUE


def test_the_default_location_is_beside_the_model(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    helpers.attest(model, builder, {})
    spec = artifacts.ModelArtifactSpec(uri=f"file://{model}/")
    requirement = policies.ModelRequirements.model_validate(
        {
            "provenance": {
                "trustedBuilders": [{"name": "pipeline", "publicKey": builder.public_pem.decode()}]
            }
        }
    )
    request = checking.request(spec, [requirement], {})
    assert request is not None
    assert request.uri == f"file://{model}.intoto.jsonl"

    verdict = checks.run_job(_job(tmp_path, model, releaser, request))

    assert _provenance(verdict) == (ConditionStatus.TRUE, checking.VERIFIED)


def test_no_provenance_file_is_missing(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    uri = f"file://{model}.intoto.jsonl"

    verdict = checks.run_job(_job(tmp_path, model, releaser, _request(builder, uri=uri)))

    assert _provenance(verdict) == (ConditionStatus.FALSE, checking.MISSING)
    assert verdict.status.provenance is None


def test_a_statement_signed_by_an_untrusted_key_is_refused(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    stranger = keys.key_pair(tmp_path / "keys", "stranger")
    path = helpers.attest(model, stranger, {})

    result = checking.judge(path.read_bytes(), _request(builder), helpers.digest_of(model))

    assert (result.status, result.reason) == (ConditionStatus.FALSE, checking.UNTRUSTED_BUILDER)


def test_a_statement_repointed_to_another_digest_without_its_key_is_refused(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    other = helpers.signed_model(tmp_path / "fraud-evil", releaser, seed="evil")
    path = helpers.attest(model, builder, {})
    statement = helpers.statement_of(path)
    statement["subject"][0]["digest"]["sha256"] = helpers.digest_of(other).removeprefix("sha256:")
    helpers.rewrite_payload(path, statement)

    result = checking.judge(path.read_bytes(), _request(builder), helpers.digest_of(other))

    assert (result.status, result.reason) == (ConditionStatus.FALSE, checking.UNTRUSTED_BUILDER)


def test_a_statement_for_another_model_is_a_subject_mismatch(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    v1 = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    v2 = helpers.signed_model(tmp_path / "fraud-v2", releaser, seed="v2")
    helpers.attest(v1, builder, {})
    helpers.attest(v2, builder, {})
    # The two versions' provenance files swapped: each is genuine, for the other model.
    swapped = pathlib.Path(f"{v1}.intoto.jsonl").read_bytes()
    pathlib.Path(f"{v2}.intoto.jsonl").write_bytes(swapped)
    uri = f"file://{v2}.intoto.jsonl"

    verdict = checks.run_job(_job(tmp_path, v2, releaser, _request(builder, uri=uri)))

    assert _provenance(verdict) == (ConditionStatus.FALSE, checking.SUBJECT_MISMATCH)
    assert verdict.status.provenance is None


def test_a_changed_model_byte_no_longer_matches_its_statement(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    path = helpers.attest(model, builder, {})
    (model / "config.json").write_text('{"framework": "sklearn", "features": 3}')

    result = checking.judge(path.read_bytes(), _request(builder), helpers.digest_of(model))

    assert result.reason == checking.SUBJECT_MISMATCH


def test_not_a_provenance_statement_is_invalid(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    path = helpers.attest(model, builder, {})
    statement = helpers.statement_of(path)
    statement["predicateType"] = "https://cosign.sigstore.dev/attestation/vuln/v1"
    helpers.resign(path, statement, builder)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")

    signed_other = checking.judge(path.read_bytes(), _request(builder), helpers.digest_of(model))
    unreadable = checking.judge(garbage.read_bytes(), _request(builder), helpers.digest_of(model))

    assert signed_other.reason == checking.INVALID
    assert unreadable.reason == checking.INVALID


def test_a_misspelt_predicate_field_is_invalid_not_ignored(
    tmp_path: pathlib.Path, builder: keys.KeyPair, releaser: keys.KeyPair
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    path = helpers.attest(model, builder, {DATA_URI: "sha256:" + "1" * 64})
    statement = helpers.statement_of(path)
    definition = statement["predicate"]["buildDefinition"]
    definition["resolvedDependencys"] = definition.pop("resolvedDependencies")
    helpers.resign(path, statement, builder)

    result = checking.judge(path.read_bytes(), _request(builder), helpers.digest_of(model))

    assert result.reason == checking.INVALID


def test_cosign_attest_blob_provenance_verifies(
    tmp_path: pathlib.Path, releaser: keys.KeyPair, cosign: localtools.Cosign
) -> None:
    model = helpers.signed_model(tmp_path / "fraud-v1", releaser)
    private, public = cosign.generate_key_pair("pipeline")
    finished = datetime.datetime(2026, 11, 20, 8, 30, tzinfo=datetime.UTC)
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps(helpers.predicate({DATA_URI: "sha256:" + "2" * 64}, finished)))
    digest = helpers.digest_of(model)
    made = cosign.run(
        "attest-blob",
        "--key",
        str(private),
        "--predicate",
        str(predicate),
        "--type",
        "slsaprovenance1",
        "--tlog-upload=false",
        "--hash",
        digest.removeprefix("sha256:"),
        "fraud-v1",
    )
    request = checking.Request(
        uri=None, builders=(envelopes.TrustedKey("pipeline", public.encode()),)
    )

    result = checking.judge(made.stdout.encode(), request, digest)
    stranger = checking.judge(made.stdout.encode(), _request(releaser), digest)
    other = checking.judge(made.stdout.encode(), request, "sha256:" + "3" * 64)

    assert (result.status, result.reason) == (ConditionStatus.TRUE, checking.VERIFIED)
    assert result.facts is not None
    assert result.facts.finished == finished
    assert [d.uri for d in result.facts.datasets] == [DATA_URI]
    assert stranger.reason == checking.UNTRUSTED_BUILDER
    assert other.reason == checking.SUBJECT_MISMATCH


def test_a_dataset_record_is_verified_against_dataset_signers() -> None:
    requirement = policies.ModelRequirements.model_validate(
        {
            "signers": [{"name": "release", "publicKey": "-----BEGIN PUBLIC KEY-----\nA\n"}],
            "provenance": {
                "trustedBuilders": [{"name": "ci", "publicKey": "-----BEGIN PUBLIC KEY-----\nB\n"}],
                "requireSignedDatasets": True,
                "datasetSigners": [
                    {"name": "data", "publicKey": "-----BEGIN PUBLIC KEY-----\nC\n"}
                ],
            },
        }
    )
    dataset = artifacts.ModelArtifactSpec(uri=DATA_URI, type="Dataset")
    model = artifacts.ModelArtifactSpec(uri="s3://models/fraud/v1/")

    checked = checking.for_artifact(dataset, [requirement])

    assert [s.name for r in checked for s in r.signers] == ["data"]
    assert checking.request(dataset, checked, {}) is None
    assert checking.for_artifact(model, [requirement]) == [requirement]
    asked = checking.request(model, [requirement], {})
    assert asked is not None
    assert [k.name for k in asked.builders] == ["ci"]
    assert asked.uri == "s3://models/fraud/v1.intoto.jsonl"


def test_statements_round_trip_through_in_toto_attestation() -> None:
    moment = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    made = statements.build(
        subject_name="fraud",
        subject_digest="sha256:" + "a" * 64,
        builder_id=helpers.BUILDER_ID,
        source=helpers.SOURCE,
        commit=helpers.COMMIT,
        datasets=[statements.Input("tx", DATA_URI, "sha256:" + "b" * 64)],
        started=moment,
        finished=moment,
    )

    read = statements.parse(json.dumps(made).encode())

    assert read.names_subject("sha256:" + "a" * 64)
    assert (read.source, read.commit, read.finished) == (helpers.SOURCE, helpers.COMMIT, moment)
    assert read.datasets == (statements.Input("tx", DATA_URI, "sha256:" + "b" * 64),)
