"""The drift monitor's part of a plan: its objects next to a workload whose policy asks for
drift monitoring, and the payload-logger patch of an InferenceService. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches, plans
from modelshield.controllers.builders import driftmonitors, networkpolicies, ownership

#: Degraded reasons the monitor's plan can report.
REFERENCE_PROFILE_MISSING = "ReferenceProfileMissing"
PAYLOAD_LOGGER_IN_USE = "PayloadLoggerInUse"


def drift_source(
    world: caches.World, key: caches.Key
) -> tuple[ownership.ObjectRef, policies.DriftMonitoring] | None:
    """The first governing policy that asks for drift monitoring, and its settings."""
    for ref, model in plans.governing_refs(world, key):
        monitoring = model.spec.monitoring
        if monitoring is not None and monitoring.drift is not None:
            return ref, monitoring.drift
    return None


def plan_monitor(
    result: plans.Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    source: tuple[ownership.ObjectRef, policies.DriftMonitoring],
    settings: plans.Settings,
    profile: str | None,
) -> networkpolicies.MonitorEndpoint | None:
    policy, drift = source
    kind, namespace, name = caches.key_of(body)
    if profile is None:
        reference = drift.reference_profile
        result.problems.setdefault(policy, []).append(
            plans.Problem(
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
                plans.Problem(PAYLOAD_LOGGER_IN_USE, f"{workload_ref.display}: {conflict}")
            )
    return networkpolicies.MonitorEndpoint(
        pod_labels=driftmonitors.pod_labels(monitor_name), port=driftmonitors.PORT
    )
