"""The defences stage on its own: Audit policies report and never throttle, block or reject."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import prometheus_client
import pytest
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


def _units_seen(
    monkeypatch: pytest.MonkeyPatch, model: dict[str, Any], requests: list[list[list[float]]]
) -> tuple[list[np.ndarray], defending.Defences]:
    seen: list[np.ndarray] = []

    def record(
        stream: probing.ClientStream, query: np.ndarray, flagged: bool = False
    ) -> list[probing.Alarm]:
        seen.append(query.copy())
        return []

    monkeypatch.setattr(probing.ClientStream, "observe", record)
    block = apiprotection.ApiRequirements.model_validate({"probing": {}, "outliers": {}})
    ref = PolicyRef("ModelSecurityPolicy", "ml", "p")
    defences = defending.Defences(
        [(ref, policies.Enforcement.ENFORCE, block)], model, prometheus_client.CollectorRegistry()
    )
    with np.errstate(over="ignore", invalid="ignore"):
        for index, rows in enumerate(requests):
            defences.judge("c", ROUTE, {"instances": rows}, float(index))
    return seen, defences


@pytest.mark.parametrize("constant", [False, True])
def test_the_detectors_get_the_first_formulas_standard_units_through_the_stage(
    monkeypatch: pytest.MonkeyPatch, constant: bool
) -> None:
    """The stage hands the probing detectors the outlier score's standard units when they
    are the prober's (every feature varies, every value finite) and the prober computes
    its own otherwise: bit for bit the first formula's, for plain rows, missing values,
    infinities, huge values and two-row requests, with and without a constant feature."""
    data = DATA[:400].copy()
    if constant:
        data[:, 3] = 5.0
    model = outliermodel.to_document(
        outliermodel.build({n: data[:, i].tolist() for i, n in enumerate(NAMES)}, NAMES)
    )
    rng = np.random.default_rng(20)
    plain = [[float(v) for v in row] for row in DATA[400:460]]
    requests: list[list[list[float]]] = [[row] for row in plain[:40]]
    requests[3][0][2] = math.nan
    requests[5][0][4] = math.inf
    requests[6][0][7] = -1e308
    requests[7][0][1] = 1e300
    requests += [plain[40 + 2 * i : 42 + 2 * i] for i in range(10)]
    requests[45][1][0] = math.nan
    for rows in requests:
        for row in rows:
            row[9] += float(rng.normal(0, 1e-3))
    seen, defences = _units_seen(monkeypatch, model, requests)
    fitted = outliermodel.from_document(model).fitted
    (policy,) = defences.policies
    assert policy.prober is not None
    assert policy.prober.takes_scores_units is not constant
    scale = np.where(fitted.std > 0, fitted.std, 1.0)
    with np.errstate(over="ignore"):
        expected = [
            row
            for rows in requests
            for row in (np.where(np.isnan(np.asarray(rows)), fitted.mean, rows) - fitted.mean)
            / scale
        ]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected, strict=True):
        assert got.tobytes() == want.tobytes()
