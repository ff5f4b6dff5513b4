"""What should exist next to one workload, given what the operator has seen. Pure.

``plan`` turns (world, workload, settings, the reference profile's text) into the stamped
objects that must exist, the payload-logger patch of an InferenceService, and the problems
to report on the policies' status. The reconciler then only compares and writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches
from modelshield.controllers.builders import driftmonitors, networkpolicies, ownership
from modelshield.engine import compiling

#: Degraded reasons a plan can report.
REFERENCE_PROFILE_MISSING = "ReferenceProfileMissing"
PAYLOAD_LOGGER_IN_USE = "PayloadLoggerInUse"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator-wide settings the builders need."""

    monitor: driftmonitors.MonitorSettings
    scraper_peers: tuple[networkpolicies.Peer, ...] = ()


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something that keeps a policy from being fully in force on a workload."""

    reason: str
    message: str


@dataclasses.dataclass
class Plan:
    """The desired state next to one workload."""

    workload: caches.Key
    governing: tuple[ownership.ObjectRef, ...] = ()
    desired: dict[caches.Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    logger_patch: dict[str, Any] | None = None
    #: Problems, per policy that caused them.
    problems: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)


def policy_ref(entry: caches.PolicyEntry) -> ownership.ObjectRef:
    """The owner reference target of a policy."""
    return ownership.ObjectRef.of(entry.body)


def _refs(
    world: caches.World, governing: tuple[compiling.CompiledPolicy, ...]
) -> list[tuple[ownership.ObjectRef, compiling.AnyPolicy]]:
    found = []
    for compiled in governing:
        key = (compiled.ref.kind, compiled.ref.namespace, compiled.ref.name)
        entry = world.policies.get(key)
        if entry is not None and entry.model is not None:
            found.append((policy_ref(entry), entry.model))
    return found


def drift_source(
    world: caches.World, key: caches.Key
) -> tuple[ownership.ObjectRef, policies.DriftMonitoring] | None:
    """The first governing policy that asks for drift monitoring, and its settings."""
    for ref, model in _refs(world, world.governing(key)):
        monitoring = model.spec.monitoring
        if monitoring is not None and monitoring.drift is not None:
            return ref, monitoring.drift
    return None


def plan(world: caches.World, key: caches.Key, settings: Settings, profile: str | None) -> Plan:
    """The desired state for a workload; ``profile`` is the reference profile's text, if read."""
    result = Plan(workload=key)
    body = world.workloads.get(key)
    if body is None:
        return result
    governing = _refs(world, world.governing(key))
    result.governing = tuple(ref for ref, _ in governing)
    if not governing:
        return result
    kind, namespace, name = key
    workload_ref = ownership.ObjectRef.of(body)

    monitor: networkpolicies.MonitorEndpoint | None = None
    source = drift_source(world, key)
    if source is not None:
        monitor = _plan_monitor(result, body, workload_ref, source, settings, profile)

    network = [(ref, model.spec.network) for ref, model in governing if model.spec.network]
    if network:
        governance = ownership.Governance(
            workload=workload_ref,
            policies=tuple(ref for ref, _ in network),
            component=networkpolicies.COMPONENT,
        )
        manifest = networkpolicies.build(
            name=ownership.child_name("netpol", kind, name),
            namespace=namespace,
            pod_selector=networkpolicies.workload_pod_selector(body),
            requirements=[requirement for _, requirement in network if requirement is not None],
            scraper_peers=settings.scraper_peers,
            monitor=monitor,
        )
        stamped = ownership.stamp(manifest, governance)
        result.desired[caches.key_of(stamped)] = stamped
    return result


def _plan_monitor(
    result: Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    source: tuple[ownership.ObjectRef, policies.DriftMonitoring],
    settings: Settings,
    profile: str | None,
) -> networkpolicies.MonitorEndpoint | None:
    policy, drift = source
    kind, namespace, name = caches.key_of(body)
    if profile is None:
        reference = drift.reference_profile
        result.problems.setdefault(policy, []).append(
            Problem(
                REFERENCE_PROFILE_MISSING,
                f"{workload_ref.display}: ConfigMap {namespace}/{reference.name} has no key "
                f"{reference.key!r}; create it with `modelshield drift profile` output",
            )
        )
        return None
    governance = ownership.Governance(
        workload=workload_ref, policies=(policy,), component=driftmonitors.COMPONENT
    )
    monitor_name = ownership.child_name("drift", kind, name)
    target = driftmonitors.Target(
        api_version=workload_ref.api_version,
        kind=kind,
        name=name,
        namespace=namespace,
        uid=workload_ref.uid,
    )
    config_map = driftmonitors.build_config_map(
        name=monitor_name, namespace=namespace, drift=drift, target=target, profile=profile
    )
    manifests = [
        config_map,
        driftmonitors.build_deployment(
            name=monitor_name, namespace=namespace, config_map=config_map, settings=settings.monitor
        ),
        driftmonitors.build_service(name=monitor_name, namespace=namespace),
    ]
    if not settings.monitor.service_account:
        manifests += [
            driftmonitors.build_service_account(name=monitor_name, namespace=namespace),
            driftmonitors.build_role(name=monitor_name, namespace=namespace),
            driftmonitors.build_role_binding(name=monitor_name, namespace=namespace),
        ]
    for manifest in manifests:
        stamped = ownership.stamp(manifest, governance)
        result.desired[caches.key_of(stamped)] = stamped
    if kind == "InferenceService":
        url = driftmonitors.service_url(monitor_name, namespace)
        patch, conflict = driftmonitors.logger_patch(body, url)
        result.logger_patch = patch
        if conflict is not None:
            result.problems.setdefault(policy, []).append(
                Problem(PAYLOAD_LOGGER_IN_USE, f"{workload_ref.display}: {conflict}")
            )
    return networkpolicies.MonitorEndpoint(
        pod_labels=driftmonitors.pod_labels(monitor_name), port=driftmonitors.PORT
    )
