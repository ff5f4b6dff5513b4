"""The guard's per-request counters: each finished request counted once, under its labels."""

from __future__ import annotations

from modelshield.guard import metrics


def test_each_answer_is_counted_under_its_own_labels() -> None:
    guard_metrics = metrics.GuardMetrics()
    guard_metrics.answered("apikey:batch", "allowed", 200, 0.002)
    guard_metrics.answered("apikey:batch", "allowed", 200, 0.004)
    guard_metrics.answered("apikey:batch", "refused", 429, 0.0001)
    guard_metrics.answered("anonymous", "refused", 401, 0.0001)
    registry = guard_metrics.registry

    def requests(client: str, decision: str, status: str) -> float | None:
        labels = {"client": client, "decision": decision, "status": status}
        return registry.get_sample_value("modelshield_guard_requests_total", labels)

    assert requests("apikey:batch", "allowed", "200") == 2.0
    assert requests("apikey:batch", "refused", "429") == 1.0
    assert requests("anonymous", "refused", "401") == 1.0
    assert requests("anonymous", "allowed", "200") is None
    count = "modelshield_guard_request_seconds_count"
    assert registry.get_sample_value(count, {"decision": "allowed"}) == 2.0
    assert registry.get_sample_value(count, {"decision": "refused"}) == 2.0
    total = "modelshield_guard_request_seconds_sum"
    assert registry.get_sample_value(total, {"decision": "allowed"}) == 0.006
