"""Verifying a model directory against its model-signing bundle and a set of trusted signers.

The cryptography and the hashing are model_signing's. What this module adds: several
signers tried in turn (key rotation), the manifest's root digest, a clear error naming the
first file that does not match, an expected digest, a keyless subject regular expression,
and two checks model_signing leaves out (a certificate chain is required, so verification
never falls back to the public web CAs; an expired leaf certificate is refused).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import json
import pathlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from model_signing import verifying as ms_verifying

from modelshield.engine import keyids
from modelshield.modelartifacts import hashing

# Reasons, as the Verified condition spells them.
SIGNATURE_MISSING = "SignatureMissing"
SIGNATURE_INVALID = "SignatureInvalid"
CONTENT_MISMATCH = "ContentMismatch"
DIGEST_MISMATCH = "DigestMismatch"
NO_SIGNERS = "NoSigners"
UNVERIFIED_PATHS = "UnverifiedPaths"
EMPTY_MODEL = "EmptyModel"

#: Paths model-signing leaves out of every manifest by default: a runtime given a subPath
#: into one would read files nobody verified or scanned, so a model holding one is refused.
GIT_PATHS = frozenset({".git", ".github", ".gitattributes", ".gitignore"})


@dataclass(frozen=True)
class KeySigner:
    """A signer known by its public key (PEM); ``path`` when the PEM is already a file."""

    name: str
    public_key_pem: bytes
    path: pathlib.Path | None = None


@dataclass(frozen=True)
class CertificateSigner:
    """A signer whose certificate must chain to these certificates (PEM, roots included)."""

    name: str
    chain_pem: bytes
    path: pathlib.Path | None = None
    #: When set, the signing certificate must name exactly this subject (its RFC 4514
    #: distinguished name, or one of its subject alternative names): a CA that issues
    #: code-signing certificates to many teams otherwise vouches for all of them.
    subject: str | None = None


@dataclass(frozen=True)
class KeylessSigner:
    """A sigstore keyless identity, verified offline against a client trust configuration."""

    name: str
    issuer: str
    trust_config: pathlib.Path | None
    subject: str | None = None
    subject_regexp: str | None = None


TrustedSigner = KeySigner | CertificateSigner | KeylessSigner


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose files match a manifest signed by one of the trusted signers."""

    digest: str
    signer: str
    files: int
    #: What verified, so that a policy trusts its own signer, not a name another policy
    #: also uses: keyids.fingerprint of the key (of the trust anchor for a chain) ...
    key: str = ""
    #: ... or, keyless, the certificate's issuer and identity (SAN) that verified.
    issuer: str = ""
    identity: str = ""


@dataclass(frozen=True)
class _Identity:
    key: str = ""
    issuer: str = ""
    identity: str = ""


@dataclass
class VerificationError(Exception):
    """Verification failed; ``reason`` is a CamelCase code, ``message`` says what to look at."""

    reason: str
    message: str
    file: str | None = None
    attempts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Mismatch:
    extra: list[str]
    missing: list[str]
    changed: list[str]


class _Config(ms_verifying.Config):
    """model_signing's verification, keeping the two manifests when they differ."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.mismatch: _Mismatch | None = None

    def _get_manifest_diff(self, actual: Any, expected: Any) -> list[str]:
        actual_hashes = {rd.identifier: rd.digest for rd in actual.resource_descriptors()}
        expected_hashes = {rd.identifier: rd.digest for rd in expected.resource_descriptors()}
        self.mismatch = _Mismatch(
            extra=sorted(set(actual_hashes) - set(expected_hashes)),
            missing=sorted(set(expected_hashes) - set(actual_hashes)),
            changed=sorted(
                name
                for name in set(actual_hashes) & set(expected_hashes)
                if actual_hashes[name] != expected_hashes[name]
            ),
        )
        diffs: list[str] = super()._get_manifest_diff(actual, expected)
        return diffs


def read_bundle(signature_path: pathlib.Path) -> dict[str, Any]:
    """The bundle's JSON; raises VerificationError when it is missing or unreadable."""
    try:
        document = json.loads(signature_path.read_bytes())
    except FileNotFoundError as error:
        raise VerificationError(
            SIGNATURE_MISSING, f"no signature bundle at {signature_path}"
        ) from error
    except (OSError, ValueError) as error:
        raise VerificationError(
            SIGNATURE_INVALID, f"signature bundle {signature_path} is not readable JSON: {error}"
        ) from error
    if not isinstance(document, dict):
        raise VerificationError(SIGNATURE_INVALID, f"{signature_path} is not a bundle")
    return document


def signed_statement(bundle: dict[str, Any]) -> dict[str, Any]:
    """The in-toto statement inside the bundle's DSSE envelope (not yet authenticated)."""
    try:
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
        statement = json.loads(payload)
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise VerificationError(
            SIGNATURE_INVALID, f"bundle has no DSSE payload: {error}"
        ) from error
    if not isinstance(statement, dict):
        raise VerificationError(SIGNATURE_INVALID, "bundle payload is not an in-toto statement")
    return statement


def _statement_digest(statement: dict[str, Any]) -> str:
    try:
        return "sha256:" + str(statement["subject"][0]["digest"]["sha256"])
    except (KeyError, IndexError, TypeError) as error:
        raise VerificationError(SIGNATURE_INVALID, "statement has no subject digest") from error


def _certificates(bundle: dict[str, Any]) -> list[x509.Certificate]:
    material = bundle.get("verificationMaterial", {})
    raw: list[str] = []
    if "certificate" in material:
        raw.append(material["certificate"]["rawBytes"])
    for entry in material.get("x509CertificateChain", {}).get("certificates", []):
        raw.append(entry["rawBytes"])
    return [x509.load_der_x509_certificate(base64.b64decode(item)) for item in raw]


def _keyless_identity(bundle: dict[str, Any], signer: KeylessSigner) -> str:
    if signer.subject is not None:
        return signer.subject
    certificates = _certificates(bundle)
    if not certificates or signer.subject_regexp is None:
        raise VerificationError(SIGNATURE_INVALID, "keyless bundle carries no certificate")
    try:
        names = (
            certificates[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound as error:
        raise VerificationError(SIGNATURE_INVALID, "certificate has no identity (SAN)") from error
    identities = [str(value) for value in names.get_values_for_type(x509.RFC822Name)]
    identities += [
        str(value) for value in names.get_values_for_type(x509.UniformResourceIdentifier)
    ]
    for identity in identities:
        if re.fullmatch(signer.subject_regexp, identity):
            # model_signing then checks the exact identity and the issuer cryptographically.
            return identity
    raise VerificationError(
        SIGNATURE_INVALID,
        f"certificate identities {identities} do not match {signer.subject_regexp!r}",
    )


def _check_chain_validity(
    bundle: dict[str, Any], chain_pem: bytes, now: datetime.datetime
) -> x509.Certificate:
    """Every certificate of the bundle and of the trusted chain must be valid now.

    model_signing checks the chain at the leaf's start time only, so an expired leaf or
    intermediate (or root) would still verify. Returns the leaf.
    """
    certificates = _certificates(bundle)
    if not certificates:
        raise VerificationError(SIGNATURE_INVALID, "bundle carries no signing certificate")
    try:
        anchors = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as error:
        raise VerificationError(SIGNATURE_INVALID, f"certificate chain: {error}") from error
    for index, certificate in enumerate([*certificates, *anchors]):
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            role = "signing certificate" if index == 0 else "certificate in the chain"
            raise VerificationError(
                SIGNATURE_INVALID,
                f"{role} {certificate.subject.rfc4514_string()} is not valid now (valid "
                f"{certificate.not_valid_before_utc:%Y-%m-%d} to "
                f"{certificate.not_valid_after_utc:%Y-%m-%d})",
            )
    return certificates[0]


def _certificate_names(certificate: x509.Certificate) -> set[str]:
    names = {certificate.subject.rfc4514_string()}
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return names
    for general in alternative.value:
        value = getattr(general, "value", None)
        if isinstance(value, str):
            names.add(value)
    return names


def _check_subject(leaf: x509.Certificate, subject: str | None) -> None:
    if subject is None:
        return
    names = _certificate_names(leaf)
    if subject not in names:
        raise VerificationError(
            SIGNATURE_INVALID,
            f"signing certificate names {sorted(names)}, not the pinned subject {subject!r}",
        )


def _as_file(
    existing: pathlib.Path | None, content: bytes, scratch: contextlib.ExitStack, name: str
) -> pathlib.Path:
    """model_signing reads keys from files: the given one, else a temporary copy.

    Made only when needed: the startup init container runs on a read-only root file
    system, with its keys mounted as files.
    """
    if existing is not None:
        return existing
    directory = pathlib.Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="ms-")))
    path = directory / name
    path.write_bytes(content)
    return path


def _anchor_fingerprint(chain_pem: bytes) -> str:
    """keyids.fingerprint of the public key of the chain's last certificate (its anchor)."""
    anchor = x509.load_pem_x509_certificates(chain_pem)[-1]
    return keyids.fingerprint(
        anchor.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


def _configure(
    config: _Config, signer: TrustedSigner, bundle: dict[str, Any], scratch: contextlib.ExitStack
) -> _Identity:
    """Set up model_signing for the signer; what identifies it when it verifies."""
    if isinstance(signer, KeySigner):
        key_path = _as_file(signer.path, signer.public_key_pem, scratch, "key.pub")
        config.use_elliptic_key_verifier(public_key=key_path)
        return _Identity(key=keyids.fingerprint(signer.public_key_pem))
    if isinstance(signer, CertificateSigner):
        if not signer.chain_pem.strip():
            # An empty chain makes model_signing trust every public web CA.
            raise VerificationError(SIGNATURE_INVALID, "certificate signer has an empty chain")
        leaf = _check_chain_validity(bundle, signer.chain_pem, datetime.datetime.now(datetime.UTC))
        _check_subject(leaf, signer.subject)
        chain_path = _as_file(signer.path, signer.chain_pem, scratch, "chain.pem")
        config.use_certificate_verifier(certificate_chain=[chain_path])
        return _Identity(key=_anchor_fingerprint(signer.chain_pem), identity=signer.subject or "")
    if signer.trust_config is None:
        # Without one, sigstore would fetch the public-good root over the network.
        raise VerificationError(
            SIGNATURE_INVALID, "keyless verification needs a configured trust root"
        )
    identity = _keyless_identity(bundle, signer)
    config.use_sigstore_verifier(
        identity=identity, oidc_issuer=signer.issuer, trust_config=signer.trust_config
    )
    return _Identity(issuer=signer.issuer, identity=identity)


def _mismatch_error(mismatch: _Mismatch) -> VerificationError:
    if mismatch.changed:
        name = mismatch.changed[0]
        return VerificationError(
            CONTENT_MISMATCH,
            f"{name}: content differs from the signed manifest"
            + (
                f" (and {len(mismatch.changed) - 1} more file(s))"
                if len(mismatch.changed) > 1
                else ""
            ),
            file=name,
        )
    if mismatch.extra:
        name = mismatch.extra[0]
        return VerificationError(
            CONTENT_MISMATCH, f"{name}: file is not in the signed manifest", name
        )
    name = mismatch.missing[0] if mismatch.missing else "?"
    return VerificationError(CONTENT_MISMATCH, f"{name}: signed file is missing", name)


def refuse_git_paths(model_dir: pathlib.Path) -> None:
    """VerificationError when the model holds a path model-signing ignores by default."""
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if GIT_PATHS.intersection(relative.parts):
            raise VerificationError(
                UNVERIFIED_PATHS,
                f"{relative.as_posix()}: model-signing leaves .git, .github, .gitattributes "
                "and .gitignore out of the manifest, so a runtime could read it unverified; "
                "remove it from the model",
                file=relative.as_posix(),
            )


def _refuse_ignored(
    model_dir: pathlib.Path, signature_path: pathlib.Path, ignored: Sequence[str]
) -> None:
    """VerificationError when the manifest leaves out a file other than the signature."""
    for name in ignored:
        path = model_dir / str(name)
        if path.exists() and path.resolve() != signature_path.resolve():
            raise VerificationError(
                UNVERIFIED_PATHS,
                f"{name}: the signature leaves it out of the manifest (ignore_paths), so it "
                "would be served unverified; sign the model with nothing ignored",
                file=str(name),
            )


def verify(
    model_dir: pathlib.Path,
    signers: Sequence[TrustedSigner],
    *,
    signature: pathlib.Path | None = None,
    expected_digest: str | None = None,
    progress: hashing.ProgressCallback | None = None,
) -> VerifiedModel:
    """Verify the model against the first signer whose signature verifies.

    Raises VerificationError with a reason code and a message naming the first file that
    does not match (changed first, then added, then removed).
    """
    signature_path = signature or model_dir / hashing.DEFAULT_SIGNATURE_NAME
    if not signers:
        raise VerificationError(NO_SIGNERS, "no trusted signers to verify against")
    refuse_git_paths(model_dir)
    bundle = read_bundle(signature_path)
    statement = signed_statement(bundle)
    serialization = statement.get("predicate", {}).get("serialization", {})
    _refuse_ignored(model_dir, signature_path, serialization.get("ignore_paths", []))
    attempts: list[str] = []
    with contextlib.ExitStack() as scratch:
        for signer in signers:
            config = _Config()
            try:
                verified_by = _configure(config, signer, bundle, scratch)
                hashing_config = hashing.from_serialization(serialization, progress)
                hashing_config.set_total(
                    hashing.model_size(model_dir, serialization.get("ignore_paths", []))
                )
                config.set_hashing_config(hashing_config)
                config.verify(model_dir, signature_path)
            except VerificationError as error:
                attempts.append(f"{signer.name}: {error.message}")
                continue
            except Exception as error:
                if config.mismatch is not None:
                    raise _mismatch_error(config.mismatch) from error
                attempts.append(f"{signer.name}: {error}")
                continue
            digest = _statement_digest(statement)
            if expected_digest is not None and digest != expected_digest:
                raise VerificationError(
                    DIGEST_MISMATCH,
                    f"signed manifest digest {digest} is not the expected {expected_digest}",
                )
            files = len(statement.get("predicate", {}).get("resources", []))
            if files == 0:
                raise VerificationError(
                    EMPTY_MODEL, "the signed manifest lists no files: an empty model"
                )
            return VerifiedModel(
                digest=digest,
                signer=signer.name,
                files=files,
                key=verified_by.key,
                issuer=verified_by.issuer,
                identity=verified_by.identity,
            )
    raise VerificationError(
        SIGNATURE_INVALID,
        "the signature does not verify with any trusted signer: " + "; ".join(attempts),
        attempts=attempts,
    )
