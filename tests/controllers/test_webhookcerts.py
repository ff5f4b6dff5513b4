"""Webhook certificates: issue, read back, rotate before expiry, keep the old CA trusted."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509

from modelshield.controllers.builders import webhookcerts as wc

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


def _issue(now: datetime.datetime = NOW, previous_ca: str = "") -> wc.Bundle:
    return wc.issue(
        "hook", "sys", now, validity=datetime.timedelta(days=90), previous_ca=previous_ca
    )


def test_issued_certificate_is_signed_by_the_ca_and_names_the_service() -> None:
    bundle = _issue()
    certificate = x509.load_pem_x509_certificate(bundle.certificate.encode())
    ca = x509.load_pem_x509_certificates(bundle.ca_bundle.encode())[0]
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "hook.sys.svc" in names.get_values_for_type(x509.DNSName)
    assert wc.rotation_due(bundle, "hook", "sys", NOW) is None


def test_secret_round_trip() -> None:
    bundle = _issue()
    secret = wc.secret_manifest("tls", "sys", bundle, {"a": "b"})
    assert secret["type"] == "kubernetes.io/tls"
    assert wc.from_secret(secret) == bundle
    assert wc.from_secret({"data": {}}) is None
    assert wc.from_secret(None) is None


def test_rotation_due_in_the_last_third_and_for_another_service() -> None:
    bundle = _issue()
    assert wc.rotation_due(bundle, "hook", "sys", NOW + datetime.timedelta(days=59)) is None
    assert "expires" in (
        wc.rotation_due(bundle, "hook", "sys", NOW + datetime.timedelta(days=61)) or ""
    )
    assert wc.rotation_due(bundle, "other", "sys", NOW) == "the certificate names another Service"
    assert wc.rotation_due(None, "hook", "sys", NOW) == "no certificate yet"


def test_rotation_keeps_the_previous_ca_only() -> None:
    first = _issue()
    second = _issue(NOW + datetime.timedelta(days=61), previous_ca=first.ca_bundle)
    third = _issue(NOW + datetime.timedelta(days=122), previous_ca=second.ca_bundle)
    cas = x509.load_pem_x509_certificates(third.ca_bundle.encode())
    second_ca = x509.load_pem_x509_certificates(second.ca_bundle.encode())[0]
    assert len(cas) == 2
    assert cas[1] == second_ca


def test_ca_bundle_patch_only_when_needed() -> None:
    bundle = _issue()
    webhooks = [{"name": "a", "clientConfig": {"service": {"name": "hook"}}}]
    patched = wc.with_ca_bundle(webhooks, bundle.ca_bundle)
    assert patched is not None
    assert base64.b64decode(patched[0]["clientConfig"]["caBundle"]).decode() == bundle.ca_bundle
    assert patched[0]["clientConfig"]["service"] == {"name": "hook"}
    assert wc.with_ca_bundle(patched, bundle.ca_bundle) is None
