"""Credentials are read from one header, in any spelling, and never shown."""

from __future__ import annotations

import pytest

from modelshield.guard import credentials

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", f"Bearer {JWT}")],
        [("authorization", f"bearer {JWT}")],
        [("AUTHORIZATION", f"BEARER  {JWT} ")],
    ],
)
def test_bearer_jwt_in_any_spelling_is_a_token(headers: list[tuple[str, str]]) -> None:
    credential = credentials.read(headers)
    assert credential == credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, JWT)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Api-Key", "k3y-value")],
        [("x-api-key", "k3y-value")],
        [("Authorization", "Bearer k3y-value")],
    ],
)
def test_api_key_in_either_header(headers: list[tuple[str, str]]) -> None:
    credential = credentials.read(headers)
    assert credential == credentials.Credential(credentials.Kind.API_KEY, "k3y-value")


def test_no_credential_is_anonymous() -> None:
    assert credentials.read([("Content-Type", "application/json")]) is None


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", f"Bearer {JWT}"), ("X-Api-Key", "k")],
        [("Authorization", f"Bearer {JWT}"), ("authorization", "Bearer other")],
        [("X-Api-Key", "a"), ("X-API-KEY", "b")],
    ],
)
def test_two_credentials_are_ambiguous(headers: list[tuple[str, str]]) -> None:
    error = credentials.read(headers)
    assert isinstance(error, credentials.CredentialError)
    assert error.status == 400


@pytest.mark.parametrize(
    "value",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", f"Bearer {JWT} extra", "Bearer a\tb"],
)
def test_unusable_authorization_is_401(value: str) -> None:
    error = credentials.read([("Authorization", value)])
    assert isinstance(error, credentials.CredentialError)
    assert error.status == 401


def test_the_value_is_never_shown() -> None:
    credential = credentials.read([("X-Api-Key", "super-secret-key")])
    assert isinstance(credential, credentials.Credential)
    assert "super-secret-key" not in repr(credential)
    assert "super-secret-key" not in str(credential)
    assert len(credential.digest) == 64
