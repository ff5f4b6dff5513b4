"""The defences stage on its own: Audit policies report and never throttle, block or reject."""

from __future__ import annotations

from typing import Any

import numpy as np
import prometheus_client
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.api.v1alpha1 import apiprotection, policies
from modelshield.engine.decisions import PolicyRef
from modelshield.guard import defending, outliermodel, probing, routes

DATA = load_breast_cancer().data
NAMES = [f"f{i}" for i in range(DATA.shape[1])]
MODEL = outliermodel.to_document(
    outliermodel.build({n: DATA[:400, i].tolist() for i, n in enumerate(NAMES)}, NAMES)
)
_PARSED = routes.parse("POST", "/v1/models/fraud:predict")
assert isinstance(_PARSED, routes.Route)
ROUTE: routes.Route = _PARSED


def _defences(enforcement: policies.Enforcement, api: dict[str, Any]) -> defending.Defences:
    block = apiprotection.ApiRequirements.model_validate(api)
    ref = PolicyRef("ModelSecurityPolicy", "ml", "p")
    return defending.Defences(
        [(ref, enforcement, block)], MODEL, prometheus_client.CollectorRegistry()
    )


def _sweep(defences: defending.Defences) -> list[defending.Judgement]:
    judgements = []
    for index, value in enumerate(np.linspace(DATA[:400, 1].min(), DATA[:400, 1].max(), 80)):
        row = [float(v) for v in DATA[450]]
        row[1] = float(value)
        judgements.append(defences.judge("apikey:c", ROUTE, {"instances": [row]}, float(index)))
    return judgements


def test_audit_block_alarms_but_never_refuses() -> None:
    api = {"probing": {"action": "Block", "detectors": ["Sweep"]}}
    judgements = _sweep(_defences(policies.Enforcement.AUDIT, api))
    assert all(j.verdict.refusal is None for j in judgements)
    assert sum(len(j.alarms) for j in judgements) == 1


def test_enforce_block_refuses_from_the_alarm_on() -> None:
    api = {"probing": {"action": "Block", "detectors": ["Sweep"]}}
    judgements = _sweep(_defences(policies.Enforcement.ENFORCE, api))
    refused = [j.verdict.refusal is not None for j in judgements]
    first = refused.index(True)
    assert all(refused[first:])
    refusal = judgements[first].verdict.refusal
    assert refusal is not None
    assert refusal.status == 403


def test_audit_reject_reports_the_outlier_and_forwards() -> None:
    far = [float(v) for v in DATA[450]]
    far[0] = float(DATA[:400, 0].max()) * 3
    defences = _defences(policies.Enforcement.AUDIT, {"outliers": {"action": "Reject"}})
    judgement = defences.judge("c", ROUTE, {"instances": [far]}, 0.0)
    assert judgement.verdict.refusal is None
    (audited,) = judgement.verdict.audited
    assert audited.status == 422
    assert "feature 'f0'" in audited.reason


def test_probing_remembers_no_more_clients_than_its_memory_budget_holds() -> None:
    """maxClients x memoryPerClient at their bounds asks for gigabytes (30 features); the
    guard, limited to 512Mi, remembers fewer clients rather than be OOM-killed."""
    asked = {"probing": {"action": "Alert", "maxClients": 1_000_000, "memoryPerClient": 10_000}}
    (policy,) = _defences(policies.Enforcement.ENFORCE, asked).policies
    assert policy.prober is not None
    settings = policy.prober.settings
    per_client = probing.memory_bytes(settings, len(NAMES))
    # As many clients as fit in the budget, and not one more.
    assert settings.max_clients * per_client <= defending.PROBING_MEMORY_BUDGET_BYTES
    assert (settings.max_clients + 1) * per_client > defending.PROBING_MEMORY_BUDGET_BYTES

    small = {"probing": {"action": "Alert", "maxClients": 50}}
    (policy,) = _defences(policies.Enforcement.ENFORCE, small).policies
    assert policy.prober is not None
    assert policy.prober.settings.max_clients == 50


def test_enforce_throttle_holds_the_client_to_its_rate_from_the_alarm_on() -> None:
    """One query a second against a throttle of one every two seconds: from the alarm on,
    every other request is refused with 429; before it, none."""
    api = {
        "probing": {
            "action": "Throttle",
            "detectors": ["Sweep"],
            "throttle": {"requestsPerSecond": 0.5, "burst": 1},
        }
    }
    judgements = _sweep(_defences(policies.Enforcement.ENFORCE, api))
    statuses = [j.verdict.refusal.status if j.verdict.refusal else 200 for j in judgements]
    alarmed = next(i for i, j in enumerate(judgements) if j.alarms)
    assert set(statuses[:alarmed]) == {200}
    after = statuses[alarmed + 1 :]
    assert after.count(429) >= len(after) // 2 - 1
    assert 200 in after


def test_an_admitted_request_refuses_nothing_and_a_policy_without_probing_never_throttles() -> None:
    defences = _defences(policies.Enforcement.ENFORCE, {"outliers": {"action": "Reject"}})
    row = [float(v) for v in DATA[450]]
    judgement = defences.judge("c", ROUTE, {"instances": [row]}, 0.0)
    assert judgement.verdict.refusal is None
    assert judgement.verdict.audited == ()
    assert judgement.flags == []
    assert judgement.alarms == []
