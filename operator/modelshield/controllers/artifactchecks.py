"""What one ModelArtifact check is, and what a worker process runs for it.

A ``Job`` carries everything the check needs and is picklable (our own data, never model
files); ``run_job`` fetches, verifies and scans in the worker process and returns the new
status. Any error is a verdict (NotReady with its reason), never an exception.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from modelshield.api.v1alpha1 import artifacts
from modelshield.api.v1alpha1.common import Severity
from modelshield.engine import redacting, s3endpoints
from modelshield.modelartifacts import fetching, modelverifying, reconciling, transfers
from modelshield.provenance import checking

LOGGER = logging.getLogger("modelshield.artifacts")
#: How often the timer looks whether an artifact's recheckInterval has passed.
TIMER_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the reconciler fetches and how many checks run at once."""

    fetch: transfers.Settings = dataclasses.field(default_factory=transfers.Settings)
    work_dir: pathlib.Path = pathlib.Path(tempfile.gettempdir()) / "modelshield-artifacts"
    max_concurrent: int = 2
    trust_config: pathlib.Path | None = None
    #: How often each artifact's timer looks whether a re-check is due.
    timer_seconds: float = TIMER_SECONDS

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] = os.environ, arguments: Any = None
    ) -> Settings:
        """Settings from MODELSHIELD_* (and the AWS_* variables fetching reads).

        The operator's flags (``--file-root``, ``--artifact-max-bytes``,
        ``--artifact-max-files``, ``--artifact-deadline-seconds``, ``--s3-endpoint``),
        when given, win; ``--s3-endpoint`` in the form admission compares
        (``s3endpoints.ModelStore``), so both processes mean the same server.
        """
        trust = environ.get("MODELSHIELD_MODEL_TRUST_CONFIG")
        fetch = transfers.Settings.from_environment(environ)
        store = s3endpoints.ModelStore.configured(getattr(arguments, "s3_endpoint", None))
        flags: dict[str, Any] = {
            "file_roots": getattr(arguments, "file_root", None),
            "max_bytes": getattr(arguments, "artifact_max_bytes", None),
            "max_files": getattr(arguments, "artifact_max_files", None),
            "deadline_seconds": getattr(arguments, "artifact_deadline_seconds", None),
            "s3_endpoint": store.s3_endpoint,
        }
        if flags["file_roots"] is not None:
            flags["file_roots"] = tuple(pathlib.Path(root) for root in flags["file_roots"])
        fetch = dataclasses.replace(fetch, **{k: v for k, v in flags.items() if v is not None})
        return cls(
            fetch=fetch,
            work_dir=pathlib.Path(environ.get("MODELSHIELD_ARTIFACT_WORK_DIR", str(cls.work_dir))),
            max_concurrent=int(environ.get("MODELSHIELD_ARTIFACT_CONCURRENCY", "2")),
            trust_config=pathlib.Path(trust) if trust else None,
        )


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a worker process needs; picklable (our own data, never model files)."""

    uid: str
    spec: artifacts.ModelArtifactSpec
    generation: int
    previous: artifacts.ModelArtifactStatus | None
    signers: tuple[modelverifying.TrustedSigner, ...]
    threshold: Severity
    settings: Settings
    #: The artifact's namespace: a pvc:// claim is looked for there only.
    namespace: str = ""
    #: Training provenance to check (models.provenance of a governing policy), or None.
    provenance: checking.Request | None = None


def run_job(job: Job) -> reconciling.Verdict:
    """Fetch, verify and scan one artifact (runs in a worker process).

    Any error is a verdict, never an exception: an exception would leave the old status
    (perhaps Ready) in place while kopf retries, so a model swapped together with
    something that makes the check crash would stay Ready for good.
    """
    now = datetime.datetime.now(datetime.UTC)
    try:
        return _checked(job, now)
    except transfers.FetchError as failure:
        message = redacting.redact(f"{failure.reason}: {failure.message}")
        reason = reconciling.FETCH_FAILED
    except Exception as error:
        LOGGER.warning("artifact %s: check failed", job.uid, exc_info=True)
        message = redacting.redact(f"the check failed: {type(error).__name__}: {error}")
        reason = reconciling.CHECK_FAILED
    return reconciling.failed(job.generation, job.previous, now=now, reason=reason, message=message)


def failed_verdict(job: Job, error: BaseException) -> reconciling.Verdict:
    """The verdict of a check whose worker could not answer (crashed, timed out)."""
    message = redacting.redact(f"the check failed: {type(error).__name__}: {error}")
    return reconciling.failed(
        job.generation,
        job.previous,
        now=datetime.datetime.now(datetime.UTC),
        reason=reconciling.CHECK_FAILED,
        message=message,
    )


def _checked(job: Job, now: datetime.datetime) -> reconciling.Verdict:
    scratch = job.settings.work_dir / f"{job.uid}-{os.getpid()}"
    fetched: fetching.FetchedModel | None = None
    error: str | None = None
    try:
        try:
            fetched = fetching.fetch(job.spec.uri, scratch, job.settings.fetch, job.namespace)
        except transfers.FetchError as failure:
            error = f"{failure.reason}: {failure.message}"
        signature = None
        if job.spec.signature.uri and fetched is not None:
            signature = scratch.with_name(scratch.name + ".sig")
            try:
                signature = fetching.fetch_file(
                    job.spec.signature.uri, signature, job.settings.fetch, job.namespace
                )
            except transfers.FetchError as failure:
                # Verification then reports the bundle as missing, with this in the log.
                LOGGER.warning(
                    "signature %s: %s",
                    redacting.redact(job.spec.signature.uri),
                    redacting.redact(str(failure)),
                )
        verdict = reconciling.reconcile(
            job.spec,
            job.generation,
            fetched.directory if fetched else None,
            job.signers,
            job.previous,
            now=now,
            block_at_or_above=job.threshold,
            fetch_error=redacting.redact(error) if error else None,
            signature_path=signature,
        )
        if job.provenance is None or fetched is None:
            return verdict
        # Issue 16: the training provenance, bound to the digest just verified.
        result = checking.check(
            job.provenance,
            verdict,
            fetched.directory,
            scratch.with_name(scratch.name + ".provenance"),
            job.settings.fetch,
            job.namespace,
        )
        return checking.attach(
            verdict, result, generation=job.generation, previous=job.previous, now=now
        )
    finally:
        if fetched is None or fetched.copied:
            shutil.rmtree(scratch, ignore_errors=True)
        scratch.with_name(scratch.name + ".sig").unlink(missing_ok=True)
