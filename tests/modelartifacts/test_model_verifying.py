"""Signing with the real model_signing library, then verifying; tampering must be named."""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from modelshield.modelartifacts import modelverifying, signing
from tests.support import modelfiles as models
from tests.support import signingkeys as keys


@pytest.fixture
def signer_keys(tmp_path: pathlib.Path) -> keys.KeyPair:
    return keys.key_pair(tmp_path / "keys", "release")


@pytest.fixture
def signed_model(tmp_path: pathlib.Path, signer_keys: keys.KeyPair) -> pathlib.Path:
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_key(model, signer_keys.private_path)
    return model


def _key_signer(pair: keys.KeyPair, name: str = "release") -> modelverifying.KeySigner:
    return modelverifying.KeySigner(name, pair.public_pem)


def _failure(
    model: pathlib.Path, signers: list[modelverifying.TrustedSigner]
) -> modelverifying.VerificationError:
    with pytest.raises(modelverifying.VerificationError) as caught:
        modelverifying.verify(model, signers)
    return caught.value


def test_signed_model_verifies_with_digest_of_signed_subject(
    signed_model: pathlib.Path, signer_keys: keys.KeyPair
) -> None:
    result = modelverifying.verify(signed_model, [_key_signer(signer_keys)])

    bundle = json.loads((signed_model / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert result.digest == "sha256:" + statement["subject"][0]["digest"]["sha256"]
    assert result.signer == "release"
    assert result.files == len(list(p for p in signed_model.iterdir() if p.name != "model.sig"))


def test_sign_reports_the_same_digest_as_verify(
    tmp_path: pathlib.Path, signer_keys: keys.KeyPair
) -> None:
    model = models.benign_model(tmp_path / "m")
    progress: list[tuple[int, int]] = []

    signed = signing.sign_with_key(
        model, signer_keys.private_path, progress=lambda done, total: progress.append((done, total))
    )

    assert signed.digest == modelverifying.verify(model, [_key_signer(signer_keys)]).digest
    assert progress[-1][0] == progress[-1][1] > 0


def test_one_changed_byte_names_the_file(
    signed_model: pathlib.Path, signer_keys: keys.KeyPair
) -> None:
    target = signed_model / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))

    error = _failure(signed_model, [_key_signer(signer_keys)])

    assert error.reason == modelverifying.CONTENT_MISMATCH
    assert error.file == "model.safetensors"
    assert "model.safetensors" in str(error)


def test_added_file_is_named(signed_model: pathlib.Path, signer_keys: keys.KeyPair) -> None:
    (signed_model / "extra.pkl").write_bytes(b"\x80\x02N.")

    error = _failure(signed_model, [_key_signer(signer_keys)])

    assert (error.reason, error.file) == (modelverifying.CONTENT_MISMATCH, "extra.pkl")
    assert "not in the signed manifest" in str(error)


def test_removed_file_is_named(signed_model: pathlib.Path, signer_keys: keys.KeyPair) -> None:
    (signed_model / "vocab.txt").unlink()

    error = _failure(signed_model, [_key_signer(signer_keys)])

    assert (error.reason, error.file) == (modelverifying.CONTENT_MISMATCH, "vocab.txt")
    assert "missing" in str(error)


def test_manifest_swapped_from_another_model_fails(
    tmp_path: pathlib.Path, signed_model: pathlib.Path, signer_keys: keys.KeyPair
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    models.torch_style_zip(other / "pytorch_model.bin", values=(9.0, 9.0))
    (other / "vocab.txt").write_text("other\n")
    signing.sign_with_key(other, signer_keys.private_path)
    shutil.copy(other / "model.sig", signed_model / "model.sig")

    error = _failure(signed_model, [_key_signer(signer_keys)])

    assert error.reason == modelverifying.CONTENT_MISMATCH
    assert error.file == "pytorch_model.bin"


def test_wrong_key_is_a_signature_failure(
    tmp_path: pathlib.Path, signed_model: pathlib.Path
) -> None:
    stranger = keys.key_pair(tmp_path / "stranger", "stranger")

    error = _failure(signed_model, [_key_signer(stranger, "stranger")])

    assert error.reason == modelverifying.SIGNATURE_INVALID
    assert "stranger" in str(error)


def test_rotation_matches_the_second_signer(
    tmp_path: pathlib.Path, signed_model: pathlib.Path, signer_keys: keys.KeyPair
) -> None:
    old = keys.key_pair(tmp_path / "old", "old")

    result = modelverifying.verify(
        signed_model, [_key_signer(old, "old"), _key_signer(signer_keys)]
    )

    assert result.signer == "release"


def test_expected_digest_must_match(signed_model: pathlib.Path, signer_keys: keys.KeyPair) -> None:
    with pytest.raises(modelverifying.VerificationError) as caught:
        modelverifying.verify(
            signed_model, [_key_signer(signer_keys)], expected_digest="sha256:" + "0" * 64
        )

    assert caught.value.reason == modelverifying.DIGEST_MISMATCH


def test_missing_signature(tmp_path: pathlib.Path, signer_keys: keys.KeyPair) -> None:
    model = models.benign_model(tmp_path / "unsigned")

    assert _failure(model, [_key_signer(signer_keys)]).reason == modelverifying.SIGNATURE_MISSING


def test_certificate_chain_signing_verifies(tmp_path: pathlib.Path) -> None:
    material = keys.certificate_material(tmp_path / "pki")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model, material.key_path, material.certificate_path, [material.root_path]
    )
    signer = modelverifying.CertificateSigner("pki", material.root_path.read_bytes())

    assert modelverifying.verify(model, [signer]).signer == "pki"


def test_certificate_from_another_root_fails(tmp_path: pathlib.Path) -> None:
    material = keys.certificate_material(tmp_path / "pki")
    other_root = keys.certificate_material(tmp_path / "other").root_path
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model, material.key_path, material.certificate_path, [material.root_path]
    )

    error = _failure(model, [modelverifying.CertificateSigner("other", other_root.read_bytes())])

    assert error.reason == modelverifying.SIGNATURE_INVALID


def test_expired_leaf_certificate_is_refused(tmp_path: pathlib.Path) -> None:
    # model_signing alone accepts this: it checks the chain at the leaf's start time.
    material = keys.certificate_material(tmp_path / "pki", leaf_days=(-60, -30))
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model, material.key_path, material.certificate_path, [material.root_path]
    )

    error = _failure(
        model, [modelverifying.CertificateSigner("pki", material.root_path.read_bytes())]
    )

    assert "not valid now" in str(error)


def test_empty_chain_never_falls_back_to_public_roots(
    tmp_path: pathlib.Path, signed_model: pathlib.Path
) -> None:
    error = _failure(signed_model, [modelverifying.CertificateSigner("empty", b"")])

    assert "empty chain" in str(error)


def test_keyless_without_trust_root_is_refused(signed_model: pathlib.Path) -> None:
    signer = modelverifying.KeylessSigner(
        "ci", issuer="https://token.actions.githubusercontent.com", trust_config=None, subject="x"
    )

    error = _failure(signed_model, [signer])

    assert "trust root" in str(error)


def test_no_signers(signed_model: pathlib.Path) -> None:
    assert _failure(signed_model, []).reason == modelverifying.NO_SIGNERS


def _keyless_bundle(model: pathlib.Path, identity: str) -> None:
    """A bundle that carries a certificate for identity (the signature itself is not real)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(identity)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    statement = {"subject": [{"digest": {"sha256": "0" * 64}}], "predicate": {}}
    bundle = {
        "verificationMaterial": {
            "certificate": {
                "rawBytes": base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()
            }
        },
        "dsseEnvelope": {"payload": base64.b64encode(json.dumps(statement).encode()).decode()},
    }
    (model / "model.sig").write_text(json.dumps(bundle))


def test_keyless_subject_regexp_must_match_the_certificate_identity(tmp_path: pathlib.Path) -> None:
    model = models.benign_model(tmp_path / "model")
    _keyless_bundle(model, "mallory@evil.example")
    signer = modelverifying.KeylessSigner(
        "ci",
        issuer="https://issuer.example",
        trust_config=tmp_path / "trust.json",
        subject_regexp=r".*@release\.example",
    )

    error = _failure(model, [signer])

    assert "mallory@evil.example" in str(error)
    assert "do not match" in str(error)


def test_keyless_matching_identity_still_needs_a_valid_signature(tmp_path: pathlib.Path) -> None:
    model = models.benign_model(tmp_path / "model")
    _keyless_bundle(model, "ci@release.example")
    (tmp_path / "trust.json").write_text("{}")
    signer = modelverifying.KeylessSigner(
        "ci",
        issuer="https://issuer.example",
        trust_config=tmp_path / "trust.json",
        subject_regexp=r".*@release\.example",
    )

    error = _failure(model, [signer])

    assert error.reason == modelverifying.SIGNATURE_INVALID
    assert "do not match" not in str(error)


def test_an_expired_intermediate_certificate_is_refused(tmp_path: pathlib.Path) -> None:
    # Issue 21: only the leaf's validity was checked; model_signing checks the chain at the
    # leaf's start time, when this intermediate was still valid.
    material = keys.certificate_material(
        tmp_path / "pki", leaf_days=(-30, 30), intermediate_days=(-60, -5)
    )
    assert material.intermediate_path is not None
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model,
        material.key_path,
        material.certificate_path,
        [material.intermediate_path, material.root_path],
    )
    chain = material.intermediate_path.read_bytes() + material.root_path.read_bytes()

    error = _failure(model, [modelverifying.CertificateSigner("pki", chain)])

    assert "modelshield test intermediate" in str(error)
    assert "not valid now" in str(error)


def test_a_valid_intermediate_chain_verifies(tmp_path: pathlib.Path) -> None:
    material = keys.certificate_material(tmp_path / "pki", intermediate_days=(-60, 60))
    assert material.intermediate_path is not None
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model,
        material.key_path,
        material.certificate_path,
        [material.intermediate_path, material.root_path],
    )
    chain = material.intermediate_path.read_bytes() + material.root_path.read_bytes()

    assert (
        modelverifying.verify(model, [modelverifying.CertificateSigner("pki", chain)]).signer
        == "pki"
    )


def test_a_pinned_subject_refuses_another_leaf_of_the_same_ca(tmp_path: pathlib.Path) -> None:
    # Issue 21: any code-signing leaf from that CA verified.
    material = keys.certificate_material(tmp_path / "pki", leaf_name="intern test signer")
    model = models.benign_model(tmp_path / "model")
    signing.sign_with_certificate(
        model, material.key_path, material.certificate_path, [material.root_path]
    )
    root = material.root_path.read_bytes()
    pinned = modelverifying.CertificateSigner("pki", root, subject="CN=model release signer")

    error = _failure(model, [pinned])

    assert "not the pinned subject" in str(error)
    assert modelverifying.verify(
        model, [modelverifying.CertificateSigner("pki", root, subject="CN=intern test signer")]
    )
