"""Signing a model directory in the OpenSSF model-signing format (model_signing library)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from model_signing import hashing as ms_hashing
from model_signing import signing as ms_signing

from modelshield.modelartifacts import hashing


@dataclass(frozen=True)
class SignedModel:
    """What signing produced: where the bundle is and the manifest's root digest."""

    signature_path: pathlib.Path
    digest: str


def _signature_path(model_dir: pathlib.Path, signature: pathlib.Path | None) -> pathlib.Path:
    return signature if signature is not None else model_dir / hashing.DEFAULT_SIGNATURE_NAME


def _ignored(model_dir: pathlib.Path, signature_path: pathlib.Path) -> list[str]:
    # The bundle lives inside the model it signs; it must not hash itself.
    try:
        return [signature_path.resolve().relative_to(model_dir.resolve()).as_posix()]
    except ValueError:
        return []


def sign_with_key(
    model_dir: pathlib.Path,
    private_key: pathlib.Path,
    *,
    signature: pathlib.Path | None = None,
    password: str | None = None,
    progress: hashing.ProgressCallback | None = None,
    shard_size: int | None = None,
) -> SignedModel:
    """Sign with an elliptic-curve private key (PEM); return the bundle path and digest."""
    signature_path = _signature_path(model_dir, signature)
    config = hashing.configure(
        progress=progress, shard_size=shard_size, ignore=_ignored(model_dir, signature_path)
    )
    return _sign(
        model_dir,
        signature_path,
        config,
        _new_config().use_elliptic_key_signer(private_key=private_key, password=password),
    )


def sign_with_certificate(
    model_dir: pathlib.Path,
    private_key: pathlib.Path,
    certificate: pathlib.Path,
    chain: Sequence[pathlib.Path],
    *,
    signature: pathlib.Path | None = None,
    progress: hashing.ProgressCallback | None = None,
) -> SignedModel:
    """Sign with a private key and its signing certificate plus the chain up to a root."""
    signature_path = _signature_path(model_dir, signature)
    config = hashing.configure(progress=progress, ignore=_ignored(model_dir, signature_path))
    return _sign(
        model_dir,
        signature_path,
        config,
        _new_config().use_certificate_signer(
            private_key=private_key, signing_certificate=certificate, certificate_chain=chain
        ),
    )


def _new_config() -> ms_signing.Config:
    config: ms_signing.Config = ms_signing.Config()  # type: ignore[no-untyped-call]
    return config


def _sign(
    model_dir: pathlib.Path,
    signature_path: pathlib.Path,
    hashing_config: hashing.ProgressConfig,
    signing_config: ms_signing.Config,
) -> SignedModel:
    hashing_config.set_total(hashing.model_size(model_dir, _ignored(model_dir, signature_path)))
    # Hash once, compute the digest from the same manifest that gets signed.
    manifest = hashing_config.hash(model_dir)
    signing_config.set_hashing_config(cast(ms_hashing.Config, _FixedManifest(manifest)))
    signing_config.sign(model_dir, signature_path)
    return SignedModel(signature_path=signature_path, digest=hashing.root_digest(manifest))


class _FixedManifest:
    """A hashing configuration that returns a manifest already computed (no second pass)."""

    def __init__(self, manifest: object) -> None:
        self._manifest = manifest

    def hash(self, model_path: object, **_: object) -> object:
        return self._manifest
