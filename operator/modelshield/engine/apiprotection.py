"""The ``api`` blocks of the policies that govern one workload, combined for its guard. Pure.

Policies combine the way the rest of the engine combines them: each governing policy is
judged on its own and a request passes only when every Enforce policy lets it through
(Audit policies' refusals are reported, never enforced). A namespaced policy can so add
limits and checks to the cluster baseline's but never lift one: its allow rules cannot
admit a client the baseline refuses, its rate limit only adds a second bucket, its body
limit only a second ceiling.

What the guard needs once rather than per policy is derived here: the audiences a
TokenReview must ask for (every policy's), the API-key Secrets to mount, and how much of
a body to read (the smallest Enforce ceiling; with Audit policies only, the schema's
largest, since Audit forwards everything it reports).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Iterable

from modelshield.api.v1alpha1 import apiprotection, common, policies
from modelshield.engine import decisions

Verb = apiprotection.Verb
Protocol = apiprotection.Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket's size for one guard replica."""

    rate: float
    burst: float


@dataclasses.dataclass(frozen=True, slots=True)
class ClientRule:
    """One allow rule, as sets."""

    service_accounts: frozenset[str]
    namespaces: frozenset[str]
    groups: frozenset[str]
    api_key_clients: frozenset[str]
    #: Empty: every model.
    models: frozenset[str]
    #: Empty: every verb.
    verbs: frozenset[Verb]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyApi:
    """One policy's ``api`` block, compiled for the guard."""

    ref: decisions.PolicyRef
    enforcement: policies.Enforcement
    #: Whether the policy has an authentication block (and so an opinion on methods).
    authenticates: bool
    authentication_required: bool
    #: Audiences a ServiceAccount token must have for this policy; None: tokens not accepted.
    audiences: frozenset[str] | None
    #: The Secret of API keys; None: API keys not accepted.
    api_key_secret: str | None
    token_cache_ttl: datetime.timedelta
    #: None: every authenticated client may call.
    allow: tuple[ClientRule, ...] | None
    per_client: Bucket | None
    daily_quota: int | None
    per_model: Bucket | None
    max_body_bytes: int
    content_types: frozenset[str]
    protocols: frozenset[Protocol]
    max_json_depth: int
    max_instances: int
    #: Rows must match the workload's reference profile (features, names, types).
    match_reference_profile: bool = False

    @property
    def enforced(self) -> bool:
        """Whether this policy's refusals are enforced (Enforce) or only reported (Audit)."""
        return self.enforcement is policies.Enforcement.ENFORCE


@dataclasses.dataclass(frozen=True, slots=True)
class GuardRules:
    """Everything the guard of one workload enforces."""

    policies: tuple[PolicyApi, ...]
    #: Every audience any policy accepts: what the TokenReview asks for.
    audiences: frozenset[str]
    #: Secret names of API keys, in the workload's namespace.
    api_key_secrets: frozenset[str]
    #: How many body bytes the guard reads before it refuses with 413.
    read_limit: int
    #: The shortest verdict cache TTL of the policies that accept tokens.
    token_cache_ttl: datetime.timedelta


DEFAULT_TOKEN_CACHE_TTL = datetime.timedelta(seconds=60)


def _bucket(limit: apiprotection.RateLimit | None, replicas: int) -> Bucket | None:
    if limit is None:
        return None
    burst = limit.burst if limit.burst is not None else math.ceil(limit.requests_per_second)
    # Each replica gets its share, so replicas never multiply an allowance; a burst never
    # drops below one request, or a replica could serve nothing at all.
    return Bucket(rate=limit.requests_per_second / replicas, burst=max(1.0, burst / replicas))


def _rule(rule: apiprotection.ClientRule) -> ClientRule:
    return ClientRule(
        service_accounts=frozenset(rule.service_accounts),
        namespaces=frozenset(rule.namespaces),
        groups=frozenset(rule.groups),
        api_key_clients=frozenset(rule.api_key_clients),
        models=frozenset(rule.models),
        verbs=frozenset(rule.verbs),
    )


def compile_api(
    ref: decisions.PolicyRef,
    enforcement: policies.Enforcement,
    api: apiprotection.ApiRequirements,
    *,
    replicas: int = 1,
) -> PolicyApi:
    """Compile one policy's block; rate limits are divided among ``replicas``."""
    if replicas < 1:
        raise ValueError("a guard has at least one replica")
    authentication = api.authentication
    tokens = authentication.service_account_tokens if authentication else None
    keys = authentication.api_keys if authentication else None
    limits = api.rate_limits
    per_client = limits.per_client if limits else None
    daily = per_client.daily_quota if per_client else None
    return PolicyApi(
        ref=ref,
        enforcement=enforcement,
        authenticates=authentication is not None,
        authentication_required=bool(authentication and authentication.required),
        audiences=frozenset(tokens.audiences) if tokens else None,
        api_key_secret=keys.secret_ref.name if keys else None,
        token_cache_ttl=(
            common.parse_duration(tokens.cache_ttl) if tokens else DEFAULT_TOKEN_CACHE_TTL
        ),
        allow=tuple(_rule(r) for r in api.authorization.allow) if api.authorization else None,
        per_client=_bucket(per_client, replicas),
        # A daily quota cannot be refilled by a replica's share of time: divided like the rest.
        daily_quota=max(1, daily // replicas) if daily is not None else None,
        per_model=_bucket(limits.per_model if limits else None, replicas),
        max_body_bytes=api.requests.max_body_bytes,
        content_types=frozenset(t.lower() for t in api.requests.content_types),
        protocols=frozenset(api.requests.protocols),
        max_json_depth=api.requests.max_json_depth,
        max_instances=api.requests.max_instances,
        match_reference_profile=api.requests.match_reference_profile,
    )


def policy_ref(
    policy: policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy,
) -> decisions.PolicyRef:
    """The reference that names a policy in refusals and audit lines."""
    cluster = isinstance(policy, policies.ClusterModelSecurityPolicy)
    return decisions.PolicyRef(
        kind=policy.kind,
        namespace="" if cluster else policy.metadata.namespace,
        name=policy.metadata.name,
    )


def combine(blocks: Iterable[PolicyApi]) -> GuardRules:
    """The guard's rules for a workload governed by these policies' ``api`` blocks."""
    compiled = tuple(blocks)
    if not compiled:
        raise ValueError("a guard needs at least one api block")
    enforced_limits = [p.max_body_bytes for p in compiled if p.enforced]
    ttls = [p.token_cache_ttl for p in compiled if p.audiences is not None]
    return GuardRules(
        policies=compiled,
        audiences=frozenset(a for p in compiled for a in (p.audiences or ())),
        api_key_secrets=frozenset(p.api_key_secret for p in compiled if p.api_key_secret),
        read_limit=(
            min(enforced_limits) if enforced_limits else apiprotection.MAX_BODY_BYTES_LIMIT
        ),
        token_cache_ttl=min(ttls) if ttls else DEFAULT_TOKEN_CACHE_TTL,
    )


def rules_for(
    governing: Iterable[policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy],
    *,
    replicas: int = 1,
) -> GuardRules | None:
    """The guard's rules from the governing policies; None when none has an ``api`` block."""
    blocks = [
        compile_api(policy_ref(p), p.spec.enforcement, p.spec.api, replicas=replicas)
        for p in governing
        if p.spec.api is not None
    ]
    return combine(blocks) if blocks else None
