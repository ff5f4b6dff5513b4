"""ServiceAccount tokens checked by the API server's TokenReview, with a bounded verdict cache.

The guard asks the API server (``authentication.k8s.io/v1`` TokenReview, with the
audiences its policies accept) whether a token is valid; only the API server checks
signatures, so a forged or expired token is refused there. Verdicts are cached by the
token's SHA-256 (never the token): an acceptance for at most the policies' TTL and never
past the token's own ``exp``; a refusal for at most ``FAILURE_TTL``. An API server that
cannot be reached is not a verdict: nothing is cached and the request gets 503.

Each review of a token not in the cache is spent from its source's token bucket
(``NEW_TOKENS_PER_SECOND``, ``NEW_TOKENS_BURST``): anyone can make up JWT-shaped strings,
and each new one would otherwise cost the API server a TokenReview. Beyond the bucket the
request is refused (``ReviewsThrottledError``) without asking. Cached verdicts never spend.

The guard's own credential (its projected ServiceAccount token) is re-read from its file
at most every ``CREDENTIAL_REFRESH`` seconds, since the kubelet rotates it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import functools
import json
import pathlib
import ssl
import time
from typing import Any

import aiohttp

from modelshield.guard import credentials, judging, ratelimits

FAILURE_TTL = 10.0
CREDENTIAL_REFRESH = 60.0
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

#: Reviews of tokens not in the cache, per source address. A client re-using its token
#: needs one review per ``cacheTTL`` (and one when the kubelet rotates it, about hourly),
#: so 5 a second with a burst of 20 never touches one; a source making up tokens gets 20,
#: then 5 a second, instead of as many as it can send (one source can no longer fill the
#: guard's 32 concurrent reviews). Constants, not configuration: no client needs more.
NEW_TOKENS_PER_SECOND = 5.0
NEW_TOKENS_BURST = 20
#: At most this many sources' buckets are kept, least recently used dropped (it comes back
#: full). Evicting one's own bucket takes 10,000 other addresses, each with its own burst.
NEW_TOKEN_SOURCES = 10_000


class ReviewUnavailableError(Exception):
    """The API server gave no verdict (unreachable, timed out, answered an error)."""


class ReviewsThrottledError(Exception):
    """The source has had its share of reviews of new tokens; nothing was asked."""

    def __init__(self, source: str, retry_after: int) -> None:
        super().__init__(
            f"too many new tokens from this source ({source or 'unknown'}): at most "
            f"{NEW_TOKENS_BURST:g} at once, then {NEW_TOKENS_PER_SECOND:g} a second, are "
            "sent to the API server; re-use a token"
        )
        self.retry_after = retry_after


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (the API server verifies).

    Used only to bound how long an acceptance is cached; None when there is none.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    return float(expiry) if isinstance(expiry, int | float) else None


def identity_of(status: dict[str, Any]) -> judging.Identity | judging.AuthenticationFailed:
    """The identity a TokenReview's status establishes."""
    if status.get("authenticated") is not True:
        error = str(status.get("error") or "")
        # The API server's error names the cause (expired, audience, signature); bounded.
        detail = f": {error[:160]}" if error else ""
        return judging.AuthenticationFailed(f"the token was not accepted by the API server{detail}")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return judging.AuthenticationFailed("the token is not a ServiceAccount's")
    namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    groups = user.get("groups") or []
    return judging.Identity(
        client=f"serviceaccount:{namespace}/{name}",
        method=credentials.Kind.SERVICE_ACCOUNT_TOKEN,
        service_account=f"{namespace}/{name}",
        namespace=namespace,
        groups=frozenset(str(g) for g in groups),
        audiences=frozenset(str(a) for a in status.get("audiences") or []),
    )


@dataclasses.dataclass(slots=True)
class _Entry:
    verdict: judging.Identity | judging.AuthenticationFailed
    expires: float


class VerdictCache:
    """Verdicts by token digest, bounded in number and time. Pure (the clock is passed in)."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def get(
        self, digest: str, now: float
    ) -> judging.Identity | judging.AuthenticationFailed | None:
        """The cached verdict, if still valid."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry.expires:
            del self._entries[digest]
            return None
        return entry.verdict

    def put(
        self,
        digest: str,
        verdict: judging.Identity | judging.AuthenticationFailed,
        now: float,
        token_expires: float | None,
    ) -> None:
        """Keep a verdict: an acceptance until the TTL or the token's expiry, whichever first."""
        if isinstance(verdict, judging.AuthenticationFailed):
            expires = now + min(self.ttl, FAILURE_TTL)
        else:
            expires = now + self.ttl
            if token_expires is not None:
                expires = min(expires, token_expires)
        if expires <= now:
            return
        self._entries[digest] = _Entry(verdict, expires)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclasses.dataclass(frozen=True)
class ApiServer:
    """Where the TokenReviews go and how the guard authenticates itself there."""

    url: str
    ca_file: pathlib.Path | None
    token_file: pathlib.Path
    timeout: float = 5.0


class TokenReviewer:
    """Reviews tokens against the API server, through the cache."""

    def __init__(
        self,
        server: ApiServer,
        audiences: frozenset[str],
        cache: VerdictCache,
        *,
        new_tokens: ratelimits.TokenBuckets | None = None,
    ) -> None:
        self.server = server
        self.audiences = sorted(audiences)
        self.cache = cache
        #: Source address -> its bucket of reviews of tokens not in the cache.
        self.new_tokens = (
            new_tokens
            if new_tokens is not None
            else ratelimits.TokenBuckets(
                NEW_TOKENS_PER_SECOND, NEW_TOKENS_BURST, max_keys=NEW_TOKEN_SOURCES
            )
        )
        #: Token digest -> its review under way (as many as reviews in flight).
        self._pending: dict[
            str, asyncio.Future[judging.Identity | judging.AuthenticationFailed]
        ] = {}
        self._credential = ""
        self._credential_read = -CREDENTIAL_REFRESH
        context = ssl.create_default_context(cafile=str(server.ca_file) if server.ca_file else None)
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    def _own_credential(self) -> str:
        now = time.monotonic()
        if now - self._credential_read >= CREDENTIAL_REFRESH:
            self._credential = self.server.token_file.read_text().strip()
            self._credential_read = now
        return self._credential

    def cached(
        self, credential: credentials.Credential
    ) -> judging.Identity | judging.AuthenticationFailed | None:
        """The cached verdict on a token, if there is one still valid (asks nothing)."""
        return self.cache.get(credential.digest, time.time())

    async def review(
        self, credential: credentials.Credential, source: str = ""
    ) -> judging.Identity | judging.AuthenticationFailed:
        """The verdict on a token presented from ``source`` (the peer's address); raises
        ReviewUnavailableError when the API server gives none, ReviewsThrottledError (asking
        nothing) when the token is not cached and ``source`` has had its share of reviews."""
        now = time.time()
        cached = self.cache.get(credential.digest, now)
        if cached is not None:
            return cached
        # Requests with a token already being reviewed wait for that review and spend
        # nothing: a client starting with many parallel requests on a new token asks once.
        pending = self._pending.get(credential.digest)
        if pending is None:
            # Spent before asking, whatever the answer: the API server's work is bounded.
            clock = time.monotonic()
            wait = self.new_tokens.wait(source, clock)
            if wait > 0:
                raise ReviewsThrottledError(source, ratelimits.retry_after(wait))
            self.new_tokens.take(source, clock)
            pending = asyncio.ensure_future(self._review(credential))
            self._pending[credential.digest] = pending
            pending.add_done_callback(functools.partial(self._reviewed, credential.digest))
        # Shielded: one waiter cancelled (its client gone) cancels nobody else's review.
        return await asyncio.shield(pending)

    async def _review(
        self, credential: credentials.Credential
    ) -> judging.Identity | judging.AuthenticationFailed:
        verdict = identity_of(await self._ask(credential.value))
        self.cache.put(credential.digest, verdict, time.time(), token_expiry(credential.value))
        return verdict

    def _reviewed(self, digest: str, review: asyncio.Future[Any]) -> None:
        self._pending.pop(digest, None)
        if not review.cancelled():
            review.exception()  # retrieved: every waiter may have gone

    async def _ask(self, token: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=self.server.timeout),
            )
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": self.audiences},
        }
        url = self.server.url.rstrip("/") + "/apis/authentication.k8s.io/v1/tokenreviews"
        headers = {"Authorization": f"Bearer {self._own_credential()}"}
        try:
            async with self._session.post(url, json=review, headers=headers) as response:
                if response.status != 201 and response.status != 200:
                    raise ReviewUnavailableError(f"the API server answered {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ReviewUnavailableError(
                f"the API server gave no verdict: {type(error).__name__}"
            ) from error
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, dict) else {}

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
