"""The ``api`` requirement block: who may call a governed model server, how often, with what.

modelshield's inference guard (``modelshield.guard``) enforces it in front of the model
server. Every governing policy's block is enforced at once: a request passes only when
each Enforce policy lets it through, so a namespaced policy can add clients' limits and
checks to the cluster baseline's but never lift them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import pydantic

from modelshield.api.v1alpha1 import common
from modelshield.api.v1alpha1.common import ApiModel, Duration

#: The most a guard buffers of one request body: larger limits are refused by the schema.
MAX_BODY_BYTES_LIMIT = 64 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

#: ``namespace/name`` of a ServiceAccount.
SERVICE_ACCOUNT_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: API-key client names are the keys of a Secret's data: the Secret key syntax.
CLIENT_NAME_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: A model name as it appears in a KServe v1 or v2 path segment.
MODEL_NAME_PATTERN = r"^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$"

ServiceAccountName = Annotated[
    str, pydantic.Field(min_length=3, max_length=317, pattern=SERVICE_ACCOUNT_PATTERN)
]
NamespaceName = Annotated[
    str, pydantic.Field(min_length=1, max_length=63, pattern=common.DNS_LABEL_PATTERN)
]
GroupName = Annotated[str, pydantic.Field(min_length=1, max_length=253)]
ClientName = Annotated[
    str, pydantic.Field(min_length=1, max_length=253, pattern=CLIENT_NAME_PATTERN)
]
ModelName = Annotated[str, pydantic.Field(min_length=1, max_length=253, pattern=MODEL_NAME_PATTERN)]
Audience = Annotated[str, pydantic.Field(min_length=1, max_length=253)]


class ServiceAccountTokens(ApiModel):
    """Kubernetes ServiceAccount tokens, checked by a TokenReview with an audience."""

    audiences: list[Audience] = pydantic.Field(
        description=(
            "The token must be issued for one of these audiences (a projected token's "
            "audience, e.g. modelshield-guard); the TokenReview asks for them, so a token "
            "for the API server itself is refused unless its audience is listed."
        ),
        min_length=1,
        max_length=8,
    )
    cache_ttl: Duration = pydantic.Field(
        alias="cacheTTL",
        default="60s",
        description=(
            "How long a TokenReview verdict is reused; never past the token's own expiry "
            "(a refusal is kept for at most 10s)."
        ),
    )


class ApiKeys(ApiModel):
    """API keys, each mapped to a client name, kept hashed in a Secret."""

    secret_ref: common.ObjectReference = pydantic.Field(
        description=(
            "A Secret in the workload's namespace: each data key is a client name, each "
            "value the lowercase hex SHA-256 of that client's key (never the key itself). "
            "Clients send the key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'. "
            "Changes take effect without restarting the guard."
        )
    )


class Authentication(ApiModel):
    """How callers prove who they are."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.required || has(self.serviceAccountTokens) || has(self.apiKeys)",
                    "message": "required authentication needs serviceAccountTokens or apiKeys",
                }
            ]
        }
    )

    required: bool = pydantic.Field(
        default=True,
        description=(
            "Anonymous requests get 401. When several policies require authentication, a "
            "method is accepted only if each of them lists it."
        ),
    )
    service_account_tokens: ServiceAccountTokens | None = pydantic.Field(
        default=None, description="Accept Kubernetes ServiceAccount tokens."
    )
    api_keys: ApiKeys | None = pydantic.Field(default=None, description="Accept API keys.")

    @pydantic.model_validator(mode="after")
    def _a_method_when_required(self) -> Authentication:
        if self.required and self.service_account_tokens is None and self.api_keys is None:
            raise ValueError("required authentication needs serviceAccountTokens or apiKeys")
        return self


class Verb(StrEnum):
    """What a request asks of the model server (KServe v1 and Open Inference Protocol v2)."""

    #: ``POST /v1/models/<m>:predict``
    PREDICT = "Predict"
    #: ``POST /v1/models/<m>:explain``
    EXPLAIN = "Explain"
    #: ``POST /v2/models/<m>[/versions/<v>]/infer``
    INFER = "Infer"
    #: ``GET /v1/models/<m>``, ``GET /v2/models/<m>[/versions/<v>][/ready]``
    METADATA = "Metadata"
    #: ``GET /``, ``/v1/models``, ``/v2``, ``/v2/health/live``, ``/v2/health/ready``
    HEALTH = "Health"


_ONE_CLIENT_KIND = (
    "[self.serviceAccounts, self.namespaces, self.groups, self.apiKeyClients]"
    ".exists(l, size(l) > 0)"
)


class ClientRule(ApiModel):
    """Clients allowed to call some models with some verbs: a client matches when it is a
    listed service account or API-key client, or belongs to a listed namespace or group."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _ONE_CLIENT_KIND,
                    "message": "name clients: serviceAccounts, namespaces, groups or apiKeyClients",
                }
            ]
        }
    )

    service_accounts: list[ServiceAccountName] = pydantic.Field(
        default_factory=list,
        description="ServiceAccounts as namespace/name.",
        max_length=64,
        json_schema_extra={"default": []},
    )
    namespaces: list[NamespaceName] = pydantic.Field(
        default_factory=list,
        description="Every ServiceAccount of these namespaces.",
        max_length=64,
        json_schema_extra={"default": []},
    )
    groups: list[GroupName] = pydantic.Field(
        default_factory=list,
        description="Users in these groups, as the TokenReview reports them.",
        max_length=64,
        json_schema_extra={"default": []},
    )
    api_key_clients: list[ClientName] = pydantic.Field(
        default_factory=list,
        description="API-key clients, by the client name their key maps to.",
        max_length=64,
        json_schema_extra={"default": []},
    )
    models: list[ModelName] = pydantic.Field(
        default_factory=list,
        description="Model names these clients may call; empty: every model the server serves.",
        max_length=64,
    )
    verbs: list[Verb] = pydantic.Field(
        default_factory=list,
        description="What they may ask; empty: every verb.",
        max_length=5,
    )

    @pydantic.model_validator(mode="after")
    def _names_clients(self) -> ClientRule:
        if not (self.service_accounts or self.namespaces or self.groups or self.api_key_clients):
            raise ValueError("name clients: serviceAccounts, namespaces, groups or apiKeyClients")
        return self


class Authorization(ApiModel):
    """Which authenticated clients may call; everyone else gets 403."""

    allow: list[ClientRule] = pydantic.Field(
        description="A request is allowed when one rule matches its client, model and verb.",
        min_length=1,
        max_length=64,
    )


class RateLimit(ApiModel):
    """A token bucket: a sustained rate and the burst above it."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.burst) || double(self.burst) >= self.requestsPerSecond",
                    "message": "burst must be at least requestsPerSecond",
                }
            ]
        }
    )

    requests_per_second: float = pydantic.Field(
        description="Sustained requests per second.", gt=0, le=1_000_000
    )
    burst: int | None = pydantic.Field(
        default=None,
        description="Requests allowed at once above the rate; unset: requestsPerSecond rounded up.",
        ge=1,
        le=10_000_000,
    )

    @pydantic.model_validator(mode="after")
    def _burst_covers_rate(self) -> RateLimit:
        if self.burst is not None and self.burst < self.requests_per_second:
            raise ValueError("burst must be at least requestsPerSecond")
        return self


class ClientRateLimit(RateLimit):
    """A per-client token bucket, with an optional daily quota."""

    daily_quota: int | None = pydantic.Field(
        default=None,
        description="Requests per client per UTC day.",
        ge=1,
        le=1_000_000_000,
    )


class RateLimits(ApiModel):
    """Rate limits; over them a request gets 429 with Retry-After.

    The operator divides each limit among the guard's replicas (each replica allows its
    share), so adding replicas never multiplies a client's allowance.
    """

    per_client: ClientRateLimit | None = pydantic.Field(
        default=None, description="Each client's own limit (anonymous callers share one)."
    )
    per_model: RateLimit | None = pydantic.Field(
        default=None, description="Each model's limit, across all clients."
    )


class Protocol(StrEnum):
    """Inference protocols a request may speak."""

    KSERVE_V1 = "KServeV1"
    OPEN_INFERENCE_V2 = "OpenInferenceV2"


class RequestChecks(ApiModel):
    """What a request must look like; others get 400/413/415 and never reach the model."""

    max_body_bytes: int = pydantic.Field(
        default=DEFAULT_MAX_BODY_BYTES,
        description="Largest request body in bytes, chunked or not (413 above).",
        ge=1,
        le=MAX_BODY_BYTES_LIMIT,
    )
    content_types: list[Annotated[str, pydantic.Field(min_length=1, max_length=127)]] = (
        pydantic.Field(
            default_factory=lambda: ["application/json"],
            description="Media types a request body may have, without parameters (415 otherwise).",
            min_length=1,
            max_length=16,
            json_schema_extra={"default": ["application/json"]},
        )
    )
    protocols: list[Protocol] = pydantic.Field(
        default_factory=lambda: [Protocol.KSERVE_V1, Protocol.OPEN_INFERENCE_V2],
        description="Protocols the server may be called with; other paths get 404.",
        min_length=1,
        max_length=2,
        json_schema_extra={"default": ["KServeV1", "OpenInferenceV2"]},
    )
    max_json_depth: int = pydantic.Field(
        alias="maxJSONDepth",
        default=16,
        description="Deepest nesting of arrays and objects in a JSON body.",
        ge=2,
        le=64,
    )
    max_instances: int = pydantic.Field(
        default=10_000,
        description=(
            "Most rows one request may carry (v1 instances or inputs; v2 the first "
            "dimension of each input's shape)."
        ),
        ge=1,
        le=10_000_000,
    )
    match_reference_profile: bool = pydantic.Field(
        default=False,
        description=(
            "Check every row against the reference profile of this policy's "
            "monitoring.drift block: list rows need exactly its feature count, object rows "
            "exactly its feature names, numeric features numbers and categorical features "
            "strings (null allowed for either); Open Inference requests one FP/INT tensor "
            "whose last dimension is the feature count, or one tensor per feature named as in "
            "the profile. 400 otherwise."
        ),
    )


class OutlierAction(StrEnum):
    """What the guard does with a request that has an out-of-distribution row."""

    #: Forward it with an ``X-Modelshield-Outlier`` header, a metric and an audit line.
    FLAG = "Flag"
    #: Refuse it with 422 and the reason.
    REJECT = "Reject"


class OutlierChecks(ApiModel):
    """Score every input row against the reference profile's outlier model."""

    action: OutlierAction = pydantic.Field(
        default=OutlierAction.FLAG, description="Flag (forward, marked) or Reject (422)."
    )
    false_flag_rate: float = pydantic.Field(
        default=0.01,
        description=(
            "The share of in-distribution rows that may be flagged: the thresholds are set "
            "so that at most this share of the profile's held-out reference rows is flagged "
            "by the range, category, whole-number, conditional residual and Mahalanobis "
            "checks together (the whole-number check flags none of them: held-out rows are "
            "whole wherever the reference is). It cannot be smaller than one over the number "
            "of held-out rows the profile stores."
        ),
        gt=0,
        le=0.5,
    )


class ProbingAction(StrEnum):
    """What the guard does when a client's query stream looks like extraction or inversion."""

    #: A Kubernetes Event on the workload, a metric and an audit line.
    ALERT = "Alert"
    #: Alert, and hold the client to ``throttle`` for ``coolDown``.
    THROTTLE = "Throttle"
    #: Alert, and refuse the client with 403 for ``coolDown``.
    BLOCK = "Block"


class ProbingDetector(StrEnum):
    """Detectors of a client's query stream."""

    #: PRADA (Juuti et al. 2019): the distances of each new query to the client's earlier
    #: ones stop looking normally distributed (Shapiro-Wilk).
    DISTANCE_DISTRIBUTION = "DistanceDistribution"
    #: Queries that differ from an earlier query in one or two features only.
    SWEEP = "Sweep"
    #: Far more out-of-distribution queries than in-distribution traffic has (random
    #: points in the feature box); uses the outlier model at outliers.falseFlagRate.
    OUTLIER_SHARE = "OutlierShare"
    #: A query rate far above the client's own history.
    VOLUME = "Volume"
    #: Queries that move an earlier one by one fixed step per feature (Jacobian-based
    #: augmentation, Papernot et al. 2017).
    FIXED_STEPS = "FixedSteps"


class ProbingDetection(ApiModel):
    """Per-client detection of model extraction and inversion probing."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.action) || self.action != 'Throttle' || has(self.throttle)",
                    "message": "action Throttle needs throttle",
                }
            ]
        }
    )

    action: ProbingAction = pydantic.Field(
        default=ProbingAction.ALERT, description="Alert, Throttle or Block."
    )
    detectors: list[ProbingDetector] = pydantic.Field(
        default_factory=lambda: list(ProbingDetector),
        description="Which detectors run; default all five.",
        min_length=1,
        max_length=5,
        json_schema_extra={"default": [d.value for d in ProbingDetector]},
    )
    normality_threshold: float = pydantic.Field(
        default=0.8,
        description=(
            "DistanceDistribution alarms when the Shapiro-Wilk W of a client's minimum "
            "distances falls below this (PRADA's delta); lower: fewer alarms."
        ),
        gt=0.5,
        lt=1,
    )
    min_queries: int = pydantic.Field(
        default=100,
        description="Distinct queries a client sends before its stream is judged.",
        ge=20,
        le=100_000,
    )
    memory_per_client: int = pydantic.Field(
        default=1000,
        description="Queries remembered per client (oldest forgotten first).",
        ge=50,
        le=10_000,
    )
    max_clients: int = pydantic.Field(
        default=10_000,
        description="Clients remembered at once (the least recently seen forgotten first).",
        ge=1,
        le=1_000_000,
    )
    volume_factor: float = pydantic.Field(
        default=10.0,
        description="Volume alarms when a client's last minute is this many times its usual rate.",
        ge=2,
        le=10_000,
    )
    throttle: RateLimit | None = pydantic.Field(
        default=None, description="The rate a throttled client is held to."
    )
    cool_down: Duration = pydantic.Field(
        default="10m", description="How long a Throttle or Block lasts after the last alarm."
    )

    @pydantic.model_validator(mode="after")
    def _throttle_has_a_rate(self) -> ProbingDetection:
        if self.action is ProbingAction.THROTTLE and self.throttle is None:
            raise ValueError("action Throttle needs throttle")
        return self


class ResponseHardening(ApiModel):
    """Less information per answer: rounded and truncated class probabilities."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.roundDecimals) || has(self.topK)",
                    "message": "name roundDecimals or topK",
                }
            ]
        }
    )

    round_decimals: int | None = pydantic.Field(
        default=None,
        description=(
            "Round every floating-point number of a prediction (KServe v1 'predictions', "
            "Open Inference FP outputs) to this many decimals."
        ),
        ge=0,
        le=15,
    )
    top_k: int | None = pydantic.Field(
        alias="topK",
        default=None,
        description=(
            "Keep the k largest values of each row of class probabilities (a row: the last "
            "dimension of a 2-D FP output or a list of numbers in v1 'predictions'); the "
            "others are returned as 0, so the response keeps its shape."
        ),
        ge=1,
        le=1000,
    )

    @pydantic.model_validator(mode="after")
    def _something_to_do(self) -> ResponseHardening:
        if self.round_decimals is None and self.top_k is None:
            raise ValueError("name roundDecimals or topK")
        return self


class ApiRequirements(ApiModel):
    """API protection: an inference guard in front of the model server."""

    authentication: Authentication | None = pydantic.Field(
        default=None, description="How callers authenticate; unset: anonymous calls pass."
    )
    authorization: Authorization | None = pydantic.Field(
        default=None, description="Which clients may call; unset: every authenticated client."
    )
    rate_limits: RateLimits | None = pydantic.Field(
        default=None, description="Per-client and per-model rate limits."
    )
    requests: RequestChecks = pydantic.Field(
        default_factory=RequestChecks,
        description="Size, media type, protocol and JSON shape limits of requests.",
    )
    outliers: OutlierChecks | None = pydantic.Field(
        default=None,
        description=(
            "Flag or reject out-of-distribution rows: a feature past its reference range by "
            "more than the calibrated margin, an unseen category, a missing value the "
            "reference never had, a fraction in a feature whose reference values were all "
            "whole numbers, one feature out of line with what the others predict (conditional "
            "residual), or a Mahalanobis distance above the calibrated threshold. Needs "
            "monitoring.drift's profile."
        ),
    )
    probing: ProbingDetection | None = pydantic.Field(
        default=None,
        description=(
            "Detect extraction and inversion probing in each client's query stream. Needs "
            "monitoring.drift's profile (distances are measured in its units)."
        ),
    )
    responses: ResponseHardening | None = pydantic.Field(
        default=None, description="Round and truncate returned class probabilities."
    )
