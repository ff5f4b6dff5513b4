"""Validation of modelshield's own custom resources, with the same pydantic models as the CRDs.

The CRD schema already rejects most mistakes; this adds what a schema cannot say: that
signer and attestation names are unique (reports and attestation requirements refer to
signers by name), that an empty allowed-registry prefix would allow every registry,
that a cluster policy has no namespace to take a Secret from, that digest pinning needs
a signer (it pins to the digest whose signature verified) and that every attestation
has someone allowed to sign it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.api.v1alpha1.common import ApiModel
from modelshield_webhooks import contexts, responses, reviews

_logger = logging.getLogger(__name__)

ENDPOINT = "validate-resources"

_MODELS: dict[str, type[ApiModel]] = {
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
    return found


def problems_of(obj: Mapping[str, Any]) -> list[Problem]:
    """Every problem with one modelshield object; empty when it is valid."""
    kind = obj.get("kind")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
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


def _answer(request: reviews.Request) -> responses.ReviewResponse:
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return responses.allow(request.uid)
    old = request.old_object
    if (
        request.operation == "UPDATE"
        and old is not None
        and old.get("spec") == request.object.get("spec")
    ):
        # Labels, annotations and finalizers (the operator's bookkeeping) may change on an
        # object that a newer rule would reject; only a spec change is judged again.
        return responses.allow(request.uid)
    found = problems_of(request.object)
    if not found:
        return responses.allow(request.uid)
    where = f"{request.namespace}/" if request.namespace else ""
    lines = "\n".join(f"{path}: {problem}" for path, problem in found)
    return responses.deny(
        request.uid,
        f"{request.kind} {where}{request.name} is not valid:\n{lines}",
        code=422,
        reason="Invalid",
    )


async def review(body: bytes, context: contexts.AdmissionContext) -> responses.ReviewResponse:
    """Answer one AdmissionReview of a modelshield custom resource; never raises."""
    started = time.perf_counter()
    kind = uid = operation = ""
    enforcement = "error"
    try:
        request = reviews.decode(body)
        kind, uid, operation = request.kind, request.uid, request.operation
        response = _answer(request)
        enforcement = "none" if response["response"]["allowed"] else "invalid"
    except reviews.MalformedReviewError as error:
        _logger.warning("malformed AdmissionReview (uid %r): %s", error.uid, error.problem)
        context.metrics.failures.labels("MalformedReview").inc()
        response = responses.malformed(error)
    except Exception:
        _logger.exception("error while validating a custom resource")
        context.metrics.failures.labels("InternalError").inc()
        response = responses.internal_error(uid, "an internal error while validating")
    decision = "allowed" if response["response"]["allowed"] else "denied"
    context.metrics.resource_reviews.labels(kind if kind in _MODELS else "other", decision).inc()
    context.metrics.review(
        kind, operation, decision, enforcement, time.perf_counter() - started, ENDPOINT
    )
    return response
