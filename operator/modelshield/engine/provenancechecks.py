"""Checks of ``models.provenance`` against the facts a ModelArtifact's status records.

Pure: the operator fetched and verified the statement (modelshield.provenance.checking)
and wrote what it names into the artifact's status; here each policy judges those facts
with its own trusted builders, dataset sources, dataset signers and maximum age. Dataset
records are looked up in the same fact source as models (informer caches at admission),
never fetched.
"""

from __future__ import annotations

import datetime
import functools
import re
import urllib.parse
from collections.abc import Iterator

from modelshield.engine import compiling, facts, modelsigners, redacting
from modelshield.engine.decisions import Code
from modelshield.engine.imagechecks import Finding

#: Reasons of the Provenance condition that mean "there is no usable statement".
_MISSING_REASONS = frozenset({"ProvenanceMissing", "ProvenanceInvalid", "ModelNotHashed"})
_CODE_OF_REASON = {
    "ProvenanceUntrustedBuilder": Code.PROVENANCE_UNTRUSTED_BUILDER,
    "ProvenanceSubjectMismatch": Code.PROVENANCE_SUBJECT_MISMATCH,
}
#: A path segment that could climb out of a prefix, an escape that could hide one, or a
#: part (query, fragment, user information, backslash, space) no prefix is meant to match.
_UNSAFE = re.compile(r"(^|/)\.{1,2}(/|$)|%|\\|\s|[?#@]")


class _Described:
    """The model as messages name it, formatted only when a message is made."""

    def __init__(self, artifact: facts.ArtifactFacts) -> None:
        self._artifact = artifact

    def __format__(self, spec: str) -> str:
        return f"model {self._artifact.name!r} ({redacting.redact(self._artifact.uri)})"


@functools.lru_cache(maxsize=4096)
def _split(uri: str) -> tuple[str, str] | None:
    """(scheme://authority lower-cased, path), or None for a URI no prefix may admit."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return None
    local = parts.scheme == "file" and uri.startswith("file:///")
    if not parts.scheme or not (parts.netloc or local) or _UNSAFE.search(uri.split("://", 1)[-1]):
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}", parts.path


def allows_source(prefixes: tuple[str, ...] | list[str], uri: str) -> bool:
    """Whether allowedDatasetSources (none: any) admit the dataset URI.

    Path prefixes, never string prefixes, as for image registries: s3://data/fraud admits
    s3://data/fraud and s3://data/fraud/..., never s3://data/fraud-evil/; with a trailing
    slash only what is below it; a bare scheme://host only that host.
    """
    if not prefixes:
        return True
    dataset = _split(uri)
    if dataset is None:
        return False
    for prefix in prefixes:
        allowed = _split(prefix)
        if allowed is None or allowed[0] != dataset[0]:
            continue
        path, under = dataset[1], allowed[1]
        if under in ("", "/") or (path == under and not under.endswith("/")):
            return True
        if path.startswith(under if under.endswith("/") else under + "/"):
            return True
    return False


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def check_artifact(
    path: str,
    artifact: facts.ArtifactFacts,
    requirement: compiling.CompiledProvenance | None,
    source: facts.FactSource,
    namespace: str,
    now: datetime.datetime,
) -> Iterator[Finding]:
    """Every way the served artifact fails the policy's provenance requirement."""
    what = _Described(artifact)
    if artifact.artifact_type != "Model":
        yield (
            Code.MODEL_IS_DATASET,
            path,
            f"{what} is a {artifact.artifact_type} record, not a model: a workload serves "
            "models only; name the ModelArtifact of the model trained on it",
        )
        return
    if requirement is None or not artifact.current:
        return  # not current: the model checks already say it has not been checked
    found = artifact.provenance
    if found is None or (not found.verified and found.reason in _MISSING_REASONS):
        if requirement.required or (found is not None and found.reason != "ProvenanceMissing"):
            if found is not None and found.message:
                why = f": {found.message}; trusted builders here: "
            else:
                why = "; attest it with `modelshield model attest` signed by one of: "
            yield (
                Code.PROVENANCE_MISSING,
                path,
                f"{what} has no verified training provenance{why}"
                f"{_names(requirement.builder_names)}",
            )
        return
    if not found.verified:
        code = _CODE_OF_REASON.get(found.reason, Code.PROVENANCE_MISSING)
        yield (code, path, f"{what}: training provenance refused: {found.message}")
        return
    named = [s for s in requirement.builders if s.name == found.builder]
    if named and not any(
        modelsigners.matches(
            s, found.builder, found.builder_key, found.builder_issuer, found.builder_identity
        )
        for s in named
    ):
        # Same name, another key or identity: a builder another policy trusts by this name.
        if found.builder_issuer:
            signed = f"keyless as {found.builder_identity!r} ({found.builder_issuer})"
        else:
            signed = f"with the key {found.builder_key or '(unknown key)'}"
        yield (
            Code.PROVENANCE_UNTRUSTED_BUILDER,
            path,
            f"{what}: its training provenance is signed {signed} by a builder named "
            f"{found.builder!r} that is not this policy's key or keyless identity of that name",
        )
    elif found.builder not in requirement.builder_names:
        yield (
            Code.PROVENANCE_UNTRUSTED_BUILDER,
            path,
            f"{what}: its training provenance is signed by {found.builder!r}, not by one of: "
            f"{_names(requirement.builder_names)}",
        )
    limit = requirement.max_age_delta
    if limit is not None and (found.finished is None or now - found.finished > limit):
        when = found.finished.isoformat() if found.finished else "at a time it does not state"
        yield (
            Code.PROVENANCE_EXPIRED,
            path,
            f"{what} was trained {when}, longer ago than maxAge {requirement.max_age}; "
            "retrain it or raise maxAge",
        )
    yield from _datasets(path, what, found, requirement, source, namespace)


def _datasets(
    path: str,
    what: _Described,
    found: facts.ProvenanceFacts,
    requirement: compiling.CompiledProvenance,
    source: facts.FactSource,
    namespace: str,
) -> Iterator[Finding]:
    if found.datasets_truncated and (
        requirement.allowed_dataset_sources or requirement.require_signed_datasets
    ):
        yield (
            Code.DATASET_UNVERIFIED,
            path,
            f"{what}: its provenance names more datasets than the status can list; they "
            "cannot all be checked",
        )
    signers = requirement.dataset_signers
    for name, uri, digest in found.datasets:
        shown = f"dataset {name or uri!r} ({redacting.redact(uri)})"
        if not allows_source(requirement.allowed_dataset_sources, uri):
            yield (
                Code.DATASET_SOURCE_NOT_ALLOWED,
                path,
                f"{what} was trained on {shown}, outside allowedDatasetSources: "
                f"{', '.join(requirement.allowed_dataset_sources)}",
            )
            continue
        if not requirement.require_signed_datasets:
            continue
        record = source.artifact_by_uri(namespace, uri)
        problem = _record_problem(record, digest, signers)
        if problem is not None:
            yield (
                Code.DATASET_UNVERIFIED,
                path,
                f"{what} was trained on {shown}, which {problem}; record it as a ModelArtifact "
                f"of type Dataset with spec.uri {uri!r}, signed by one of: "
                f"{_names(requirement.dataset_signer_names)}",
            )


def _record_problem(
    record: facts.ArtifactFacts | None,
    digest: str,
    signers: tuple[modelsigners.CompiledSigner, ...],
) -> str | None:
    """What completes "trained on <dataset>, which ..."; None when the record vouches for it."""
    if record is None or record.artifact_type != "Dataset":
        return "has no Dataset record in this namespace"
    if not (record.current and record.verified):
        return "has a Dataset record without a verified signature"
    if not digest or record.verified_digest != digest:
        used = digest or "a digest the statement does not give"
        return (
            f"has a Dataset record verified as {record.verified_digest}, while training used {used}"
        )
    if not modelsigners.trusted_by(signers, record):
        # By key or identity: another policy may name its own key like a dataset signer.
        return f"{modelsigners.untrusted_reason(signers, record)}, not by a dataset signer"
    return None
