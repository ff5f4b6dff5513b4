"""A request's headers sorted in one pass: forwarded, credentials, dropped; and the
identity known without a coroutine when nothing needs to be asked."""

from __future__ import annotations

import asyncio
import pathlib
import time

from modelshield.guard import apikeys, authenticating, credentials, judging, server, tokenreviews

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def test_headers_are_forwarded_read_as_credentials_or_dropped_in_any_spelling() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "r1"),
        ("AUTHORIZATION", f"Bearer {JWT}"),
        ("x-API-key", "k"),
        ("Connection", "close"),
        ("TE", "trailers"),
        ("Expect", "100-continue"),
        ("X-ModelShield-Client", "forged"),
        ("x-modelshield-audit", "forged"),
        ("Host", "guard"),
        ("Content-Length", "2"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Accept", "*/*"),
    ]
    forwarded, presented = server.sort_headers(headers)
    assert forwarded == [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "r1"),
        ("Accept", "*/*"),
    ]
    assert presented == [("AUTHORIZATION", f"Bearer {JWT}"), ("x-API-key", "k")]
    # The second time the names are remembered: the same answer.
    assert server.sort_headers(headers) == (forwarded, presented)


def test_names_past_the_remembered_bound_are_still_sorted_and_not_kept() -> None:
    many = [(f"X-Made-Up-{index}", "v") for index in range(2 * server._REMEMBERED_HEADER_NAMES)]
    forwarded, _ = server.sort_headers(many)
    assert forwarded == many
    assert len(server._REQUEST_HEADER_ACTIONS) <= server._REMEMBERED_HEADER_NAMES
    late = [("X-Api-Key", "k"), ("X-MODELSHIELD-LATE", "x"), ("Keep-Alive", "5"), ("Late", "v")]
    assert server.sort_headers(late) == ([("Late", "v")], [("X-Api-Key", "k")])


def _reviewer(tmp_path: pathlib.Path) -> tokenreviews.TokenReviewer:
    token_file = tmp_path / "token"
    token_file.write_text("unused")
    api_server = tokenreviews.ApiServer("https://127.0.0.1:1", None, token_file, timeout=0.5)
    cache = tokenreviews.VerdictCache(ttl=60)
    return tokenreviews.TokenReviewer(api_server, frozenset({"guard"}), cache)


def test_known_identities_need_no_review(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keys").mkdir()
    key = credentials.Credential(credentials.Kind.API_KEY, "k3y")
    (tmp_path / "keys" / "scorer").write_text(key.digest)
    reviewer = _reviewer(tmp_path)
    authenticator = authenticating.Authenticator(
        reviewer, apikeys.KeyStore(tmp_path, frozenset({"keys"}))
    )
    assert authenticator.known(None) is judging.ANONYMOUS
    identity = authenticator.known(key)
    assert isinstance(identity, judging.Identity)
    assert identity.client == "apikey:scorer"
    unknown = credentials.Credential(credentials.Kind.API_KEY, "other")
    assert isinstance(authenticator.known(unknown), judging.AuthenticationFailed)
    token = credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, JWT)
    # Not cached: a TokenReview must be asked, and the API server here cannot answer.
    assert authenticator.known(token) is None

    async def ask() -> judging.Identity | judging.AuthenticationFailed | str:
        try:
            return await authenticator.identify(token)
        except tokenreviews.ReviewUnavailableError:
            return "unavailable"
        finally:
            await reviewer.close()

    assert asyncio.run(ask()) == "unavailable"
    accepted = judging.Identity(
        client="serviceaccount:a/b", method=credentials.Kind.SERVICE_ACCOUNT_TOKEN
    )
    reviewer.cache.put(token.digest, accepted, time.time(), None)
    assert authenticator.known(token) == accepted
    assert asyncio.run(ask()) == accepted


def test_tokens_without_a_reviewer_are_refused_at_once() -> None:
    authenticator = authenticating.Authenticator(None, None)
    token = credentials.Credential(credentials.Kind.SERVICE_ACCOUNT_TOKEN, JWT)
    assert authenticator.known(token) == judging.AuthenticationFailed(
        "ServiceAccount tokens are not accepted"
    )


def test_an_api_keys_identity_follows_its_secret(tmp_path: pathlib.Path) -> None:
    """Kept per key, and made again when the Secrets are read again (a rotated or moved
    key never keeps its old client)."""
    (tmp_path / "keys").mkdir()
    key = credentials.Credential(credentials.Kind.API_KEY, "k3y")
    (tmp_path / "keys" / "scorer").write_text(key.digest)
    store = apikeys.KeyStore(tmp_path, frozenset({"keys"}))
    authenticator = authenticating.Authenticator(None, store)
    first = authenticator.known(key)
    assert isinstance(first, judging.Identity)
    assert authenticator.known(key) is first
    (tmp_path / "keys" / "scorer").unlink()
    (tmp_path / "keys" / "batch").write_text(key.digest)
    store.reload()
    moved = authenticator.known(key)
    assert isinstance(moved, judging.Identity)
    assert moved.client == "apikey:batch"
    (tmp_path / "keys" / "batch").unlink()
    store.reload()
    assert authenticator.known(key) == judging.AuthenticationFailed("the API key is not known")
