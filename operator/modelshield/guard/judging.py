"""Whether the governing policies let one request through. Pure.

A request is judged in two stages, cheapest first: ``judge_head`` (protocol, identity,
authorization, rate limits; before the body is read) and ``judge_body`` (size, media
type, JSON shape). Each stage asks every policy; the first refusal of an Enforce policy
is the answer, and every Audit policy's would-be refusal is kept for headers, metrics and
the audit line. A rate limit is spent only when every Enforce policy admits the request
(so one policy's refusal never spends another's allowance).

Later stages (issue 15's model-aware defences) are further functions of the same form:
(rules, route, identity, parsed body) → refusals.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import Any

from modelshield.engine import apiprotection
from modelshield.engine.apiprotection import GuardRules, PolicyApi
from modelshield.engine.decisions import PolicyRef
from modelshield.guard import credentials, ratelimits, requestchecks, routes


class Code(enum.StrEnum):
    """Why a request is refused (the ``reason`` label of the metrics)."""

    UNAUTHENTICATED = "Unauthenticated"
    INVALID_CREDENTIAL = "InvalidCredential"
    FORBIDDEN = "Forbidden"
    RATE_LIMITED = "RateLimited"
    #: A source presented more tokens not in the verdict cache than it may have reviewed.
    TOO_MANY_NEW_TOKENS = "TooManyNewTokens"
    QUOTA_EXCEEDED = "QuotaExceeded"
    BODY_TOO_LARGE = "BodyTooLarge"
    MEDIA_TYPE = "UnsupportedMediaType"
    MALFORMED = "Malformed"
    NO_ROUTE = "NoRoute"
    #: Model-aware defences (``modelshield.guard.defending``).
    OUT_OF_DISTRIBUTION = "OutOfDistribution"
    PROBING = "Probing"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, as authentication established it."""

    client: str
    method: credentials.Kind | None = None
    #: ``namespace/name`` for a ServiceAccount token.
    service_account: str | None = None
    namespace: str | None = None
    groups: frozenset[str] = frozenset()
    #: The audiences the TokenReview confirmed the token is valid for.
    audiences: frozenset[str] = frozenset()
    #: The API-key client name, and the Secrets that list its key.
    api_key_client: str | None = None
    api_key_secrets: frozenset[str] = frozenset()


ANONYMOUS = Identity(client="anonymous")


@dataclasses.dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """A credential that was presented and refused (forged, expired, unknown key...)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """One policy's refusal of a request."""

    status: int
    code: Code
    reason: str
    policy: PolicyRef | None
    enforced: bool = True
    retry_after: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a stage: the refusal that is enforced (if any), and Audit's."""

    refusal: Refusal | None
    audited: tuple[Refusal, ...] = ()


#: The verdict of a stage that refuses nothing (frozen, so one is shared by every request).
ADMITTED = Verdict(None)


def _verdict(found: Iterable[Refusal]) -> Verdict:
    refusals = list(found)
    if not refusals:
        return ADMITTED
    enforced = next((r for r in refusals if r.enforced), None)
    return Verdict(enforced, tuple(r for r in refusals if not r.enforced))


def _refusal(policy: PolicyApi, status: int, code: Code, reason: str, **extra: Any) -> Refusal:
    return Refusal(status, code, reason, policy.ref, enforced=policy.enforced, **extra)


def _authentication(policy: PolicyApi, identity: Identity | AuthenticationFailed) -> Refusal | None:
    if isinstance(identity, AuthenticationFailed):
        # A credential that was presented and is not good is refused by every policy,
        # also one that would admit anonymous calls: fail closed.
        return _refusal(policy, 401, Code.INVALID_CREDENTIAL, identity.reason)
    if identity.method is None or not policy.authenticates:
        # A policy without an authentication block has no opinion on who is calling.
        if identity.method is None and policy.authentication_required:
            return _refusal(policy, 401, Code.UNAUTHENTICATED, "authentication is required")
        return None
    if identity.method is credentials.Kind.SERVICE_ACCOUNT_TOKEN:
        if policy.audiences is None:
            return _refusal(
                policy, 401, Code.UNAUTHENTICATED, "ServiceAccount tokens are not accepted"
            )
        if not identity.audiences & policy.audiences:
            wanted = ", ".join(sorted(policy.audiences))
            return _refusal(
                policy, 401, Code.INVALID_CREDENTIAL, f"the token is not issued for {wanted}"
            )
    elif policy.api_key_secret is None:
        return _refusal(policy, 401, Code.UNAUTHENTICATED, "API keys are not accepted")
    elif policy.api_key_secret not in identity.api_key_secrets:
        return _refusal(
            policy,
            401,
            Code.INVALID_CREDENTIAL,
            f"the key is not in Secret {policy.api_key_secret}",
        )
    return None


def client_matches(rule: apiprotection.ClientRule, identity: Identity) -> bool:
    """Whether the rule names this client."""
    if identity.method is credentials.Kind.API_KEY:
        return identity.api_key_client in rule.api_key_clients
    if identity.method is credentials.Kind.SERVICE_ACCOUNT_TOKEN:
        return (
            identity.service_account in rule.service_accounts
            or identity.namespace in rule.namespaces
            or bool(identity.groups & rule.groups)
        )
    return False


def _authorization(policy: PolicyApi, identity: Identity, route: routes.Route) -> Refusal | None:
    if policy.allow is None:
        return None
    for rule in policy.allow:
        if not client_matches(rule, identity):
            continue
        model_ok = not rule.models or (route.model is not None and route.model in rule.models)
        if model_ok and (not rule.verbs or route.verb in rule.verbs):
            return None
    target = f"model {route.model!r}" if route.model else "the server"
    return _refusal(
        policy,
        403,
        Code.FORBIDDEN,
        f"{identity.client} may not {route.verb.value} {target}",
    )


#: One limit a policy sets: the code and words of its refusal, its buckets or quotas,
#: and whether it counts by model (else by client).
_Limit = tuple[Code, str, ratelimits.TokenBuckets | ratelimits.DailyQuotas, bool]


class Limiter:
    """The token buckets and quotas of every policy, one set per policy."""

    def __init__(self, rules: GuardRules, *, max_keys: int = 100_000) -> None:
        #: Per policy (by its index in the rules), its limits in the order they are
        #: checked: per client, the daily quota, per model. Made once, not per request.
        self._limits_of: list[tuple[_Limit, ...]] = []
        for policy in rules.policies:
            limits: list[_Limit] = []
            if policy.per_client is not None:
                bucket = policy.per_client
                buckets = ratelimits.TokenBuckets(bucket.rate, bucket.burst, max_keys=max_keys)
                limits.append((Code.RATE_LIMITED, "client", buckets, False))
            if policy.daily_quota is not None:
                quotas = ratelimits.DailyQuotas(policy.daily_quota, max_keys=max_keys)
                limits.append((Code.QUOTA_EXCEEDED, "daily quota", quotas, False))
            if policy.per_model is not None:
                bucket = policy.per_model
                buckets = ratelimits.TokenBuckets(bucket.rate, bucket.burst, max_keys=max_keys)
                limits.append((Code.RATE_LIMITED, "model", buckets, True))
            self._limits_of.append(tuple(limits))

    def check(
        self, rules: GuardRules, identity: Identity, route: routes.Route, now: float
    ) -> list[Refusal]:
        """Refusals of the limits that have no token for this request; spends none."""
        refusals = []
        for policy, limits in zip(rules.policies, self._limits_of, strict=False):
            for code, what, limit, by_model in limits:
                key = route.model if by_model else identity.client
                if key is None:
                    continue  # a per-model limit, and the path names no model
                wait = limit.wait(key, now)
                if wait > 0:
                    reason = (
                        f"{identity.client} has used its daily quota"
                        if code is Code.QUOTA_EXCEEDED
                        else f"over the {what} rate limit of {key}"
                    )
                    refusals.append(
                        _refusal(
                            policy, 429, code, reason, retry_after=ratelimits.retry_after(wait)
                        )
                    )
        return refusals

    def spend(self, rules: GuardRules, identity: Identity, route: routes.Route, now: float) -> None:
        """Spend a token of every limit the request falls under."""
        for limits in self._limits_of[: len(rules.policies)]:
            for _, _, limit, by_model in limits:
                key = route.model if by_model else identity.client
                if key is not None:
                    limit.take(key, now)


def judge_head(
    rules: GuardRules,
    route: routes.Route,
    identity: Identity | AuthenticationFailed,
    limiter: Limiter,
    now: float,
) -> Verdict:
    """Protocol, authentication, authorization and rate limits, before the body is read."""
    refusals: list[Refusal] = []
    for policy in rules.policies:
        if route.protocol not in policy.protocols:
            refusals.append(
                _refusal(policy, 404, Code.NO_ROUTE, f"{route.protocol.value} is not served")
            )
            continue
        refusal = _authentication(policy, identity)
        if refusal is None and isinstance(identity, Identity):
            refusal = _authorization(policy, identity, route)
        if refusal is not None:
            refusals.append(refusal)
    verdict = _verdict(refusals)
    if verdict.refusal is not None or isinstance(identity, AuthenticationFailed):
        return verdict
    limited = limiter.check(rules, identity, route, now)
    verdict = _verdict([*refusals, *limited])
    if verdict.refusal is None:
        limiter.spend(rules, identity, route, now)
    return verdict


def judge_body(
    rules: GuardRules,
    route: routes.Route,
    content_type: str | None,
    body: bytes,
    features: tuple[requestchecks.Feature, ...] | None = None,
) -> tuple[Verdict, Any]:
    """Size, media type and shape of the body; the parsed document (None if not parsed)."""
    refusals: list[Refusal] = []
    document: Any = None
    measured: int | None = None
    parsed = False
    for policy in rules.policies:
        refusal = _body_refusal(policy, route, content_type, body)
        if refusal is None and route.has_body:
            if not parsed:
                (document, measured), parsed = requestchecks.parse_json_measured(body), True
            if isinstance(document, requestchecks.BodyError):
                refusal = _refusal(policy, document.status, Code.MALFORMED, document.reason)
            else:
                error = requestchecks.check_shape(
                    document,
                    route.protocol,
                    route.verb,
                    max_depth=policy.max_json_depth,
                    max_instances=policy.max_instances,
                    measured_depth=measured,
                )
                if error is None and policy.match_reference_profile:
                    error = (
                        requestchecks.BodyError(503, "the reference profile is not available")
                        if features is None
                        else requestchecks.check_profile(
                            document, route.protocol, route.verb, features
                        )
                    )
                if error is not None:
                    refusal = _refusal(policy, error.status, Code.MALFORMED, error.reason)
        if refusal is not None:
            refusals.append(refusal)
    verdict = _verdict(refusals)
    if not parsed and route.has_body and verdict.refusal is None:
        # Audit policies refused before parsing: the document is still wanted downstream.
        document = requestchecks.parse_json(body)
    if isinstance(document, requestchecks.BodyError):
        document = None
    return verdict, document


def _body_refusal(
    policy: PolicyApi, route: routes.Route, content_type: str | None, body: bytes
) -> Refusal | None:
    if len(body) > policy.max_body_bytes:
        return _refusal(
            policy,
            413,
            Code.BODY_TOO_LARGE,
            f"the body is larger than {policy.max_body_bytes} bytes",
        )
    if not route.has_body:
        if body:
            return _refusal(policy, 400, Code.MALFORMED, f"{route.verb.value} takes no body")
        return None
    error = requestchecks.check_media_type(content_type, policy.content_types)
    return None if error is None else _refusal(policy, error.status, Code.MEDIA_TYPE, error.reason)


def too_large(rules: GuardRules, length: int) -> Verdict:
    """The verdict on a body known (from Content-Length or reading) to be ``length`` bytes."""
    return _verdict(
        _refusal(p, 413, Code.BODY_TOO_LARGE, f"the body is larger than {p.max_body_bytes} bytes")
        for p in rules.policies
        if length > p.max_body_bytes
    )


def merge(verdicts: Sequence[Verdict]) -> Verdict:
    """Stages in order: the first enforced refusal, and every audited one."""
    enforced = None
    audited: tuple[Refusal, ...] = ()
    for verdict in verdicts:
        if enforced is None:
            enforced = verdict.refusal
        audited += verdict.audited
    if enforced is None and not audited:
        return ADMITTED
    return Verdict(enforced, audited)
