"""The ModelArtifact controller's pieces without a cluster: jobs, the process pool, due times."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import pathlib

import pytest

from modelshield.api.v1alpha1 import artifacts
from modelshield.api.v1alpha1.common import ConditionStatus, Severity
from modelshield.controllers import artifactchecks as checks
from modelshield.controllers import artifacts as controller
from modelshield.controllers import caches
from modelshield.modelartifacts import modelverifying, reconciling, signing, transfers
from tests.support import artifactservers as servers
from tests.support import modelfiles as models
from tests.support import signingkeys as keys


def _job(
    tmp_path: pathlib.Path, uri: str, signers: tuple[modelverifying.TrustedSigner, ...]
) -> checks.Job:
    return checks.Job(
        uid="0000-1111",
        spec=artifacts.ModelArtifactSpec(uri=uri),
        generation=2,
        previous=None,
        signers=signers,
        threshold=Severity.HIGH,
        settings=checks.Settings(
            fetch=transfers.Settings(file_roots=(tmp_path,)),
            work_dir=tmp_path / "work",
            max_concurrent=1,
        ),
    )


def test_job_in_a_worker_process_verifies_and_scans(tmp_path: pathlib.Path) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, pair.private_path)
    job = _job(tmp_path, f"file://{model}", (modelverifying.KeySigner("release", pair.public_pem),))
    reconciler = controller.Reconciler(job.settings)

    try:
        verdict = asyncio.run(reconciler.check(job))
    finally:
        reconciler.shutdown()

    ready = next(c for c in verdict.status.conditions if c.type == "Ready")
    assert (ready.status, verdict.status.signer) == (ConditionStatus.TRUE, "release")
    assert verdict.status.observed_generation == 2


def test_job_with_unreachable_source_reports_fetch_failure(tmp_path: pathlib.Path) -> None:
    job = _job(tmp_path, "http://127.0.0.1:9/model.joblib", ())

    verdict = checks.run_job(job)

    verified = next(c for c in verdict.status.conditions if c.type == "Verified")
    assert verified.reason == "FetchFailed"
    assert transfers.FETCH_FAILED in verified.message
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_governing_requirements_select_cluster_policies_by_namespace_labels() -> None:
    namespaced = [{"signers": [], "blockFindingsAtOrAbove": "Medium"}]
    cluster = [
        ({"matchLabels": {"team": "fraud"}}, {"blockFindingsAtOrAbove": "Low"}),
        ({"matchLabels": {"team": "search"}}, {"blockFindingsAtOrAbove": "Critical"}),
    ]

    found = caches.governing_model_requirements({"team": "fraud"}, namespaced, cluster)

    assert [r.block_findings_at_or_above for r in found] == [Severity.MEDIUM, Severity.LOW]


def test_is_due() -> None:
    now = datetime.datetime(2026, 11, 26, 12, tzinfo=datetime.UTC)
    status = {"lastChecked": "2026-11-26T11:00:00Z"}

    assert controller.is_due({}, {}, now)
    assert not controller.is_due(status, {"recheckInterval": "2h"}, now)
    assert controller.is_due(status, {"recheckInterval": "30m"}, now)


def test_status_patch_clears_fields_with_nulls() -> None:
    patch = controller.status_patch(artifacts.ModelArtifactStatus())

    assert patch["verifiedDigest"] is None
    assert patch["signer"] is None


@pytest.mark.integration
def test_signature_kept_apart_from_the_model_is_fetched(tmp_path: pathlib.Path) -> None:
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    (tmp_path / "bundles").mkdir()
    signing.sign_with_key(model, pair.private_path, signature=tmp_path / "bundles" / "fraud.sig")
    signers = (modelverifying.KeySigner("release", pair.public_pem),)

    with servers.file_server(tmp_path / "bundles") as (base, _):
        job = dataclasses.replace(
            _job(tmp_path, f"file://{model}", signers),
            spec=artifacts.ModelArtifactSpec(
                uri=f"file://{model}", signature={"uri": f"{base}/fraud.sig"}
            ),
        )
        verdict = checks.run_job(job)

    ready = next(c for c in verdict.status.conditions if c.type == "Ready")
    assert ready.status == ConditionStatus.TRUE, verdict.status.conditions
    assert not list((tmp_path / "work").glob("*.sig"))


def _ready_previous() -> artifacts.ModelArtifactStatus:
    """A status as the last good check left it: verified, scanned, Ready."""
    then = datetime.datetime(2026, 11, 26, 11, tzinfo=datetime.UTC)
    return artifacts.ModelArtifactStatus(
        observed_generation=2,
        conditions=[
            {"type": kind, "status": "True", "reason": "Ready", "lastTransitionTime": then}
            for kind in ("Verified", "Scanned", "Ready")
        ],
        verified_digest="sha256:" + "a" * 64,
        signer="release",
        last_checked=then,
    )


def _assert_failed_closed(verdict: reconciling.Verdict, reason: str) -> None:
    by_type = {c.type: c for c in verdict.status.conditions}
    assert {t: c.status for t, c in by_type.items()} == {
        "Verified": ConditionStatus.FALSE,
        "Scanned": ConditionStatus.FALSE,
        "Ready": ConditionStatus.FALSE,
    }
    assert by_type["Verified"].reason == reason
    assert verdict.status.verified_digest is None
    assert verdict.status.signer is None
    assert verdict.status.last_checked is not None
    assert verdict.status.last_checked > datetime.datetime(2026, 11, 26, 11, tzinfo=datetime.UTC)
    # Ready went from True to False: an Event is due.
    assert "Ready" in {c.type for c in verdict.transitions}


@pytest.mark.integration
def test_an_unexpected_error_while_fetching_fails_closed(tmp_path: pathlib.Path) -> None:
    # Not a tar at all: tarfile raises ReadError, which the handler used to let escape
    # (kopf retried for ever and the old Ready status stayed).
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.tar").write_bytes(b"this is not a tar archive" * 40)
    with servers.file_server(served) as (base, _):
        job = dataclasses.replace(
            _job(tmp_path, f"{base}/model.tar", ()), previous=_ready_previous()
        )
        verdict = checks.run_job(job)

    _assert_failed_closed(verdict, "CheckFailed")
    assert "ReadError" in verdict.status.conditions[0].message


def test_a_check_that_cannot_run_fails_closed(tmp_path: pathlib.Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    job = dataclasses.replace(
        _job(tmp_path, "http://127.0.0.1:9/model.joblib", ()), previous=_ready_previous()
    )
    job = dataclasses.replace(
        job,
        settings=dataclasses.replace(job.settings, work_dir=tmp_path / "not-a-directory" / "w"),
    )
    reconciler = controller.Reconciler(job.settings)

    try:
        verdict = asyncio.run(reconciler.check(job))
    finally:
        reconciler.shutdown()

    _assert_failed_closed(verdict, "CheckFailed")


def test_a_worker_that_outlives_the_check_deadline_is_stopped(tmp_path: pathlib.Path) -> None:
    # The signature is a FIFO: reading it blocks the worker where no fetch deadline is
    # checked; only the reconciler's hard stop at twice the deadline ends the check.
    pair = keys.key_pair(tmp_path / "keys", "release")
    model = models.benign_model(tmp_path / "model")
    os.mkfifo(tmp_path / "model.sig")
    job = dataclasses.replace(
        _job(tmp_path, f"file://{model}", (modelverifying.KeySigner("release", pair.public_pem),)),
        previous=_ready_previous(),
        spec=artifacts.ModelArtifactSpec(
            uri=f"file://{model}", signature={"uri": f"file://{tmp_path}/model.sig"}
        ),
    )
    job = dataclasses.replace(
        job,
        settings=dataclasses.replace(
            job.settings, fetch=dataclasses.replace(job.settings.fetch, deadline_seconds=1.0)
        ),
    )
    reconciler = controller.Reconciler(job.settings)
    started = datetime.datetime.now(datetime.UTC)

    try:
        verdict = asyncio.run(reconciler.check(job))
    finally:
        reconciler.shutdown()

    _assert_failed_closed(verdict, "CheckFailed")
    assert "no verdict within 2 s" in verdict.status.conditions[0].message
    assert datetime.datetime.now(datetime.UTC) - started < datetime.timedelta(seconds=30)


def test_failure_reason_names_the_cause() -> None:
    verdict = reconciling.failed(
        3,
        None,
        now=datetime.datetime(2026, 11, 26, 12, tzinfo=datetime.UTC),
        reason="FetchFailed",
        message="https://REDACTED@models.example/x: 404",
    )

    assert controller.failure_reason(verdict.status) == "FetchFailed"
    assert controller.failure_reason(_ready_previous()) is None
    assert controller.failure_reason(artifacts.ModelArtifactStatus()) == "CheckFailed"


def test_operator_flags_win_over_the_environment() -> None:
    from modelshield.cli import main

    arguments = main.build_parser("operator").parse_args(
        ["operator", "--file-root=/models", "--file-root=/data", "--artifact-max-files=3"]
    )
    environment = {"MODELSHIELD_ARTIFACT_MAX_FILES": "99", "MODELSHIELD_FILE_ROOTS": "/elsewhere"}

    fetch = checks.Settings.from_environment(environment, arguments).fetch

    assert fetch.file_roots == (pathlib.Path("/models"), pathlib.Path("/data"))
    assert fetch.max_files == 3
    assert fetch.deadline_seconds == transfers.DEFAULT_DEADLINE_SECONDS


def test_an_unreadable_last_checked_makes_the_check_due() -> None:
    now = datetime.datetime(2026, 11, 26, 12, tzinfo=datetime.UTC)

    assert controller.is_due({"lastChecked": "yesterday"}, {}, now)
    assert controller.is_due({"lastChecked": "2026-11-26T11:00:00"}, {"recheckInterval": "1h"}, now)
