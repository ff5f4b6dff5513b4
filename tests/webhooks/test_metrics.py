"""What the admission metrics count: every endpoint's answers, real verification failures once.

The handlers are called directly (the HTTPS path is test_server.py's); the numbers are
read from the server's own registry, as Prometheus would scrape them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from modelshield_webhooks import (
    caches,
    contexts,
    metrics,
    mutating,
    resources,
    validating,
)
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts


def _context(**policy_options: Any) -> contexts.AdmissionContext:
    return contexts.AdmissionContext(
        state=scenarios.standard_state(**policy_options),
        verifier=verdicts.FixedVerdictVerifierForTests(),
        clock=lambda: scenarios.NOW,
    )


def _value(context: contexts.AdmissionContext, name: str, **labels: str) -> float:
    value = context.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _body(info: scenarios.KindInfo, obj: dict[str, Any], operation: str = "CREATE") -> bytes:
    return json.dumps(scenarios.review(info, operation, obj)).encode()


def _requests(context: contexts.AdmissionContext, **labels: str) -> float:
    """Summed over the labels not given."""
    total = 0.0
    for family in context.metrics.registry.collect():
        if family.name != "modelshield_admission_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


async def test_an_unsigned_image_reviewed_again_is_one_failure() -> None:
    context = _context()
    info = scenarios.BY_LABEL["Deployment"]
    body = _body(info, scenarios.workload(info, [scenarios.UNSIGNED]))
    for _ in range(5):
        answer = await validating.review(body, context)
        assert answer["response"]["allowed"] is False
    failures = "modelshield_admission_verification_failures_total"
    assert _value(context, failures, reason="NoSignature") == 1.0
    cache = "modelshield_admission_verification_cache_total"
    assert _value(context, cache, endpoint="validate", result="miss") == 1.0
    assert _value(context, cache, endpoint="validate", result="hit") == 4.0
    assert _requests(context, endpoint="validate", decision="denied", enforcement="Enforce") == 5.0


async def test_mutate_to_digest_verifies_once_and_counts_it_once() -> None:
    context = _context(mutate_to_digest=True)
    info = scenarios.BY_LABEL["Deployment"]
    body = _body(info, scenarios.workload(info, [scenarios.UNSIGNED]))
    # The API server calls the mutating webhook, then the validating one.
    assert (await mutating.review(body, context))["response"]["allowed"] is True
    assert (await validating.review(body, context))["response"]["allowed"] is False
    assert isinstance(context.verifier, verdicts.FixedVerdictVerifierForTests)
    assert context.verifier.verifications == 1
    failures = "modelshield_admission_verification_failures_total"
    assert _value(context, failures, reason="NoSignature") == 1.0
    cache = "modelshield_admission_verification_cache_total"
    assert _value(context, cache, endpoint="mutate", result="miss") == 1.0
    assert _value(context, cache, endpoint="validate", result="hit") == 1.0
    assert _value(context, cache, endpoint="validate", result="miss") == 0.0
    assert _requests(context, endpoint="mutate", decision="allowed", kind="Deployment") == 1.0
    assert _requests(context, endpoint="validate", decision="denied", kind="Deployment") == 1.0


async def test_mutating_denials_reach_the_requests_counter() -> None:
    context = _context()
    context.state = caches.ClusterState()  # nothing listed yet: cannot decide
    info = scenarios.BY_LABEL["Pod"]
    answer = await mutating.review(_body(info, scenarios.workload(info)), context)
    assert answer["response"]["allowed"] is False
    assert (
        _requests(
            context,
            endpoint="mutate",
            kind="Pod",
            operation="CREATE",
            decision="denied",
            enforcement="error",
        )
        == 1.0
    )
    assert _value(context, "modelshield_admission_failures_total", reason="NotSynced") == 1.0


async def test_resource_denials_reach_the_requests_counter() -> None:
    context = _context()
    info = scenarios.KindInfo(
        "ModelSecurityPolicy", "modelshield.dev", "v1alpha1", "modelsecuritypolicies"
    )
    good = scenarios.policy(scenarios.ENFORCED)
    bad = scenarios.policy(scenarios.ENFORCED)
    bad["spec"]["enforcement"] = "Sometimes"
    assert (await resources.review(_body(info, good), context))["response"]["allowed"]
    assert not (await resources.review(_body(info, bad), context))["response"]["allowed"]
    common = {"endpoint": "validate-resources", "kind": "ModelSecurityPolicy"}
    assert _requests(context, **common, decision="allowed", enforcement="none") == 1.0
    assert _requests(context, **common, decision="denied", enforcement="invalid") == 1.0
    duration = "modelshield_admission_duration_seconds_count"
    assert _value(context, duration, endpoint="validate-resources") == 2.0


async def test_label_values_stay_bounded_whatever_the_request_says() -> None:
    context = _context()
    info = scenarios.KindInfo("Gadget", "example.com", "v1", "gadgets")
    for index in range(20):
        obj = {"apiVersion": "example.com/v1", "kind": f"Gadget{index}", "metadata": {}}
        await validating.review(_body(info, obj), context)
    await validating.review(b"not json", context)
    assert _requests(context, endpoint="validate", kind="other") == 20.0
    assert _requests(context, endpoint="validate", kind="unknown", operation="unknown") == 1.0
    kinds = {
        sample.labels["kind"]
        for family in context.metrics.registry.collect()
        if family.name == "modelshield_admission_requests"
        for sample in family.samples
    }
    assert kinds == {"other", "unknown"}


async def test_every_answer_is_timed_up_to_the_webhook_timeout() -> None:
    context = _context()
    info = scenarios.BY_LABEL["Pod"]
    body = _body(info, scenarios.workload(info, namespace=scenarios.UNGOVERNED))
    await validating.review(body, context)
    await mutating.review(body, context)
    await mutating.review(b"[]", context)
    duration = "modelshield_admission_duration_seconds"
    assert _value(context, f"{duration}_count", endpoint="validate") == 1.0
    assert _value(context, f"{duration}_count", endpoint="mutate") == 2.0
    assert max(metrics.DURATION_BUCKETS) >= contexts.WEBHOOK_TIMEOUT_SECONDS
    # The longest timeout Kubernetes allows is 30 s: a slow answer still lands in a bucket.
    assert max(metrics.DURATION_BUCKETS) >= 30.0


def test_cache_age_is_read_at_scrape_time() -> None:
    counters = metrics.Metrics()
    heard = {caches.POLICIES: time.monotonic() - 42.0}
    counters.track_caches(lambda: heard)
    text = counters.render().decode()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("modelshield_admission_cache_age_seconds{")
    )
    assert f'kind="{caches.POLICIES}"' in line
    assert 42.0 <= float(line.rsplit(" ", 1)[1]) < 60.0
    heard[caches.POLICIES] = time.monotonic()
    age = counters.registry.get_sample_value(
        "modelshield_admission_cache_age_seconds", {"kind": caches.POLICIES}
    )
    assert age is not None
    assert age < 5.0


def test_views_share_the_counters() -> None:
    counters = metrics.Metrics()
    found = verdicts.image_facts(scenarios.UNSIGNED)
    counters.at("mutate").verification(found, cached=False)
    counters.at("validate").verification(found, cached=True)
    assert counters.at("mutate") is counters.at("mutate")
    cache = "modelshield_admission_verification_cache_total"
    assert counters.registry.get_sample_value(cache, {"endpoint": "mutate", "result": "miss"}) == 1
    assert counters.registry.get_sample_value(cache, {"endpoint": "validate", "result": "hit"}) == 1
    failures = "modelshield_admission_verification_failures_total"
    assert counters.registry.get_sample_value(failures, {"reason": "NoSignature"}) == 1
