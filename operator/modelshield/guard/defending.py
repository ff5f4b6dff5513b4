"""The guard's model-aware stage: outlier checks, probing detection, response hardening.

It runs after ``judging.judge_body`` has admitted a request (so on rows whose shape is
known) and before the request is forwarded: ``Defences.judge`` scores the rows against
the outlier model once and asks each policy's ``outliers`` (Flag: a header, a metric, an
audit line; Reject: 422 with the reason) and ``probing`` block (a client under a Block
gets 403, under a Throttle its own small rate, 429 above it; every alarm is a metric and
an audit line naming the client and the reason). ``Defences.harden`` rewrites the model's
answer as the Enforce policies' ``responses`` blocks ask. Audit policies report what
they would refuse and never throttle, block or rewrite.

A policy that needs the outlier model when the profile has none (or one that cannot be
calibrated at the declared rate) fails closed: 503 under Enforce, naming the cause.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import prometheus_client

from modelshield.api.v1alpha1 import apiprotection, common, policies
from modelshield.engine.decisions import PolicyRef
from modelshield.guard import (
    hardening,
    judging,
    outliermodel,
    outlierscoring,
    outliertypes,
    probing,
    ratelimits,
    requestrows,
    routes,
)

ALARM_LOGGER = logging.getLogger("modelshield.guard.alarms")
OUTLIER_HEADER = "X-Modelshield-Outlier"
#: The probing detectors' outlier rate when the policy declares no outliers block.
DEFAULT_OUTLIER_RATE = 0.01
#: What the probing summaries of all clients may hold: half the guard's default memory
#: limit (512Mi). A policy's maxClients x memoryPerClient can ask for gigabytes; past the
#: limit the guard would be OOM-killed and its model unreachable, so fewer clients are
#: remembered instead (the least recently seen forgotten first), and the log says so.
PROBING_MEMORY_BUDGET_BYTES = 256 * 2**20
_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Penalty:
    until: float
    block: bool


def _within_budget(settings: probing.Settings, width: int, ref: PolicyRef) -> probing.Settings:
    """The settings with no more clients than PROBING_MEMORY_BUDGET_BYTES can hold."""
    per_client = probing.memory_bytes(settings, width)
    affordable = max(1, PROBING_MEMORY_BUDGET_BYTES // per_client)
    if affordable >= settings.max_clients:
        return settings
    _logger.warning(
        "%s: probing remembers %d clients, not maxClients %d: %d KiB each (%d features) "
        "within the guard's probing budget of %d MiB",
        ref,
        affordable,
        settings.max_clients,
        per_client // 1024,
        width,
        PROBING_MEMORY_BUDGET_BYTES // 2**20,
    )
    return dataclasses.replace(settings, max_clients=affordable)


class _PolicyDefences:
    """One policy's defences, compiled."""

    def __init__(
        self,
        ref: PolicyRef,
        enforcement: policies.Enforcement,
        api: apiprotection.ApiRequirements,
        model: outliertypes.OutlierModel | None,
        problem: str | None,
    ) -> None:
        self.ref = ref
        self.enforced = enforcement is policies.Enforcement.ENFORCE
        self.outliers = api.outliers
        self.probing = api.probing
        self.responses = api.responses
        self.unavailable: str | None = None
        self.limits: outlierscoring.Thresholds | None = None
        self.prober: probing.Prober | None = None
        #: Clients under a Block or Throttle (only a probing policy ever adds one).
        self.penalties: collections.OrderedDict[str, _Penalty] = collections.OrderedDict()
        needs_model = self.outliers is not None or self.probing is not None
        if needs_model and model is None:
            self.unavailable = problem or "the reference profile has no outlier model"
        elif needs_model and model is not None:
            # Probing alone needs the outlier check only for OutlierShare: at a rate the
            # stored rows can always honour.
            rate = (
                self.outliers.false_flag_rate
                if self.outliers
                else max(DEFAULT_OUTLIER_RATE, 2 / model.held_out_excess.size)
            )
            try:
                self.limits = outlierscoring.thresholds(model, rate)
            except outlierscoring.CalibrationError as error:
                self.unavailable = str(error)
        if self.probing is not None and model is not None and self.limits is not None:
            fitted = model.fitted
            settings = probing.Settings(
                detectors=frozenset(probing.Detector(d.value) for d in self.probing.detectors),
                normality_threshold=self.probing.normality_threshold,
                min_queries=self.probing.min_queries,
                memory=self.probing.memory_per_client,
                max_clients=self.probing.max_clients,
                volume_factor=self.probing.volume_factor,
                outlier_rate=max(self.limits.held_out_rate, 1e-4),
                quiet_after_alarm=common.parse_duration(self.probing.cool_down).total_seconds(),
                near_duplicate=model.near_duplicate,
            )
            settings = _within_budget(settings, fitted.mean.size, ref)
            self.prober = probing.Prober(fitted.mean, fitted.std, settings)
            self.cool_down = common.parse_duration(self.probing.cool_down).total_seconds()
            throttle = self.probing.throttle
            self.throttle = (
                ratelimits.TokenBuckets(
                    throttle.requests_per_second,
                    float(throttle.burst or max(1, int(throttle.requests_per_second))),
                    max_keys=self.probing.max_clients,
                )
                if throttle is not None
                else None
            )

    def refusal(
        self, status: int, code: judging.Code, reason: str, **extra: Any
    ) -> judging.Refusal:
        return judging.Refusal(status, code, reason, self.ref, enforced=self.enforced, **extra)

    def penalty(self, client: str, now: float) -> judging.Refusal | None:
        """403 for a blocked client, 429 over a throttled client's rate (Enforce only)."""
        if self.prober is None or not self.enforced:
            return None
        found = self.penalties.get(client)
        if found is None:
            return None
        if found.until <= now:
            del self.penalties[client]
            return None
        if found.block:
            return self.refusal(
                403,
                judging.Code.PROBING,
                f"{client} is blocked for probing the model until {found.until:.0f} (epoch s)",
            )
        assert self.throttle is not None
        wait = self.throttle.wait(client, now)
        if wait > 0:
            return self.refusal(
                429,
                judging.Code.PROBING,
                f"{client} is throttled for probing the model",
                retry_after=ratelimits.retry_after(wait),
            )
        self.throttle.take(client, now)
        return None

    def punish(self, client: str, now: float) -> None:
        """Start (or extend) the client's Block or Throttle."""
        assert self.probing is not None
        if self.probing.action is apiprotection.ProbingAction.ALERT or not self.enforced:
            return
        block = self.probing.action is apiprotection.ProbingAction.BLOCK
        self.penalties[client] = _Penalty(now + self.cool_down, block)
        self.penalties.move_to_end(client)
        if len(self.penalties) > self.probing.max_clients:
            self.penalties.popitem(last=False)


@dataclasses.dataclass
class Judgement:
    """What the stage decided about one request."""

    verdict: judging.Verdict
    #: ``X-Modelshield-Outlier`` values of Flag policies (and of Reject under Audit).
    flags: list[str] = dataclasses.field(default_factory=list)
    alarms: list[tuple[PolicyRef, probing.Alarm]] = dataclasses.field(default_factory=list)


class Defences:
    """Every governing policy's model-aware defences."""

    def __init__(
        self,
        blocks: Sequence[tuple[PolicyRef, policies.Enforcement, apiprotection.ApiRequirements]],
        model_document: dict[str, Any] | None,
        registry: prometheus_client.CollectorRegistry,
    ) -> None:
        model: outliertypes.OutlierModel | None = None
        problem = None
        if model_document is not None:
            try:
                model = outliermodel.from_document(model_document)
            except outliermodel.OutlierModelError as error:
                problem = f"the outlier model cannot be read: {error}"
        self.model = model
        self.policies = [_PolicyDefences(r, e, a, model, problem) for r, e, a in blocks]
        self.scoring = [p for p in self.policies if p.outliers or p.probing]
        enforced = [p.responses for p in self.policies if p.enforced and p.responses]
        found = None
        for block in enforced:
            step = hardening.Hardening(block.round_decimals, block.top_k)
            found = step if found is None else found.stricter(step)
        self.hardening = found
        self.outliers_seen = prometheus_client.Counter(
            "modelshield_guard_outliers",
            "Out-of-distribution requests, by policy and action (Flag, Reject).",
            ["policy", "action"],
            registry=registry,
        )
        self.alarms_raised = prometheus_client.Counter(
            "modelshield_guard_probing_alarms",
            "Probing alarms, by client, detector and policy.",
            ["client", "detector", "policy"],
            registry=registry,
        )

    @property
    def active(self) -> bool:
        """Whether any request needs this stage."""
        return bool(self.scoring)

    def judge(self, client: str, route: routes.Route, document: Any, now: float) -> Judgement:
        """The stage's verdict on a request the earlier stages admitted."""
        refusals: list[judging.Refusal] = []
        # The shared verdict that refuses nothing, replaced below if anything is refused.
        judgement = Judgement(judging.ADMITTED)
        penalised = set()
        for index, policy in enumerate(self.scoring):
            if policy.penalties and (penalty := policy.penalty(client, now)) is not None:
                refusals.append(penalty)
                penalised.add(index)
        rows: requestrows.Rows | None = None
        scores: outlierscoring.Scores | None = None
        row_error: str | None = None
        if self.model is not None and route.has_body:
            try:
                rows = requestrows.extract(self.model.fitted, document, route.protocol, route.verb)
            except requestrows.RowError as error:
                row_error = str(error)
            if rows is not None and rows.count:
                scores = outlierscoring.score(self.model.fitted, rows.numeric, rows.categorical)
        for index, policy in enumerate(self.scoring):
            if index in penalised:
                continue
            if policy.unavailable is not None:
                refusals.append(
                    policy.refusal(503, judging.Code.OUT_OF_DISTRIBUTION, policy.unavailable)
                )
                continue
            if row_error is not None:
                refusals.append(
                    policy.refusal(
                        422,
                        judging.Code.OUT_OF_DISTRIBUTION,
                        f"the rows cannot be scored: {row_error}",
                    )
                )
                continue
            if rows is None or scores is None or policy.limits is None or self.model is None:
                continue
            found = outlierscoring.flagged(
                self.model.fitted, policy.limits, rows.numeric, rows.categorical, scores
            )
            if policy.outliers is not None and found:
                row, reason = found[0]
                text = f"row {row}: {reason}" + (
                    f" (and {len(found) - 1} more rows)" if len(found) > 1 else ""
                )
                action = policy.outliers.action
                self.outliers_seen.labels(str(policy.ref), action.value).inc()
                if action is apiprotection.OutlierAction.REJECT:
                    refusals.append(policy.refusal(422, judging.Code.OUT_OF_DISTRIBUTION, text))
                else:
                    judgement.flags.append(f"{text} [{policy.ref}]")
            if policy.prober is not None:
                # A list, not a numpy array: two numpy calls on a one-row request cost
                # more than the loop (found is nearly always empty).
                marks = [False] * rows.count
                for row, _ in found:
                    marks[row] = True
                # The score's standard units of the rows are the prober's when both were
                # built from this model's mean and std (as here) and its scale is the std.
                standard = scores.standard if policy.prober.takes_scores_units else None
                raised = policy.prober.observe(client, rows.numeric, now, marks, standard)
                for alarm in raised:
                    judgement.alarms.append((policy.ref, alarm))
                    self.alarms_raised.labels(client, alarm.detector.value, str(policy.ref)).inc()
                    ALARM_LOGGER.warning(
                        "probing alarm: client=%s detector=%s policy=%s: %s",
                        client,
                        alarm.detector.value,
                        policy.ref,
                        alarm.reason,
                    )
                    policy.punish(client, now)
                if raised and (penalty := policy.penalty(client, now)) is not None:
                    refusals.append(penalty)
        if refusals:
            enforced = next((r for r in refusals if r.enforced), None)
            audited = tuple(r for r in refusals if not r.enforced)
            judgement.verdict = judging.Verdict(enforced, audited)
        return judgement

    def harden(self, body: bytes, route: routes.Route) -> bytes:
        """The model's answer with the Enforce policies' hardening applied."""
        if self.hardening is None or not body:
            return body
        return hardening.harden(body, route.protocol, self.hardening)
