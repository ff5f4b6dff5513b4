"""What should exist next to one workload, given what the operator has seen. Pure.

``plan`` turns (world, workload, settings, the reference profile's text) into the stamped
objects that must exist, the payload-logger patch of an InferenceService, and the problems
to report on the policies' status. The reconciler then only compares and writes. Each
concept plans its own part: the drift monitor (``monitorplans``), the inference guard
(``guardplans``) and the NetworkPolicy (``networkplans``, which fails closed).
"""

from __future__ import annotations

from modelshield.controllers import caches, guardplans, monitorplans, networkplans, plans
from modelshield.controllers.builders import driftmonitors, guards, ownership

# The names the reconciler, the status code and the tests know them by.
Settings = plans.Settings
Problem = plans.Problem
Plan = plans.Plan
policy_ref = plans.policy_ref
drift_source = monitorplans.drift_source
REFERENCE_PROFILE_MISSING = monitorplans.REFERENCE_PROFILE_MISSING
PAYLOAD_LOGGER_IN_USE = monitorplans.PAYLOAD_LOGGER_IN_USE
NETWORK_POLICY_FAILED_CLOSED = networkplans.NETWORK_POLICY_FAILED_CLOSED
NETWORK_NOT_ENFORCED = networkplans.NETWORK_NOT_ENFORCED
GUARD_UPSTREAM_UNKNOWN = guardplans.GUARD_UPSTREAM_UNKNOWN


def plan(world: caches.World, key: caches.Key, settings: Settings, profile: str | None) -> Plan:
    """The desired state for a workload; ``profile`` is the reference profile's text, if read."""
    result = Plan(workload=key)
    body = world.workloads.get(key)
    if body is None:
        return result
    governing = plans.governing_refs(world, key)
    unreadable = tuple(plans.policy_ref(entry) for entry in world.unreadable_network_policies(key))
    result.governing = tuple(ref for ref, _ in governing) + unreadable
    if not result.governing:
        return result
    workload_ref = ownership.ObjectRef.of(body)

    monitor = None
    source = drift_source(world, key)
    if source is not None:
        monitor = monitorplans.plan_monitor(result, body, workload_ref, source, settings, profile)

    # A plain Deployment has no payload logger: its guard feeds the monitor instead.
    kind, namespace, name = caches.key_of(body)
    drift_url = (
        driftmonitors.service_url(ownership.child_name("drift", kind, name), namespace)
        if monitor is not None and kind != "InferenceService"
        else None
    )
    guard = guardplans.plan_guard(
        result,
        body,
        workload_ref,
        governing,
        settings,
        drift_url,
        guards.profile_features(profile),
        guardplans.upstream_cluster_ip(world, key),
        outlier_model=guards.profile_outliers(profile),
    )
    networkplans.plan_network(
        result, body, workload_ref, governing, unreadable, settings, monitor, guard
    )
    networkplans.plan_guard_network(result, body, workload_ref, governing, unreadable, settings)
    return result
