"""Who is calling: a request's credential turned into an identity.

ServiceAccount tokens go to a TokenReview (``tokenreviews``), API keys are looked up by
digest among the keys the policies name (``apikeys``); no credential is the anonymous
identity, which the policies then judge (``judging.judge_head``).
"""

from __future__ import annotations

from modelshield.guard import apikeys, credentials, judging, tokenreviews

#: At most this many API keys' identities are kept (more: all are dropped and made again).
KEPT_IDENTITIES = 10_000


class Authenticator:
    """Turns a credential into an identity, with the methods the policies configure."""

    def __init__(
        self, reviewer: tokenreviews.TokenReviewer | None, keys: apikeys.KeyStore | None
    ) -> None:
        self.reviewer = reviewer
        self.keys = keys
        #: Digest of a known key -> its match and identity (known keys only: bounded).
        self._api_key_identities: dict[str, tuple[apikeys.KeyMatch, judging.Identity]] = {}

    def known(
        self, credential: credentials.Credential | None
    ) -> judging.Identity | judging.AuthenticationFailed | None:
        """The caller's identity when nothing needs to be asked for it (anonymous, an API
        key, a token whose verdict is cached); None when a TokenReview must be asked
        (``identify``). The guard's hot path calls this without a coroutine."""
        if credential is None:
            return judging.ANONYMOUS
        if credential.kind is credentials.Kind.SERVICE_ACCOUNT_TOKEN:
            if self.reviewer is None:
                return judging.AuthenticationFailed("ServiceAccount tokens are not accepted")
            return self.reviewer.cached(credential)
        return self._api_key_identity(credential)

    async def identify(
        self, credential: credentials.Credential | None, source: str = ""
    ) -> judging.Identity | judging.AuthenticationFailed:
        """The caller's identity; raises ReviewUnavailableError when no verdict can be had,
        ReviewsThrottledError when ``source`` (the peer's address) has presented too many
        tokens not in the cache (``tokenreviews.NEW_TOKENS_PER_SECOND``)."""
        found = self.known(credential)
        if found is not None:
            return found
        # known() answers None only for a token whose verdict is not cached, with a reviewer.
        assert credential is not None
        assert self.reviewer is not None
        return await self.reviewer.review(credential, source)

    def _api_key_identity(
        self, credential: credentials.Credential
    ) -> judging.Identity | judging.AuthenticationFailed:
        digest = credential.digest
        match = self.keys.lookup(digest) if self.keys is not None else None
        if match is None:
            return judging.AuthenticationFailed("the API key is not known")
        # Identities are frozen: one per known key, made again when the key's match is a
        # new one (the Secrets were read again).
        kept = self._api_key_identities.get(digest)
        if kept is not None and kept[0] is match:
            return kept[1]
        identity = judging.Identity(
            client=f"apikey:{match.client}",
            method=credentials.Kind.API_KEY,
            api_key_client=match.client,
            api_key_secrets=match.secrets,
        )
        if len(self._api_key_identities) >= KEPT_IDENTITIES:
            self._api_key_identities.clear()  # keys rotated many times: start again
        self._api_key_identities[digest] = (match, identity)
        return identity
