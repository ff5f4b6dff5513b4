"""The image-verification flags of ``modelshield webhook`` and ``modelshield operator``.

Both commands add them here and read them into one ``VerifierSettings``, from which
``supplychain.images.verifiersettings`` builds each process's verifier: a flag given to
one process can be given to the other, and means the same there.
"""

from __future__ import annotations

import argparse

from modelshield.supplychain.images import caching, secretreading, verifiersettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that say how images are verified and which Secrets may be read."""
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="registry spoken to over plain HTTP (tests and labs only); repeatable",
    )
    parser.add_argument(
        "--trust-root", default=None, help="sigstore trusted_root.json for keyless signers"
    )
    parser.add_argument(
        "--docker-config",
        help='docker config JSON ({"auths": ...}) with registry credentials for verification',
    )
    parser.add_argument(
        "--registry-ca", help="PEM CA bundle for registries (replaces the system store)"
    )
    parser.add_argument(
        "--image-cache-ttl",
        type=float,
        default=caching.CacheSettings.positive_ttl,
        help="seconds a verified image stays trusted before it is verified again",
    )
    parser.add_argument(
        "--read-signer-secrets",
        action="store_true",
        help="resolve secretRef image/attestation signers by reading the Secret (get) in the "
        "workload's namespace, which is the policy's; off: such signers fail to verify",
    )
    parser.add_argument(
        "--read-pull-secrets",
        action="store_true",
        help="read the pod's imagePullSecrets (get) for registry auth on cold verifications",
    )
    parser.add_argument(
        "--secret-ttl-seconds",
        type=float,
        default=secretreading.DEFAULT_TTL_SECONDS,
        help="how long a Secret read is cached (refreshed in the background before then)",
    )


def settings_from(arguments: argparse.Namespace) -> verifiersettings.VerifierSettings:
    """The settings the flags added by ``add_arguments`` give."""
    return verifiersettings.VerifierSettings(
        insecure_registries=frozenset(arguments.insecure_registry),
        trust_root=arguments.trust_root,
        docker_config=arguments.docker_config,
        registry_ca=arguments.registry_ca,
        image_cache_ttl=arguments.image_cache_ttl,
        read_signer_secrets=arguments.read_signer_secrets,
        read_pull_secrets=arguments.read_pull_secrets,
        secret_ttl_seconds=arguments.secret_ttl_seconds,
    )
