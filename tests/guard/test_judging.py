"""The decision on one request, and how several policies' blocks combine."""

from __future__ import annotations

import dataclasses

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.engine.apiprotection import GuardRules
from modelshield.guard import credentials, judging, requestchecks
from modelshield.guard.routes import Route
from tests.guard.policies import BOTH, KEYS, TOKENS, block, rules

PREDICT = Route(Protocol.KSERVE_V1, Verb.PREDICT, "fraud")
OTHER = Route(Protocol.KSERVE_V1, Verb.PREDICT, "other")
INFER = Route(Protocol.OPEN_INFERENCE_V2, Verb.INFER, "fraud")
SCORER = judging.Identity(
    client="serviceaccount:payments/scorer",
    method=credentials.Kind.SERVICE_ACCOUNT_TOKEN,
    service_account="payments/scorer",
    namespace="payments",
    groups=frozenset({"system:serviceaccounts", "system:serviceaccounts:payments"}),
    audiences=frozenset({"modelshield-guard"}),
)
BATCH = judging.Identity(
    client="apikey:batch",
    method=credentials.Kind.API_KEY,
    api_key_client="batch",
    api_key_secrets=frozenset({"model-keys"}),
)
ALLOW_SCORER = {
    "authorization": {"allow": [{"serviceAccounts": ["payments/scorer"], "models": ["fraud"]}]}
}


def _head(
    guard: GuardRules,
    identity: judging.Identity | judging.AuthenticationFailed,
    route: Route = PREDICT,
) -> judging.Verdict:
    return judging.judge_head(guard, route, identity, judging.Limiter(guard), 0.0)


def test_anonymous_is_401_when_required_and_passes_when_not() -> None:
    verdict = _head(rules(block(TOKENS)), judging.ANONYMOUS)
    assert verdict.refusal is not None
    assert (verdict.refusal.status, verdict.refusal.code) == (401, judging.Code.UNAUTHENTICATED)
    assert _head(rules(block({})), judging.ANONYMOUS).refusal is None


def test_a_refused_credential_is_401_even_where_anonymous_passes() -> None:
    verdict = _head(rules(block({})), judging.AuthenticationFailed("expired"))
    assert verdict.refusal is not None
    assert verdict.refusal.status == 401


def test_token_for_another_audience_is_401() -> None:
    other = dataclasses.replace(SCORER, audiences=frozenset({"https://kubernetes.default.svc"}))
    verdict = _head(rules(block(TOKENS)), other)
    assert verdict.refusal is not None
    assert verdict.refusal.code is judging.Code.INVALID_CREDENTIAL


def test_method_not_accepted_by_the_policy_is_401() -> None:
    assert _head(rules(block(TOKENS)), BATCH).refusal is not None
    assert _head(rules(block(KEYS)), SCORER).refusal is not None
    assert _head(rules(block(BOTH)), BATCH).refusal is None


def test_key_from_another_secret_is_401() -> None:
    elsewhere = judging.Identity(
        client="apikey:batch",
        method=credentials.Kind.API_KEY,
        api_key_client="batch",
        api_key_secrets=frozenset({"other-model-keys"}),
    )
    verdict = _head(rules(block(KEYS)), elsewhere)
    assert verdict.refusal is not None
    assert "model-keys" in verdict.refusal.reason


def test_authorization_by_client_model_and_verb() -> None:
    guard = rules(block({**BOTH, **ALLOW_SCORER}))
    assert _head(guard, SCORER).refusal is None
    refused = _head(guard, SCORER, OTHER).refusal
    assert refused is not None
    assert (refused.status, refused.reason) == (
        403,
        "serviceaccount:payments/scorer may not Predict model 'other'",
    )
    refused = _head(guard, BATCH).refusal
    assert refused is not None
    assert refused.status == 403


def test_rules_by_namespace_group_and_api_key_client() -> None:
    for allow in (
        {"namespaces": ["payments"]},
        {"groups": ["system:serviceaccounts:payments"]},
    ):
        guard = rules(block({**TOKENS, "authorization": {"allow": [allow]}}))
        assert _head(guard, SCORER).refusal is None, allow
    guard = rules(
        block(
            {**KEYS, "authorization": {"allow": [{"apiKeyClients": ["batch"], "verbs": ["Infer"]}]}}
        )
    )
    assert _head(guard, BATCH, INFER).refusal is None
    assert _head(guard, BATCH, PREDICT).refusal is not None
    # A ServiceAccount named like the API-key client is not that client.
    namesake = dataclasses.replace(SCORER, service_account="batch")
    assert _head(guard, namesake, INFER).refusal is not None


def test_server_wide_paths_need_a_rule_without_models() -> None:
    health = Route(Protocol.OPEN_INFERENCE_V2, Verb.HEALTH, None)
    assert _head(rules(block({**TOKENS, **ALLOW_SCORER})), SCORER, health).refusal is not None
    open_health = {"authorization": {"allow": [{"namespaces": ["payments"], "verbs": ["Health"]}]}}
    assert _head(rules(block({**TOKENS, **open_health})), SCORER, health).refusal is None


def test_a_namespaced_policy_can_only_tighten_the_baseline() -> None:
    baseline = block(
        {**TOKENS, "authorization": {"allow": [{"namespaces": ["payments"]}]}},
        kind="ClusterModelSecurityPolicy",
        name="baseline",
    )
    # The namespaced policy tries to widen: API keys and another namespace.
    wider = block(
        {
            **BOTH,
            "authorization": {
                "allow": [{"namespaces": ["payments", "batch"]}, {"apiKeyClients": ["batch"]}]
            },
        }
    )
    guard = rules(baseline, wider)
    assert _head(guard, SCORER).refusal is None
    refused = _head(guard, BATCH).refusal
    assert refused is not None
    assert refused.policy is not None
    assert refused.policy.name == "baseline"
    outsider = dataclasses.replace(SCORER, namespace="batch", service_account="batch/job")
    assert _head(guard, outsider).refusal is not None


def test_audit_policies_report_and_never_refuse() -> None:
    audit = block({**TOKENS, **ALLOW_SCORER}, enforcement="Audit", name="audit-api")
    verdict = _head(rules(audit), judging.ANONYMOUS)
    assert verdict.refusal is None
    assert [r.code for r in verdict.audited] == [judging.Code.UNAUTHENTICATED]
    assert not verdict.audited[0].enforced


def test_rate_limit_429_with_retry_after_and_per_model() -> None:
    guard = rules(
        block({**TOKENS, "rateLimits": {"perClient": {"requestsPerSecond": 1, "burst": 2}}})
    )
    limiter = judging.Limiter(guard)
    assert judging.judge_head(guard, PREDICT, SCORER, limiter, 0.0).refusal is None
    assert judging.judge_head(guard, PREDICT, SCORER, limiter, 0.0).refusal is None
    refused = judging.judge_head(guard, PREDICT, SCORER, limiter, 0.0).refusal
    assert refused is not None
    assert (refused.status, refused.retry_after) == (429, 1)
    assert judging.judge_head(guard, PREDICT, SCORER, limiter, 1.0).refusal is None
    per_model = rules(block({"rateLimits": {"perModel": {"requestsPerSecond": 1}}}))
    limiter = judging.Limiter(per_model)
    assert judging.judge_head(per_model, PREDICT, BATCH, limiter, 0.0).refusal is None
    assert judging.judge_head(per_model, PREDICT, SCORER, limiter, 0.0).refusal is not None
    assert judging.judge_head(per_model, OTHER, SCORER, limiter, 0.0).refusal is None


def test_one_policy_refusing_spends_no_other_allowance() -> None:
    generous = block({"rateLimits": {"perClient": {"requestsPerSecond": 1, "burst": 1}}}, name="a")
    strict = block({**TOKENS, **ALLOW_SCORER}, name="b")
    guard = rules(generous, strict)
    limiter = judging.Limiter(guard)
    for _ in range(3):  # refused by b (anonymous): a's single token stays
        assert (
            judging.judge_head(guard, PREDICT, judging.ANONYMOUS, limiter, 0.0).refusal is not None
        )
    assert judging.judge_head(guard, PREDICT, SCORER, limiter, 0.0).refusal is None


def test_replicas_divide_the_allowance() -> None:
    guard = rules(
        block(
            {"rateLimits": {"perClient": {"requestsPerSecond": 10, "burst": 10, "dailyQuota": 9}}},
            replicas=2,
        )
    )
    policy = guard.policies[0]
    assert policy.per_client is not None
    assert (policy.per_client.rate, policy.per_client.burst, policy.daily_quota) == (5.0, 5.0, 4)


def test_daily_quota() -> None:
    guard = rules(block({"rateLimits": {"perClient": {"requestsPerSecond": 100, "dailyQuota": 2}}}))
    limiter = judging.Limiter(guard)
    for _ in range(2):
        assert judging.judge_head(guard, PREDICT, BATCH, limiter, 10.0).refusal is None
    refused = judging.judge_head(guard, PREDICT, BATCH, limiter, 10.0).refusal
    assert refused is not None
    assert refused.code is judging.Code.QUOTA_EXCEEDED
    assert refused.retry_after == 86390


def test_body_checks_take_the_strictest_enforced_limit() -> None:
    small = block({"requests": {"maxBodyBytes": 10}}, name="small")
    large = block({"requests": {"maxBodyBytes": 1000}}, name="large")
    guard = rules(large, small)
    assert guard.read_limit == 10
    verdict, _ = judging.judge_body(guard, PREDICT, "application/json", b'{"instances": [[1, 2]]}')
    assert verdict.refusal is not None
    assert (verdict.refusal.status, verdict.refusal.policy and verdict.refusal.policy.name) == (
        413,
        "small",
    )
    audit_only = rules(block({"requests": {"maxBodyBytes": 10}}, enforcement="Audit"))
    assert audit_only.read_limit == 64 * 1024 * 1024
    verdict, document = judging.judge_body(
        audit_only, PREDICT, "application/json", b'{"instances": [[1, 2]]}'
    )
    assert verdict.refusal is None
    assert [r.status for r in verdict.audited] == [413]
    assert document == {"instances": [[1, 2]]}


def test_body_on_a_get_and_the_media_type() -> None:
    guard = rules(block({}))
    metadata = Route(Protocol.KSERVE_V1, Verb.METADATA, "fraud")
    verdict, _ = judging.judge_body(guard, metadata, None, b"x")
    assert verdict.refusal is not None
    assert verdict.refusal.status == 400
    verdict, _ = judging.judge_body(guard, PREDICT, "text/plain", b'{"instances": [[1]]}')
    assert verdict.refusal is not None
    assert verdict.refusal.status == 415


def test_protocol_not_served_is_404() -> None:
    guard = rules(block({"requests": {"protocols": ["KServeV1"]}}))
    verdict = _head(guard, judging.ANONYMOUS, INFER)
    assert verdict.refusal is not None
    assert verdict.refusal.status == 404


def test_rows_against_the_reference_profile_or_fail_closed() -> None:
    guard = rules(block({"requests": {"matchReferenceProfile": True}}))
    features = (requestchecks.Feature("a", numeric=True), requestchecks.Feature("b", numeric=True))
    verdict, _ = judging.judge_body(
        guard, PREDICT, "application/json", b'{"instances": [[1, 2]]}', features
    )
    assert verdict.refusal is None
    verdict, _ = judging.judge_body(
        guard, PREDICT, "application/json", b'{"instances": [[1]]}', features
    )
    assert verdict.refusal is not None
    assert verdict.refusal.status == 400
    verdict, _ = judging.judge_body(guard, PREDICT, "application/json", b'{"instances": [[1, 2]]}')
    assert verdict.refusal is not None
    assert verdict.refusal.status == 503  # no profile: nothing passes unchecked
