"""Validation of modelshield's own objects: the one place, used by every way in.

pydantic (the same models the CRDs are generated from) checks what the schema says; this
adds what a schema cannot say: that signer and attestation names are unique (reports and
attestation requirements refer to signers by name), that an empty allowed-registry prefix
would allow every registry, that a cluster policy has no namespace to take a Secret from,
that digest pinning needs a signer (it pins to the digest whose signature verified) and
that every attestation has someone allowed to sign it.

The resource webhook denies with these problems, ``modelshield test`` refuses the file
with them and the operator reports them on the policy's status, so a policy that passes
one of them passes all three. Each problem carries the field path.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.api.v1alpha1.common import ApiModel

MODELS: dict[str, type[ApiModel]] = {
    "ModelSecurityPolicy": policies.ModelSecurityPolicy,
    "ClusterModelSecurityPolicy": policies.ClusterModelSecurityPolicy,
    "ModelArtifact": artifacts.ModelArtifact,
}

#: (field path, problem)
Problem = tuple[str, str]


def _path(location: Sequence[int | str]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _duplicates(names: Sequence[str]) -> list[str]:
    return sorted(name for name, count in collections.Counter(names).items() if count > 1)


def _signer_problems(
    signers: Sequence[policies.Signer], path: str, *, cluster: bool
) -> Iterator[Problem]:
    for name in _duplicates([s.name for s in signers]):
        yield (f"{path}", f"signer name {name!r} is used twice; names must be unique")
    if cluster:
        for index, signer in enumerate(signers):
            if signer.secret_ref is not None:
                yield (
                    f"{path}[{index}].secretRef",
                    "a ClusterModelSecurityPolicy has no namespace to read a Secret from; "
                    "put the key inline in publicKey",
                )


def semantic_problems(policy: policies.PolicyRequirements, *, cluster: bool) -> list[Problem]:
    """What the schema cannot check about a policy's requirements."""
    found: list[Problem] = []
    images = policy.images
    if images is not None:
        for index, prefix in enumerate(images.allowed_registries):
            if not prefix.strip():
                found.append(
                    (
                        f"spec.images.allowedRegistries[{index}]",
                        "an empty prefix allows every registry; remove it (an empty list "
                        "already means any registry)",
                    )
                )
        found.extend(_signer_problems(images.signers, "spec.images.signers", cluster=cluster))
        for name in _duplicates([a.name for a in images.attestations]):
            found.append(("spec.images.attestations", f"attestation name {name!r} is used twice"))
        for index, attestation in enumerate(images.attestations):
            where = f"spec.images.attestations[{index}]"
            found.extend(_signer_problems(attestation.signers, f"{where}.signers", cluster=cluster))
            if not attestation.signers and not images.signers:
                found.append(
                    (
                        f"{where}.signers",
                        "no one may sign this attestation: list signers here or in "
                        "spec.images.signers",
                    )
                )
        if images.mutate_to_digest and not images.signers:
            found.append(
                (
                    "spec.images.mutateToDigest",
                    "pins tags to the digest whose signature verified, so it needs "
                    "spec.images.signers",
                )
            )
    models = policy.models
    if models is not None:
        found.extend(_signer_problems(models.signers, "spec.models.signers", cluster=cluster))
        if models.provenance is not None:
            for field, signers in (
                ("trustedBuilders", models.provenance.trusted_builders),
                ("datasetSigners", models.provenance.dataset_signers),
            ):
                where = f"spec.models.provenance.{field}"
                found.extend(_signer_problems(signers, where, cluster=cluster))
    if (
        policy.api is not None
        and policy.api.requests.match_reference_profile
        and (policy.monitoring is None or policy.monitoring.drift is None)
    ):
        found.append(
            (
                "spec.api.requests.matchReferenceProfile",
                "needs the reference profile of a monitoring.drift block in the same policy",
            )
        )
    for field, needs_profile in (
        ("outliers", policy.api is not None and policy.api.outliers is not None),
        ("probing", policy.api is not None and policy.api.probing is not None),
    ):
        if needs_profile and (policy.monitoring is None or policy.monitoring.drift is None):
            found.append(
                (
                    f"spec.api.{field}",
                    "needs the reference profile of a monitoring.drift block in the same policy",
                )
            )
    authentication = policy.api.authentication if policy.api is not None else None
    if cluster and authentication is not None and authentication.api_keys is not None:
        found.append(
            (
                "spec.api.authentication.apiKeys",
                "a ClusterModelSecurityPolicy has no namespace to read a Secret from; "
                "name API keys in a namespaced ModelSecurityPolicy",
            )
        )
    return found


def problems_of(obj: Mapping[str, Any]) -> list[Problem]:
    """Every problem with one modelshield object; empty when it is valid."""
    kind = obj.get("kind")
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return [("kind", f"{kind!r} is not a modelshield kind")]
    try:
        # The status belongs to the operator and is written through the status subresource.
        parsed = model.model_validate({k: v for k, v in obj.items() if k != "status"})
    except pydantic.ValidationError as error:
        return [
            (_path(problem["loc"]) or "(root)", problem["msg"].removeprefix("Value error, "))
            for problem in error.errors()
        ]
    if isinstance(parsed, policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy):
        return semantic_problems(
            parsed.spec, cluster=isinstance(parsed, policies.ClusterModelSecurityPolicy)
        )
    return []
