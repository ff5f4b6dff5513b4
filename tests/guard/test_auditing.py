"""The audit line: every field, in order, for plain answers (their text before the
latency made once per kind) and for refusals, notes, audited refusals and flags alike."""

from __future__ import annotations

import json
import logging
import random

import pytest

from modelshield.api.v1alpha1.apiprotection import Protocol, Verb
from modelshield.engine.decisions import PolicyRef
from modelshield.guard import auditing, judging, metrics, routes

POLICY = PolicyRef("ModelSecurityPolicy", "ml", "api")


def _reference(outcome: auditing.Outcome, method: str, seconds: float) -> str:
    """The line as one encoding of the whole document (how it was written before)."""
    verdict = outcome.verdict
    decision = "refused" if outcome.refused else ("audited" if verdict.audited else "allowed")
    route = outcome.route
    return json.dumps(
        {
            "client": outcome.client,
            "method": method,
            "model": route.model if route else None,
            "verb": route.verb.value if route else None,
            "decision": decision,
            "status": outcome.status,
            "reason": verdict.refusal.reason if verdict.refusal else (outcome.note or None),
            "policy": str(verdict.refusal.policy)
            if verdict.refusal and verdict.refusal.policy
            else None,
            "audited": [f"{r.code.value} by {r.policy}" for r in verdict.audited],
            "outliers": list(outcome.flags) or None,
            "latencyMs": round(seconds * 1000, 3),
        },
        separators=(",", ":"),
    )


def _outcomes(generator: random.Random) -> auditing.Outcome:
    refusal = judging.Refusal(429, judging.Code.RATE_LIMITED, "over the limit", POLICY)
    audit = judging.Refusal(403, judging.Code.FORBIDDEN, "no", POLICY, enforced=False)
    kind = generator.randrange(5)
    verdict = (
        judging.Verdict(refusal)
        if kind == 1
        else judging.Verdict(None, (audit,))
        if kind == 2
        else judging.ADMITTED
    )
    return auditing.Outcome(
        client=generator.choice(["apikey:batch", 'odd "client" \u00e9', "anonymous", "invalid"]),
        route=generator.choice(
            [
                routes.Route(Protocol.KSERVE_V1, Verb.PREDICT, "fraud"),
                routes.Route(Protocol.OPEN_INFERENCE_V2, Verb.HEALTH, None),
                None,
            ]
        ),
        verdict=verdict,
        status=generator.choice([200, 401, 429, 502]),
        refused=kind == 1,
        note="model server timed out" if kind == 3 else "",
        flags=["OutOfDistribution [ml/api]"] if kind == 4 else (),
    )


def test_every_line_is_the_whole_documents_encoding(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=auditing.AUDIT_LOGGER.name)
    generator = random.Random(1414)  # noqa: S311 (test data, not secrets)
    guard_metrics = metrics.GuardMetrics()
    expected: list[str] = []
    for _ in range(400):
        outcome = _outcomes(generator)
        method = generator.choice(["POST", "GET"])
        seconds = generator.choice([0.0, 0.0004567, 1.5, 12.0, 1e-9, generator.random()])
        auditing.record(guard_metrics, method, outcome, seconds)
        expected.append(_reference(outcome, method, seconds))
    lines = [r.getMessage() for r in caplog.records if r.name == auditing.AUDIT_LOGGER.name]
    assert lines == expected
    assert auditing._PLAIN_PREFIXES  # plain answers were among them


def test_plain_kinds_kept_are_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=auditing.AUDIT_LOGGER.name)
    monkeypatch.setattr(auditing, "_PLAIN_PREFIXES", {})
    monkeypatch.setattr(auditing, "_PLAIN_PREFIX_LIMIT", 3)
    guard_metrics = metrics.GuardMetrics()
    for index in range(10):
        outcome = auditing.Outcome(client=f"apikey:{index}", status=200)
        auditing.record(guard_metrics, "POST", outcome, 0.001)
    assert len(auditing._PLAIN_PREFIXES) == 3
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert [line["client"] for line in lines] == [f"apikey:{index}" for index in range(10)]
