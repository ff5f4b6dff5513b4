"""Credentials in a ModelArtifact URI never reach status, Events or logs (issue 21)."""

from __future__ import annotations

import pytest

from modelshield.engine import redacting


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET https://user:hunter2@models.example/m.tar: 404", "hunter2"),
        ("s3://AKIDEXAMPLE:secret@bucket/key", "secret"),
        (
            "https://bucket.s3.example/m.bin?X-Amz-Credential=AKID%2F2026&X-Amz-Signature=abc123",
            "abc123",
        ),
        ("https://store.example/m.bin?sig=sv2026token&se=2026", "sv2026token"),
        ("https://hub.example/m?token=t0ken&revision=main", "t0ken"),
    ],
)
def test_credentials_are_replaced(text: str, hidden: str) -> None:
    redacted = redacting.redact(text)

    assert hidden not in redacted
    assert redacting.REDACTED in redacted
    assert redacting.has_credentials(text)


def test_text_without_credentials_is_unchanged() -> None:
    text = "GET https://models.example/fraud/v7/model.tar?revision=main: HTTP 404"

    assert redacting.redact(text) == text
    assert not redacting.has_credentials(text)
