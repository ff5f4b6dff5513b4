"""TokenReview verdicts: what they establish and how long they are trusted."""

from __future__ import annotations

import base64
import json

from modelshield.guard import credentials, judging, tokenreviews


def _jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"


ACCEPTED = {
    "authenticated": True,
    "user": {
        "username": "system:serviceaccount:payments:scorer",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:payments"],
    },
    "audiences": ["modelshield-guard"],
}


def test_an_accepted_service_account_token() -> None:
    identity = tokenreviews.identity_of(ACCEPTED)
    assert identity == judging.Identity(
        client="serviceaccount:payments/scorer",
        method=credentials.Kind.SERVICE_ACCOUNT_TOKEN,
        service_account="payments/scorer",
        namespace="payments",
        groups=frozenset({"system:serviceaccounts", "system:serviceaccounts:payments"}),
        audiences=frozenset({"modelshield-guard"}),
    )


def test_refusals_and_users_that_are_not_service_accounts() -> None:
    refused = tokenreviews.identity_of({"authenticated": False, "error": "token has expired"})
    assert refused == judging.AuthenticationFailed(
        "the token was not accepted by the API server: token has expired"
    )
    assert isinstance(tokenreviews.identity_of({}), judging.AuthenticationFailed)
    user = {**ACCEPTED, "user": {"username": "alice", "groups": ["system:masters"]}}
    assert tokenreviews.identity_of(user) == judging.AuthenticationFailed(
        "the token is not a ServiceAccount's"
    )


def test_token_expiry_is_read_without_trusting_the_token() -> None:
    assert tokenreviews.token_expiry(_jwt({"exp": 1234})) == 1234.0
    assert tokenreviews.token_expiry(_jwt({"sub": "x"})) is None
    assert tokenreviews.token_expiry("not-a-jwt") is None
    assert tokenreviews.token_expiry("a.!!!.c") is None


def test_an_acceptance_is_cached_until_the_ttl_or_the_tokens_expiry() -> None:
    cache = tokenreviews.VerdictCache(ttl=60)
    identity = tokenreviews.identity_of(ACCEPTED)
    cache.put("long", identity, now=1000.0, token_expires=5000.0)
    cache.put("short", identity, now=1000.0, token_expires=1010.0)
    assert cache.get("long", 1059.0) == identity
    assert cache.get("long", 1060.0) is None  # the TTL
    assert cache.get("short", 1009.0) == identity
    assert cache.get("short", 1010.0) is None  # the token's exp comes first
    cache.put("expired", identity, now=1000.0, token_expires=999.0)
    assert cache.get("expired", 1000.0) is None


def test_a_refusal_is_cached_briefly() -> None:
    cache = tokenreviews.VerdictCache(ttl=600)
    cache.put("bad", judging.AuthenticationFailed("no"), now=0.0, token_expires=None)
    assert cache.get("bad", tokenreviews.FAILURE_TTL - 1) is not None
    assert cache.get("bad", tokenreviews.FAILURE_TTL) is None


def test_the_cache_is_bounded() -> None:
    cache = tokenreviews.VerdictCache(ttl=60, max_entries=3)
    identity = tokenreviews.identity_of(ACCEPTED)
    for index in range(10):
        cache.put(str(index), identity, now=0.0, token_expires=None)
    assert len(cache) == 3
    assert cache.get("9", 1.0) == identity
    assert cache.get("0", 1.0) is None
