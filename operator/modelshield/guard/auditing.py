"""What is said about each request once it is done: the audit line and the metrics.

One JSON line per request on the ``modelshield.guard.audit`` logger (client, model, verb,
decision, status, reason, the policy that refused, Audit policies' would-be refusals,
out-of-distribution flags, latency) and the matching counters in ``metrics``. Credentials
never reach an ``Outcome``, so they cannot reach the line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

from modelshield.guard import judging, metrics, routes

AUDIT_LOGGER = logging.getLogger("modelshield.guard.audit")
#: One encoder for every line (``json.dumps`` with options builds a new one per call).
_LINE = json.JSONEncoder(separators=(",", ":"))


@dataclasses.dataclass(slots=True)
class Outcome:
    """What the audit line and the metrics say about one request."""

    client: str = "anonymous"
    route: routes.Route | None = None
    #: Verdicts are frozen: the shared ``ADMITTED`` until a stage says otherwise.
    verdict: judging.Verdict = judging.ADMITTED
    status: int = 0
    refused: bool = False
    note: str = ""
    #: Out-of-distribution flags (``defending``) for the response header and audit line.
    flags: Sequence[str] = ()


#: (client, method, route, decision, status) -> the line before its latency, for lines
#: with no refusal, note, audited refusal or flag: exactly what ``_LINE`` writes for them
#: (the latency is last; a float is written as its repr), encoded once per kind. Bounded:
#: once full, further kinds are encoded on every request and not kept.
_PLAIN_PREFIXES: dict[tuple[str, str, routes.Route | None, str, int], str] = {}
_PLAIN_PREFIX_LIMIT = 4096


def _fields(
    outcome: Outcome, method: str, decision: str, enforced: judging.Refusal | None
) -> dict[str, Any]:
    """The audit line's fields but its latency, in the line's order."""
    route = outcome.route
    return {
        "client": outcome.client,
        "method": method,
        "model": route.model if route else None,
        "verb": route.verb.value if route else None,
        "decision": decision,
        "status": outcome.status,
        "reason": enforced.reason if enforced else (outcome.note or None),
        "policy": str(enforced.policy) if enforced and enforced.policy else None,
        "audited": [f"{r.code.value} by {r.policy}" for r in outcome.verdict.audited],
        "outliers": outcome.flags or None,
    }


def record(
    guard_metrics: metrics.GuardMetrics, method: str, outcome: Outcome, seconds: float
) -> None:
    """Count one finished request (``method``: its HTTP method) and write its audit line."""
    verdict = outcome.verdict
    enforced, audited = verdict.refusal, verdict.audited
    decision = "refused" if outcome.refused else ("audited" if audited else "allowed")
    guard_metrics.answered(outcome.client, decision, outcome.status, seconds)
    if enforced is not None or audited:
        for refusal in (enforced, *audited) if enforced is not None else audited:
            guard_metrics.refusals.labels(
                refusal.code.value, str(refusal.policy or ""), str(refusal.enforced).lower()
            ).inc()
            if refusal.status == 429:
                guard_metrics.rate_limited.labels(outcome.client).inc()
    if not AUDIT_LOGGER.isEnabledFor(logging.INFO):
        return
    route = outcome.route
    latency = round(seconds * 1000, 3)
    if enforced is None and not audited and not outcome.note and not outcome.flags:
        # Most lines differ only in their latency: the rest is encoded once per kind.
        key = (outcome.client, method, route, decision, outcome.status)
        prefix = _PLAIN_PREFIXES.get(key)
        if prefix is None:
            prefix = _LINE.encode(_fields(outcome, method, decision, None))[:-1]
            prefix += ',"latencyMs":'
            if len(_PLAIN_PREFIXES) < _PLAIN_PREFIX_LIMIT:
                _PLAIN_PREFIXES[key] = prefix
        line = f"{prefix}{latency!r}}}"
    else:
        fields = _fields(outcome, method, decision, enforced)
        fields["latencyMs"] = latency
        line = _LINE.encode(fields)
    # What Logger.info does, without looking up the caller's frame (the line says what it
    # is about; the record's source is this function).
    AUDIT_LOGGER.handle(
        AUDIT_LOGGER.makeRecord(
            AUDIT_LOGGER.name, logging.INFO, __file__, 0, line, (), None, "record"
        )
    )
