"""Checks of the ``images`` requirement block: registries, digests, signatures, attestations."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from modelshield.api.v1alpha1.common import Severity
from modelshield.engine import compiling, facts, references, workloads
from modelshield.engine.decisions import Code

#: A violation without its policy: (code, path, message). The evaluator adds the policy.
Finding = tuple[Code, str, str]

_SIGN = "sign it with the key of one of: {signers} (cosign sign --key ...)"
_ONLY_TRUSTED = (
    "only signatures by one of: {signers} are accepted; sign it with one of their keys "
    "(cosign sign --key ...)"
)
#: The image was not checked at all: say so, so that nobody re-signs a good image.
_NOT_CHECKED = (
    "this is not a verdict on the image: retry, and if it persists check the network "
    "access of the modelshield webhook (or operator) to the registry"
)
_READ_PULL_SECRETS = (
    "a private registry needs the pod's imagePullSecrets and the webhook's "
    "--read-pull-secrets (chart: webhook.readPullSecrets)"
)

#: How each failed verification is reported: (code, problem, remedy). The remedy may name
#: the trusted signers as ``{signers}``. Every Outcome but VERIFIED has an entry.
_FAILED_OUTCOMES = {
    facts.Outcome.NO_SIGNATURE: (Code.IMAGE_UNSIGNED, "has no signature", _SIGN),
    facts.Outcome.SIGNATURE_MISMATCH: (
        Code.IMAGE_SIGNATURE_INVALID,
        "has a signature that does not verify",
        "it is signed, but not verifiably by a trusted signer: sign it with the key of one of: "
        "{signers} (cosign sign --key ...), or check that the policy holds their current keys",
    ),
    facts.Outcome.DIGEST_MISMATCH: (
        Code.IMAGE_SIGNATURE_INVALID,
        "has a signature made for another image digest",
        "the signature is for another digest: sign the digest you deploy with the key of one "
        "of: {signers} (cosign sign --key ... NAME@sha256:DIGEST), or deploy the signed digest",
    ),
    facts.Outcome.SIGNER_UNTRUSTED: (
        Code.IMAGE_SIGNER_UNTRUSTED,
        "is signed, but by no trusted signer",
        _ONLY_TRUSTED,
    ),
    facts.Outcome.TIMED_OUT: (
        Code.IMAGE_VERIFICATION_FAILED,
        "could not be verified in time",
        _NOT_CHECKED,
    ),
    facts.Outcome.REGISTRY_UNREACHABLE: (
        Code.IMAGE_VERIFICATION_FAILED,
        "could not be verified: the registry is unreachable",
        _NOT_CHECKED,
    ),
    facts.Outcome.NOT_FOUND: (
        Code.IMAGE_VERIFICATION_FAILED,
        "was not found in its registry",
        f"check the image reference (registry, repository, tag or digest); {_READ_PULL_SECRETS}",
    ),
    facts.Outcome.ERROR: (
        Code.IMAGE_VERIFICATION_FAILED,
        "could not be verified",
        f"the image was not checked: fix what the reason names and retry; {_READ_PULL_SECRETS}",
    ),
}
#: Outcomes that say nothing about the image itself, only that it could not be looked at.
UNCHECKED_OUTCOMES = frozenset(
    {
        facts.Outcome.TIMED_OUT,
        facts.Outcome.REGISTRY_UNREACHABLE,
        facts.Outcome.NOT_FOUND,
        facts.Outcome.ERROR,
    }
)


def remedy(outcome: facts.Outcome, trusted: frozenset[str]) -> str:
    """What to do about an image whose verification ended with outcome, as denials say it.

    A VERIFIED outcome reaches a denial only when its signer is not trusted.
    """
    verified = outcome is facts.Outcome.VERIFIED
    template = _ONLY_TRUSTED if verified else _FAILED_OUTCOMES[outcome][2]
    return template.format(signers=_signers(trusted))


def normalized(reference: str) -> str:
    """The reference the container runtime pulls (``references.parse``: distribution's
    grammar, so ``Evil/server`` is the host ``Evil``); as written when the runtime would
    refuse it (it never runs)."""
    return references.normalized(reference) or reference


#: A reference pinned the way the container runtime accepts it: distribution's
#: ``name@algorithm:encoded`` with a digest algorithm the runtime knows and its full length
#: (containerd refuses ``@sha256:abc`` when it pulls, so it must not count as pinned here).
_PINNED = re.compile(r"[^@]+@(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})")


def is_pinned(image: str) -> bool:
    """Whether the image reference names a complete, well-formed digest."""
    return _PINNED.fullmatch(image) is not None


def _under(image: str, entry: str) -> bool:
    # An entry is a path prefix, never a string prefix: registry.example.com/ml admits
    # registry.example.com/ml/x and the repository itself (with a tag or digest), never
    # registry.example.com/ml-evil/x. A bare host admits only paths below it, so
    # registry.example.com never admits registry.example.com:5000 (another registry).
    if entry.endswith("/"):
        return image.startswith(entry)
    if not image.startswith(entry):
        return False
    rest = image[len(entry) :]
    if rest == "" or rest[0] == "/":
        return True
    # A tag or digest of the repository itself, never a path disguised behind a colon.
    return "/" in entry and rest[0] in ":@" and "/" not in rest


def allows_registry(requirement: compiling.CompiledImages, image: str) -> bool:
    """Whether the requirement's ``allowedRegistries`` (none: any) admit the image."""
    entries = requirement.allowed_registries
    if not entries:
        return True
    # Only the reference the runtime pulls counts: `myregistry/ml/server` as written starts
    # with `myregistry/`, but the runtime pulls docker.io/myregistry/ml/server.
    full = normalized(image)
    return any(_under(full, entry) for entry in entries)


def _signers(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def _what(container: workloads.Container) -> str:
    return f"container {container.name!r} image {container.image!r}"


def check_container(
    container: workloads.Container,
    requirement: compiling.CompiledImages,
    source: facts.FactSource,
    now: datetime.datetime,
) -> Iterator[Finding]:
    """Every way the container's image fails the requirement."""
    image = container.image
    path = f"{container.path}.image"
    prefixes = requirement.allowed_registries
    registry_allowed = allows_registry(requirement, image)
    if not registry_allowed:
        yield (
            Code.IMAGE_REGISTRY_NOT_ALLOWED,
            path,
            f"{_what(container)} is not from an allowed registry; use one of: {', '.join(prefixes)}",
        )
    if requirement.require_digest and not is_pinned(image):
        yield (
            Code.IMAGE_NOT_PINNED,
            path,
            f"{_what(container)} is not pinned by digest; refer to it as name@sha256:<digest>",
        )
    if not requirement.needs_verification:
        return
    found = source.image(image, requirement.key)
    if found is None and not registry_allowed:
        # Not verified on purpose (see evaluating.image_requests): the registry finding
        # above already fails the requirement, and nothing was fetched from that host.
        return
    if found is None:
        yield (
            Code.IMAGE_NOT_VERIFIED,
            path,
            f"{_what(container)} has not been verified (no verification result is available); "
            "retry shortly, and check the webhook's connection to the registry",
        )
        return
    if requirement.signer_names:
        yield from _check_signature(container, path, found.signature, requirement.signer_names)
    for attestation in requirement.attestations:
        yield from _check_attestation(container, path, found, attestation, now)


def _check_signature(
    container: workloads.Container,
    path: str,
    signature: facts.SignatureFact,
    trusted: frozenset[str],
) -> Iterator[Finding]:
    if signature.outcome is facts.Outcome.VERIFIED and signature.signer in trusted:
        return
    if signature.outcome is facts.Outcome.VERIFIED:
        code, problem = (
            Code.IMAGE_SIGNER_UNTRUSTED,
            f"is signed by {signature.signer!r}, not a trusted signer",
        )
    else:
        code, problem, _ = _FAILED_OUTCOMES[signature.outcome]
    detail = f" ({signature.detail})" if signature.detail else ""
    yield (
        code,
        path,
        f"{_what(container)} {problem}{detail}; {remedy(signature.outcome, trusted)}",
    )


def _check_attestation(
    container: workloads.Container,
    path: str,
    found: facts.ImageFacts,
    requirement: compiling.CompiledAttestation,
    now: datetime.datetime,
) -> Iterator[Finding]:
    candidates = [
        a
        for a in found.attestations
        if a.predicate_type == requirement.predicate_type and a.signer in requirement.signer_names
    ]
    if not candidates:
        reason = ""
        action = "attach one with cosign attest"
        if found.attestation_failure is not None:
            failure = found.attestation_failure
            reason = f" ({failure.outcome.value}{': ' + failure.detail if failure.detail else ''})"
            if failure.outcome in UNCHECKED_OUTCOMES:
                # The attestations could not be looked at: attaching another would not help.
                action = remedy(failure.outcome, requirement.signer_names)
        yield (
            Code.ATTESTATION_MISSING,
            path,
            f"{_what(container)} has no {requirement.name!r} attestation of type "
            f"{requirement.predicate_type} signed by one of: {_signers(requirement.signer_names)}{reason}; "
            f"{action}",
        )
        return
    newest = max(candidates, key=_issued_at)
    if requirement.max_age is not None and now - newest.issued_at > requirement.max_age:
        age = now - newest.issued_at
        yield (
            Code.ATTESTATION_TOO_OLD,
            path,
            f"{_what(container)}: the newest {requirement.name!r} attestation is {_hours(age)} old, "
            f"older than the {_hours(requirement.max_age)} allowed; scan the image again and re-attest",
        )
    if requirement.block_at_or_above is not None:
        yield from _check_vulnerabilities(container, path, newest, requirement)


def _check_vulnerabilities(
    container: workloads.Container,
    path: str,
    attestation: facts.AttestationFact,
    requirement: compiling.CompiledAttestation,
) -> Iterator[Finding]:
    threshold = requirement.block_at_or_above
    assert threshold is not None
    if attestation.vulnerabilities is None:
        yield (
            Code.ATTESTATION_MISSING,
            path,
            f"{_what(container)}: the {requirement.name!r} attestation carries no vulnerability "
            "summary; attest a vulnerability scan (cosign attest --type vuln)",
        )
        return
    blocking = {
        severity: count
        for severity, count in attestation.vulnerabilities.items()
        if severity.rank >= threshold.rank and count > 0
    }
    if blocking:
        listed = ", ".join(
            f"{count} {severity.value}"
            for severity, count in sorted(blocking.items(), key=_severity_order, reverse=True)
        )
        yield (
            Code.ATTESTATION_VULNERABILITIES,
            path,
            f"{_what(container)} has vulnerabilities at or above {threshold.value}: {listed}; "
            "rebuild it on patched dependencies and attest a new scan",
        )


def _issued_at(attestation: facts.AttestationFact) -> datetime.datetime:
    return attestation.issued_at


def _severity_order(item: tuple[Severity, int]) -> int:
    return item[0].rank


def _hours(delta: datetime.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f}h" if hours >= 1 else f"{delta.total_seconds():.0f}s"


def digest_patch(
    container: workloads.Container, found: facts.ImageFacts | None
) -> dict[str, str] | None:
    """A JSONPatch that pins a verified image's tag to the digest that was verified."""
    if found is None or found.digest is None or "@" in container.image or container.borrowed:
        return None
    if found.signature.outcome is not facts.Outcome.VERIFIED:
        return None
    pointer = "/" + container.path.replace(".", "/").replace("[", "/").replace("]", "")
    return {
        "op": "replace",
        "path": f"{pointer}/image",
        "value": f"{container.image}@{found.digest}",
    }
