"""What the operator establishes about a model's training provenance (no Kubernetes).

``fetch`` reads the provenance file (any scheme the model fetcher supports, oci:// as a
one-file artifact), ``judge`` verifies it: a DSSE envelope signed by one of the governing
policies' trusted builders, holding a SLSA provenance v1 statement whose subject is the
model's verified digest. ``attach`` adds the ``Provenance`` condition and
``status.provenance`` to the artifact's new status. Which builder, source and datasets a
policy accepts is judged at admission from that status (engine.provenancechecks).
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import shutil
from collections.abc import Iterable, Mapping

from modelshield.api.v1alpha1 import artifacts, common, policies, provenance
from modelshield.api.v1alpha1.common import ConditionStatus
from modelshield.engine import redacting
from modelshield.modelartifacts import fetching, reconciling, transfers
from modelshield.provenance import envelopes, keyless, statements

# Reasons of the Provenance condition (stable; admission maps them to violation codes).
VERIFIED = "ProvenanceVerified"
MISSING = "ProvenanceMissing"
INVALID = "ProvenanceInvalid"
UNTRUSTED_BUILDER = "ProvenanceUntrustedBuilder"
SUBJECT_MISMATCH = "ProvenanceSubjectMismatch"
MODEL_UNHASHED = "ModelNotHashed"


@dataclasses.dataclass(frozen=True)
class Request:
    """What a worker needs to check provenance; picklable."""

    uri: str | None
    builders: tuple[envelopes.TrustedKey, ...]
    #: Builders the policies name that this check cannot use (unread Secrets).
    unusable: tuple[str, ...] = ()
    #: Keyless builders, verified against ``trust_root`` (none: they verify nothing).
    keyless: tuple[keyless.KeylessBuilder, ...] = ()
    trust_root: pathlib.Path | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """The Provenance condition and, when the statement verified, what it says."""

    status: ConditionStatus
    reason: str
    message: str
    facts: provenance.ProvenanceStatus | None = None


def for_artifact(
    spec: artifacts.ModelArtifactSpec, requirements: Iterable[policies.ModelRequirements]
) -> list[policies.ModelRequirements]:
    """The requirements an artifact is verified against: a Dataset's signers are datasetSigners.

    A model is checked against the policies' models blocks as they are. A dataset record is
    checked the same way (fetch, model-signing verification, scan) against the policies'
    ``models.provenance.datasetSigners`` instead, and never for provenance of its own.
    """
    requirements = list(requirements)
    if spec.type is not provenance.ArtifactType.DATASET:
        return requirements
    return [
        policies.ModelRequirements(
            signers=r.provenance.dataset_signers,
            require_scan=r.require_scan,
            block_findings_at_or_above=r.block_findings_at_or_above,
        )
        for r in requirements
        if r.provenance is not None
    ]


def builder_secret_refs(
    requirements: Iterable[policies.ModelRequirements],
) -> list[tuple[str, str]]:
    """The (Secret name, key) of each ``secretRef`` trusted builder: the keys ``request`` reads."""
    return [
        (builder.secret_ref.name, builder.secret_ref.key)
        for requirement in requirements
        if requirement.provenance is not None
        for builder in requirement.provenance.trusted_builders
        if builder.secret_ref is not None
    ]


def request(
    spec: artifacts.ModelArtifactSpec,
    requirements: Iterable[policies.ModelRequirements],
    secret_keys: Mapping[tuple[str, str], bytes],
    trust_root: pathlib.Path | None = None,
) -> Request | None:
    """What to check for a model whose policies ask for provenance; None when none asks."""
    asking = [r.provenance for r in requirements if r.provenance is not None]
    if spec.type is provenance.ArtifactType.DATASET or not asking:
        return None
    keys: list[envelopes.TrustedKey] = []
    unusable: list[str] = []
    identities: list[keyless.KeylessBuilder] = []
    for block in asking:
        for builder in block.trusted_builders:
            if builder.keyless is not None:
                identity = keyless.KeylessBuilder(
                    builder.name,
                    builder.keyless.issuer,
                    builder.keyless.subject,
                    builder.keyless.subject_reg_exp,
                )
                if identity not in identities:
                    identities.append(identity)
                continue
            pem: bytes | None = None
            if builder.public_key is not None:
                pem = builder.public_key.encode()
            elif builder.secret_ref is not None:
                pem = secret_keys.get((builder.secret_ref.name, builder.secret_ref.key))
            key = envelopes.TrustedKey(builder.name, pem) if pem else None
            if key is None:
                unusable.append(builder.name)
            elif key not in keys:
                keys.append(key)
    return Request(
        uri=spec.provenance.uri or provenance.default_uri(spec.uri),
        builders=tuple(keys),
        unusable=tuple(sorted(set(unusable))),
        keyless=tuple(identities),
        trust_root=trust_root,
    )


def fetch(uri: str, scratch: pathlib.Path, settings: transfers.Settings, namespace: str) -> bytes:
    """The provenance file's bytes; raises transfers.FetchError (or OSError) when absent."""
    if uri.startswith("oci://"):
        # An OCI artifact holding the one provenance file (e.g. pushed with oras).
        fetched = fetching.fetch(uri, scratch, settings, namespace)
        try:
            files = sorted(p for p in fetched.directory.rglob("*") if p.is_file())
            if len(files) != 1:
                raise OSError(f"{uri} holds {len(files)} files, not one provenance file")
            return files[0].read_bytes()[: envelopes.MAX_FILE_BYTES + 1]
        finally:
            if fetched.copied:
                shutil.rmtree(scratch, ignore_errors=True)
    path = fetching.fetch_file(uri, scratch, settings, namespace)
    with path.open("rb") as stream:
        return stream.read(envelopes.MAX_FILE_BYTES + 1)


def judge(data: bytes, request: Request, model_digest: str | None) -> Result:
    """Verify the provenance file against the trusted builders and the model's digest."""
    signed = keyless.bundles(data)
    if signed:  # keyless: sigstore bundles, verified against the trust root
        outcome = keyless.verify(data, request.keyless, request.trust_root, statements.PAYLOAD_TYPE)
        verified, count, refused = outcome.verified, len(signed), outcome.refused
    else:
        try:
            found = envelopes.read(data)
        except envelopes.EnvelopeError as error:
            return Result(ConditionStatus.FALSE, INVALID, f"the provenance file: {error}")
        verified, count, refused = envelopes.verify(found, request.builders), len(found), []
    if not verified:
        names = [k.name for k in request.builders] + [k.name for k in request.keyless]
        trusted = ", ".join(names) or "none with a usable key"
        skipped = f" (not usable here: {', '.join(request.unusable)})" if request.unusable else ""
        why = f"; {'; '.join(refused[:3])}" if refused else ""
        return Result(
            ConditionStatus.FALSE,
            UNTRUSTED_BUILDER,
            f"no envelope of {count} carries a valid signature by a trusted builder "
            f"({trusted}){skipped}{why}",
        )
    if model_digest is None:
        return Result(ConditionStatus.FALSE, MODEL_UNHASHED, "the model's digest is not known")
    mismatched: list[str] = []
    for envelope in verified:
        try:
            said = statements.parse(envelope.payload)
        except statements.StatementError as error:
            return Result(ConditionStatus.FALSE, INVALID, f"signed by {envelope.builder}: {error}")
        if said.names_subject(model_digest):
            return Result(
                ConditionStatus.TRUE,
                VERIFIED,
                f"signed by {envelope.builder} for {model_digest}; trained from "
                f"{said.source or '?'}@{said.commit or '?'} on {len(said.datasets)} dataset(s)",
                _facts(envelope, said),
            )
        mismatched.extend(digest for _, digest in said.subjects)
    return Result(
        ConditionStatus.FALSE,
        SUBJECT_MISMATCH,
        f"the signed statement is for {', '.join(sorted(set(mismatched)))}, not for this "
        f"model's verified digest {model_digest} (another model or another version)",
    )


def _facts(
    envelope: envelopes.Verified, said: statements.Provenance
) -> provenance.ProvenanceStatus:
    listed = said.datasets[: provenance.MAX_DATASETS]
    return provenance.ProvenanceStatus(
        builder=envelope.builder,
        builder_key=envelope.key,
        builder_issuer=envelope.issuer[:1024],
        builder_identity=envelope.identity[:4096],
        builder_id=said.builder_id[:2048],
        source=said.source[:2048],
        commit=said.commit[:128],
        finished=said.finished or said.started,
        datasets=[
            provenance.DatasetRecord(name=d.name[:253], uri=d.uri[:2048], digest=d.digest[:80])
            for d in listed
        ],
        datasets_truncated=len(said.datasets) > len(listed),
    )


def attach(
    verdict: reconciling.Verdict,
    result: Result,
    *,
    generation: int,
    previous: artifacts.ModelArtifactStatus | None,
    now: datetime.datetime,
) -> reconciling.Verdict:
    """The verdict with the Provenance condition and status.provenance added."""
    old = next(
        (c for c in (previous.conditions if previous else []) if c.type == artifacts.PROVENANCE),
        None,
    )
    moved = old is None or old.status != result.status
    condition = common.Condition(
        type=artifacts.PROVENANCE,
        status=result.status,
        reason=result.reason,
        message=redacting.redact(result.message)[:32768],
        last_transition_time=now if moved or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    status = verdict.status.model_copy(
        update={
            "conditions": [*verdict.status.conditions, condition],
            "provenance": result.facts,
        }
    )
    changed = old is None or (old.status, old.reason) != (condition.status, condition.reason)
    transitions = (*verdict.transitions, condition) if changed else verdict.transitions
    return reconciling.Verdict(status, transitions)


def missing(uri: str | None, error: BaseException | None) -> Result:
    """The result when there is no provenance file to read."""
    if uri is None:
        return Result(
            ConditionStatus.FALSE,
            MISSING,
            "an oci:// model has no conventional provenance location: set spec.provenance.uri",
        )
    detail = f": {error}" if error is not None else ""
    return Result(
        ConditionStatus.FALSE,
        MISSING,
        f"no provenance at {redacting.redact(uri)}{detail}; write it with "
        "`modelshield model attest` (or cosign attest-blob) beside the model",
    )


def model_digest(
    status: artifacts.ModelArtifactStatus, model_dir: pathlib.Path | None
) -> str | None:
    """The digest the statement must name: the verified one, else the files' own hash."""
    if status.verified_digest is not None:
        return status.verified_digest
    if model_dir is None:
        return None
    from modelshield.modelartifacts import hashing

    return hashing.root_digest(hashing.configure().hash(model_dir))


def check(
    request: Request,
    verdict: reconciling.Verdict,
    model_dir: pathlib.Path | None,
    scratch: pathlib.Path,
    settings: transfers.Settings,
    namespace: str,
) -> Result:
    """Fetch and judge the provenance of a model whose check produced ``verdict``."""
    if request.uri is None:
        return missing(None, None)
    try:
        data = fetch(request.uri, scratch, settings, namespace)
    except (transfers.FetchError, OSError) as error:
        return missing(request.uri, error)
    finally:
        if scratch.is_file():
            scratch.unlink(missing_ok=True)
    return judge(data, request, model_digest(verdict.status, model_dir))
