"""Image facts for one namespace, gathered within one deadline: Secrets first, then the verifier.

The admission server (per review) and the operator (per queued verdict) gather facts the
same way, here: the ``secretRef`` signers' keys are put inline and the pod's
``imagePullSecrets`` read (each only when ``SecretAccess`` allows it), counting against
the deadline; the verifier then gets what is left, through ``verifiers.verify_within``.
A Secret read that does not finish in time leaves its signers unresolved: they fail to
verify (a verdict, not a hang). Secret values are never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.engine import compiling, facts
from modelshield.supplychain.images import secretreading, signerkeys, verifiers

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SecretAccess:
    """What verification may read from Secrets (each None: nothing, as by default)."""

    signer_keys: signerkeys.SignerKeys | None = None
    pull_secrets: secretreading.CachedSecrets | None = None

    def resolved_now(
        self, requirement: compiling.CompiledImages, namespace: str
    ) -> compiling.CompiledImages | None:
        """The requirement to verify, without I/O; None when a Secret must be read first."""
        if self.signer_keys is None:
            return requirement
        return self.signer_keys.resolved_now(requirement, namespace)

    def caches(self) -> list[secretreading.CachedSecrets]:
        """The Secret caches to keep fresh, each once."""
        found = [self.pull_secrets] if self.pull_secrets is not None else []
        if self.signer_keys is not None and self.signer_keys.secrets not in found:
            found.append(self.signer_keys.secrets)
        return found


NO_SECRETS = SecretAccess()


@dataclasses.dataclass(frozen=True)
class Request:
    """One image to verify against one requirement (as the engine knows it)."""

    reference: str
    requirement: compiling.CompiledImages
    #: The requirement with its Secrets' keys inline when known without I/O, else None.
    resolved: compiling.CompiledImages | None


@dataclasses.dataclass(frozen=True)
class Gathered:
    """The facts found, and the requirement they were verified against (keys inline)."""

    requirement: compiling.CompiledImages
    image: facts.ImageFacts


async def _read_secrets(
    requests: Sequence[Request],
    access: SecretAccess,
    namespace: str,
    pull_secret_names: Sequence[str],
) -> tuple[list[compiling.CompiledImages], list[Mapping[str, Any]]]:
    signer_keys = access.signer_keys

    async def requirement_for(request: Request) -> compiling.CompiledImages:
        if request.resolved is not None:
            return request.resolved
        if signer_keys is None:
            return request.requirement
        return await signer_keys.resolve(request.requirement, namespace)

    async def pull() -> list[Mapping[str, Any]]:
        cache = access.pull_secrets
        if cache is None or not pull_secret_names:
            return []
        found = await asyncio.gather(*(cache.get(namespace, name) for name in pull_secret_names))
        return [{"data": data} for data in found if data]

    requirements, pull_secrets = await asyncio.gather(
        asyncio.gather(*(requirement_for(request) for request in requests)), pull()
    )
    return list(requirements), pull_secrets


async def gather(
    verifier: verifiers.Verifier,
    requests: Sequence[Request],
    *,
    namespace: str,
    deadline_seconds: float,
    grace_seconds: float,
    access: SecretAccess = NO_SECRETS,
    pull_secret_names: Sequence[str] = (),
) -> list[Gathered]:
    """The facts of every request, verified concurrently; in the order of the requests.

    Waits at most ``deadline_seconds`` plus ``grace_seconds``, Secret reads included.
    """
    requirements = [request.resolved or request.requirement for request in requests]
    pull_secrets: list[Mapping[str, Any]] = []
    remaining = deadline_seconds
    reads_pull_secrets = access.pull_secrets is not None and bool(pull_secret_names)
    if reads_pull_secrets or any(request.resolved is None for request in requests):
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            requirements, pull_secrets = await asyncio.wait_for(
                _read_secrets(requests, access, namespace, pull_secret_names), deadline_seconds
            )
        except TimeoutError:
            pass  # the signers stay unresolved and fail to verify: denied, not hung
        except Exception:  # still reach a verdict (unresolved signers fail), never loop
            _logger.exception("reading the Secrets of a verification in %s failed", namespace)
        # Secret reads count against the same deadline (rounded down for readable
        # messages, never beyond the deadline).
        left = deadline_seconds - (loop.time() - started)
        remaining = max(0.0, math.floor(left * 100) / 100)
    found = await asyncio.gather(
        *(
            verifiers.verify_within(
                verifier,
                request.reference,
                requirement,
                deadline_seconds=remaining,
                grace_seconds=grace_seconds,
                pull_secrets=pull_secrets,
                namespace=namespace,
            )
            for request, requirement in zip(requests, requirements, strict=True)
        )
    )
    return [
        Gathered(requirement, result)
        for requirement, result in zip(requirements, found, strict=True)
    ]
