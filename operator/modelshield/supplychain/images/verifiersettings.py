"""One settings object for image verification, and the one place that builds from it.

The admission server and the operator take the same flags (``cli.verifierflags``) into
a ``VerifierSettings`` and build their verifier and their Secret access here, so that
the two processes cannot reach different verdicts on the same image because one of
them was started without a registry CA, a docker config or a trust root.
``modelshield verify-image`` builds its verifier here too.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import ssl

from modelshield.supplychain.images import (
    caching,
    credentials,
    gathering,
    imageverifier,
    registries,
    secretreading,
    signerkeys,
)


@dataclasses.dataclass(frozen=True)
class VerifierSettings:
    """How images are verified and which Secrets verification may read."""

    #: Registries (``host:port``) spoken to over plain HTTP (tests and labs only).
    insecure_registries: frozenset[str] = frozenset()
    #: A sigstore trusted_root.json for keyless signers (None: keyless signers fail).
    trust_root: str | None = None
    #: A docker config JSON file with registry credentials.
    docker_config: str | None = None
    #: A PEM CA bundle for registries, replacing the system store.
    registry_ca: str | None = None
    #: Seconds a verified image stays trusted before it is verified again.
    image_cache_ttl: float = caching.CacheSettings.positive_ttl
    #: Resolve ``secretRef`` signers by reading their Secret (get) in the namespace.
    read_signer_secrets: bool = False
    #: Use the pod's ``imagePullSecrets`` (get) for registry auth.
    read_pull_secrets: bool = False
    #: How long a Secret read is cached.
    secret_ttl_seconds: float = secretreading.DEFAULT_TTL_SECONDS

    def problems(self) -> list[str]:
        """What makes these settings unusable, as the flags name it; empty when none."""
        found = []
        if self.secret_ttl_seconds <= 0:
            found.append("--secret-ttl-seconds must be positive")
        return found


def registry_options(settings: VerifierSettings) -> registries.RegistryOptions:
    """How to reach registries: plain-HTTP hosts, static credentials, the CA bundle."""
    found: dict[str, credentials.Credential] = {}
    if settings.docker_config:
        found = credentials.from_docker_config(
            json.loads(pathlib.Path(settings.docker_config).read_text())
        )
    context = None
    if settings.registry_ca:
        context = ssl.create_default_context(cafile=settings.registry_ca)
    return registries.RegistryOptions(
        insecure_hosts=settings.insecure_registries, credentials=found, ssl_context=context
    )


def build_verifier(settings: VerifierSettings) -> imageverifier.ImageVerifier:
    """The process's image verifier (it owns the cache: build one per process).

    Raises OSError, ValueError or ssl.SSLError when a file the settings name is unreadable.
    """
    return imageverifier.ImageVerifier(
        cache=caching.VerificationCache(
            caching.CacheSettings(positive_ttl=settings.image_cache_ttl)
        ),
        trust_root=settings.trust_root,
        registry_options=registry_options(settings),
    )


def secret_access(
    settings: VerifierSettings, source: secretreading.SecretSource
) -> gathering.SecretAccess:
    """The Secret reads the settings allow, through one cache over the process's reader."""
    if not (settings.read_signer_secrets or settings.read_pull_secrets):
        return gathering.NO_SECRETS
    cached = secretreading.CachedSecrets(source, ttl_seconds=settings.secret_ttl_seconds)
    return gathering.SecretAccess(
        signer_keys=signerkeys.SignerKeys(cached) if settings.read_signer_secrets else None,
        pull_secrets=cached if settings.read_pull_secrets else None,
    )
