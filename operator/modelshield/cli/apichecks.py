"""What ``modelshield test`` says about a policy's model-aware runtime defences
(``spec.api.outliers``, ``probing``, ``responses``) beyond the schema. Pure.

The guard answers 503 to every request of a model whose policy needs an outlier model it
cannot use (no ``outliers`` key in the reference profile, an unreadable one, or a
``falseFlagRate`` the profile's held-out rows cannot honour): offline, when the profile's
ConfigMap is among the resources, those are **errors**. **Warnings** are settings that do
not do what they seem to: Throttle/Block, Reject and response hardening under Audit; a
throttle no slower than the client's own rate limit; probing summaries that can outgrow
the guard's default memory limit; a network block that admits no source (the guard takes
the block's sources, so no client could call the model).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from modelshield.api.v1alpha1 import apiprotection, policies
from modelshield.controllers.builders import driftmonitors
from modelshield.guard import defending, outliermodel, outlierscoring, probing

#: The guard's memory limit unless the operator is configured otherwise.
GUARD_MEMORY_LIMIT = driftmonitors.MonitorSettings(image="").memory_limit
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}

AnyPolicy = policies.ModelSecurityPolicy | policies.ClusterModelSecurityPolicy


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing to say about a policy: an error (the guard would fail closed) or a warning."""

    error: bool
    field: str
    message: str


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity with a binary or decimal suffix (or none), in bytes."""
    for suffix, factor in sorted(_UNITS.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


def judge(
    policy: AnyPolicy, configmaps: Mapping[tuple[str, str], Mapping[str, str]]
) -> list[Finding]:
    """The findings for one policy; ``configmaps`` by (namespace, name): their ``data``."""
    api = policy.spec.api
    if api is None:
        return []
    found = _audit_warnings(policy.spec.enforcement, api)
    network = policy.spec.network
    if (
        network is not None
        and not network.ingress
        and policy.spec.enforcement is policies.Enforcement.ENFORCE
    ):
        found.append(
            Finding(
                False,
                "spec.network.ingress",
                "empty: with an api block clients reach the model through its guard, and the "
                "guard admits only the sources the network block allows: no client can call "
                "the model (list the clients' namespaces or pods)",
            )
        )
    probe = api.probing
    limits = api.rate_limits
    if (
        probe is not None
        and probe.throttle is not None
        and limits is not None
        and limits.per_client is not None
        and probe.throttle.requests_per_second >= limits.per_client.requests_per_second
    ):
        found.append(
            Finding(
                False,
                "spec.api.probing.throttle.requestsPerSecond",
                f"{probe.throttle.requests_per_second:g} is not below the client's own rate "
                f"limit ({limits.per_client.requests_per_second:g}/s): throttling a prober "
                "changes nothing",
            )
        )
    drift = policy.spec.monitoring.drift if policy.spec.monitoring is not None else None
    if (api.outliers is None and probe is None) or drift is None:
        return found
    reference = drift.reference_profile
    namespace = (
        policy.metadata.namespace if isinstance(policy, policies.ModelSecurityPolicy) else None
    )
    profiles = [
        (where, data)
        for where, data in configmaps.items()
        if where[1] == reference.name and (namespace is None or where[0] == namespace)
    ]
    if not profiles:
        place = f"{namespace}/{reference.name}" if namespace else reference.name
        found.append(
            Finding(
                False,
                "spec.monitoring.drift.referenceProfile",
                f"not judged against the profile: ConfigMap {place} is not among the resources",
            )
        )
    for (at, name), data in profiles:
        found.extend(
            _profile_findings(api, f"ConfigMap {at}/{name}", data.get(reference.key), reference.key)
        )
    return found


def _audit_warnings(
    enforcement: policies.Enforcement, api: apiprotection.ApiRequirements
) -> list[Finding]:
    if enforcement is not policies.Enforcement.AUDIT:
        return []
    found = []
    if api.probing is not None and api.probing.action is not apiprotection.ProbingAction.ALERT:
        found.append(
            Finding(
                False,
                "spec.api.probing.action",
                f"{api.probing.action.value} under Audit only alerts (no client is held back)",
            )
        )
    if api.outliers is not None and api.outliers.action is apiprotection.OutlierAction.REJECT:
        found.append(
            Finding(
                False,
                "spec.api.outliers.action",
                "Reject under Audit forwards the request (reported in X-Modelshield-Audit)",
            )
        )
    if api.responses is not None:
        found.append(
            Finding(False, "spec.api.responses", "response hardening applies under Enforce only")
        )
    return found


def _profile_findings(
    api: apiprotection.ApiRequirements, place: str, text: str | None, key: str
) -> list[Finding]:
    field = "spec.monitoring.drift.referenceProfile"
    if text is None:
        return [Finding(True, field, f"{place} has no key {key!r}: the guard would answer 503")]
    try:
        document = json.loads(text)
    except ValueError as error:
        return [
            Finding(
                True,
                field,
                f"{place} key {key!r} is not JSON ({error}): the guard would answer 503",
            )
        ]
    stored = document.get("outliers") if isinstance(document, dict) else None
    if stored is None:
        return [
            Finding(
                True,
                field,
                f"{place}: the profile has no outlier model (build it with `modelshield drift "
                "profile` without --no-outliers): the guard would answer 503",
            )
        ]
    try:
        model = outliermodel.from_document(stored)
    except outliermodel.OutlierModelError as error:
        return [Finding(True, field, f"{place}: {error}: the guard would answer 503")]
    found = []
    if api.outliers is not None:
        rate, rate_field = api.outliers.false_flag_rate, "spec.api.outliers.falseFlagRate"
    else:
        rate = max(defending.DEFAULT_OUTLIER_RATE, 2 / model.held_out_excess.size)
        rate_field = "spec.api.probing"
    try:
        outlierscoring.thresholds(model, rate)
    except outlierscoring.CalibrationError as error:
        found.append(Finding(True, rate_field, f"{place}: {error}: the guard would answer 503"))
    if api.probing is not None:
        found.extend(_memory(api.probing, model.fitted.mean.size))
    return found


def _memory(probe: apiprotection.ProbingDetection, width: int) -> list[Finding]:
    settings = probing.Settings(
        detectors=frozenset(probing.Detector(d.value) for d in probe.detectors),
        memory=probe.memory_per_client,
    )
    bound = probing.memory_bytes(settings, width) * probe.max_clients
    limit = quantity_bytes(GUARD_MEMORY_LIMIT)
    if bound <= limit // 2:
        return []
    return [
        Finding(
            False,
            "spec.api.probing.maxClients",
            f"{probe.max_clients} clients x {probing.memory_bytes(settings, width) // 1024} KiB "
            f"({width} features, memoryPerClient {probe.memory_per_client}) may hold "
            f"{bound / 2**20:.0f} MiB of probing summaries, over half the guard's default "
            f"memory limit {GUARD_MEMORY_LIMIT}: the guard will remember only the "
            f"{max(1, defending.PROBING_MEMORY_BUDGET_BYTES // probing.memory_bytes(settings, width))}"
            " most recent clients; lower maxClients or memoryPerClient",
        )
    ]
