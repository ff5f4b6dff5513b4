"""In-toto statements with a SLSA provenance v1 predicate: building one, reading one.

Built with in-toto-attestation's ``Statement`` and ``ResourceDescriptor`` (and validated
by it); read back strictly: the predicate must parse as SLSA provenance v1
(in-toto-attestation's protobuf), so a misspelt field is an error, not a silent gap.

Conventions this project reads and writes (docs/provenance.md):
- the subject is the model, its ``sha256`` digest the model-signing manifest's root digest
  (what ``status.verifiedDigest`` records);
- ``buildDefinition.resolvedDependencies``: the code is the entry with a ``gitCommit``
  digest (or annotation ``modelshield.dev/role: code``); every other entry is a training
  input ("dataset"), judged against the policy's allowed sources.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import resource_descriptor, statement

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({statement.STATEMENT_TYPE_URI, "https://in-toto.io/Statement/v0.1"})
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://modelshield.dev/training/v1"
ROLE_ANNOTATION = "modelshield.dev/role"
ROLE_DATASET, ROLE_CODE = "dataset", "code"


class StatementError(ValueError):
    """The payload is not an in-toto statement with a SLSA provenance v1 predicate."""


@dataclasses.dataclass(frozen=True)
class Input:
    """One resolved dependency: a dataset or the code."""

    name: str
    uri: str
    #: sha256:<hex> for datasets; the commit for code; empty when the statement gives none.
    digest: str


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What a statement says about how a model was made."""

    subjects: tuple[tuple[str, str], ...]  # (name, sha256:<hex>)
    builder_id: str
    source: str
    commit: str
    datasets: tuple[Input, ...]
    started: datetime.datetime | None
    finished: datetime.datetime | None

    def names_subject(self, digest: str) -> bool:
        """Whether one of the subjects is the model with this digest (sha256:<hex>)."""
        return any(subject_digest == digest for _, subject_digest in self.subjects)


def build(
    *,
    subject_name: str,
    subject_digest: str,
    builder_id: str,
    source: str,
    commit: str,
    datasets: Sequence[Input],
    started: datetime.datetime,
    finished: datetime.datetime,
    invocation_id: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The statement for a model, as the JSON object that goes into the DSSE payload."""
    dependencies = []
    if source:
        dependencies.append(
            resource_descriptor.ResourceDescriptor(
                name="source",
                uri=source,
                digest={"gitCommit": commit} if commit else None,
                annotations={ROLE_ANNOTATION: ROLE_CODE},
            ).pb
        )
    for dataset in datasets:
        algorithm, _, value = dataset.digest.partition(":")
        dependencies.append(
            resource_descriptor.ResourceDescriptor(
                name=dataset.name,
                uri=dataset.uri,
                digest={algorithm: value} if value else None,
                annotations={ROLE_ANNOTATION: ROLE_DATASET},
            ).pb
        )
    metadata: dict[str, Any] = {
        "startedOn": _timestamp(started),
        "finishedOn": _timestamp(finished),
    }
    if invocation_id:
        metadata["invocationId"] = invocation_id
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": dict(parameters or {"source": source, "commit": commit}),
            "resolvedDependencies": [json_format.MessageToDict(d) for d in dependencies],
        },
        "runDetails": {"builder": {"id": builder_id}, "metadata": metadata},
    }
    algorithm, _, value = subject_digest.partition(":")
    subject = resource_descriptor.ResourceDescriptor(name=subject_name, digest={algorithm: value})
    made = statement.Statement([subject.pb], SLSA_PROVENANCE_V1, predicate)
    made.validate()
    result: dict[str, Any] = json_format.MessageToDict(made.pb)
    return result


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: object, field: str) -> datetime.datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as error:
        raise StatementError(f"{field}: {value!r} is not an RFC 3339 time") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def parse(payload: bytes) -> Provenance:
    """Read a statement; raise StatementError when it is not SLSA provenance v1 for a subject."""
    try:
        document = json.loads(payload)
    except ValueError as error:
        raise StatementError(f"the payload is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise StatementError("the payload is not a JSON object")
    if document.get("_type") not in STATEMENT_TYPES:
        raise StatementError(f"_type {document.get('_type')!r} is not an in-toto statement")
    if document.get("predicateType") != SLSA_PROVENANCE_V1:
        raise StatementError(
            f"predicateType {document.get('predicateType')!r} is not {SLSA_PROVENANCE_V1}"
        )
    # Validated as a v1 statement whatever _type it spells (v0.1 has the same layout).
    try:
        parsed = json_format.ParseDict(
            {**document, "_type": statement.STATEMENT_TYPE_URI}, statement.Statement([], "", {}).pb
        )
        statement.Statement.copy_from_pb(parsed).validate()
        predicate = json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, KeyError, TypeError) as error:
        raise StatementError(f"not a valid SLSA provenance v1 statement: {error}") from error
    subjects = tuple(
        (s.name, f"sha256:{s.digest['sha256']}") for s in parsed.subject if "sha256" in s.digest
    )
    if not subjects:
        raise StatementError("no subject has a sha256 digest")
    source = commit = ""
    datasets = []
    for dependency in predicate.build_definition.resolved_dependencies:
        role = dependency.annotations.fields.get(ROLE_ANNOTATION)
        role_name = role.string_value if role is not None else ""
        if role_name == ROLE_CODE or (not role_name and "gitCommit" in dependency.digest):
            source, commit = dependency.uri, dependency.digest.get("gitCommit", "")
            continue
        digest = dependency.digest.get("sha256", "")
        datasets.append(
            Input(
                name=dependency.name,
                uri=dependency.uri or dependency.download_location,
                digest=f"sha256:{digest}" if digest else "",
            )
        )
    metadata = document["predicate"].get("runDetails", {}).get("metadata", {}) or {}
    return Provenance(
        subjects=subjects,
        builder_id=predicate.run_details.builder.id,
        source=source,
        commit=commit,
        datasets=tuple(datasets),
        started=_time(metadata.get("startedOn"), "runDetails.metadata.startedOn"),
        finished=_time(metadata.get("finishedOn"), "runDetails.metadata.finishedOn"),
    )
