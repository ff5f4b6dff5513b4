"""What should exist next to one workload, given what the operator has seen. Pure.

``plan`` turns (world, workload, settings, the reference profile's text) into the stamped
objects that must exist, the payload-logger patch of an InferenceService, and the problems
to report on the policies' status. The reconciler then only compares and writes.

The NetworkPolicy fails closed: only Enforce policies' ``network`` blocks restrict traffic
(an Audit policy's is reported, never applied); when they cannot be built (a policy the
API would refuse today, or one that cannot be read at all) the workload gets a deny-all
NetworkPolicy, and ``Plan.fallbacks`` holds that deny-all for the reconciler to write when
the API server refuses the one planned. A workload is never left without one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches
from modelshield.controllers.builders import driftmonitors, guards, networkpolicies, ownership
from modelshield.engine import compiling

#: Degraded reasons a plan can report.
REFERENCE_PROFILE_MISSING = "ReferenceProfileMissing"
PAYLOAD_LOGGER_IN_USE = "PayloadLoggerInUse"
#: The workload got a deny-all NetworkPolicy instead of the one its policies describe.
NETWORK_POLICY_FAILED_CLOSED = "NetworkPolicyFailedClosed"
#: A note on an Audit policy: what its network block would change under Enforce.
NETWORK_NOT_ENFORCED = "NetworkNotEnforced"
#: The guard cannot reach the model server's pods (no port, or a selector a Service cannot
#: hold): the model's port is closed to everyone, the guard included.
GUARD_UPSTREAM_UNKNOWN = "GuardUpstreamUnknown"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator-wide settings the builders need."""

    monitor: driftmonitors.MonitorSettings
    scraper_peers: tuple[networkpolicies.Peer, ...] = ()
    #: Ports the scraper may reach on every governed pod (with the workload's own metrics ports).
    scraper_ports: frozenset[tuple[int, str]] = frozenset()
    #: Replicas of each inference guard; each enforces its share of every rate limit.
    guard_replicas: int = 2


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
    #: What to write instead of a desired object that the API server refuses (deny-all).
    fallbacks: dict[caches.Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: The policies the NetworkPolicy is written for (they hear of a fallback).
    network_policies: tuple[ownership.ObjectRef, ...] = ()
    #: Audit policies' network blocks: what Enforce would write instead (not Degraded).
    notes: dict[ownership.ObjectRef, list[Problem]] = dataclasses.field(default_factory=dict)


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
    unreadable = tuple(policy_ref(entry) for entry in world.unreadable_network_policies(key))
    result.governing = tuple(ref for ref, _ in governing) + unreadable
    if not result.governing:
        return result
    workload_ref = ownership.ObjectRef.of(body)

    monitor: networkpolicies.MonitorEndpoint | None = None
    source = drift_source(world, key)
    if source is not None:
        monitor = _plan_monitor(result, body, workload_ref, source, settings, profile)

    # A plain Deployment has no payload logger: its guard feeds the monitor instead.
    kind, namespace, name = caches.key_of(body)
    drift_url = (
        driftmonitors.service_url(ownership.child_name("drift", kind, name), namespace)
        if monitor is not None and kind != "InferenceService"
        else None
    )
    guard = _plan_guard(
        result, body, workload_ref, governing, settings, drift_url, guards.profile_features(profile)
    )
    _plan_network(result, body, workload_ref, governing, unreadable, settings, monitor, guard)
    return result


def _plan_guard(
    result: Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    governing: Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]],
    settings: Settings,
    drift_url: str | None = None,
    features: list[dict[str, str]] | None = None,
) -> tuple[tuple[ownership.ObjectRef, ...], policies.NetworkRequirements] | None:
    """The inference guard's objects; the Enforce api policies and what they ask of the
    model's NetworkPolicy (None when no Enforce policy has an api block)."""
    with_api = [(ref, model) for ref, model in governing if model.spec.api is not None]
    if not with_api:
        return None
    kind, namespace, name = caches.key_of(body)
    guard_name = ownership.child_name("guard", kind, name)
    refs = tuple(ref for ref, _ in with_api)
    port = guards.model_port(body)
    upstream_name = ownership.child_name("guard-up", kind, name)
    upstream_service = None
    if port is not None and kind != "InferenceService":
        upstream_service = guards.build_upstream_service(
            name=upstream_name,
            namespace=namespace,
            pod_selector=networkpolicies.workload_pod_selector(body),
            port=port,
        )
    reachable = port is not None and (kind == "InferenceService" or upstream_service is not None)
    if not reachable:
        for ref in refs:
            result.problems.setdefault(ref, []).append(
                Problem(
                    GUARD_UPSTREAM_UNKNOWN,
                    f"{workload_ref.display}: the guard cannot reach the model server (declare "
                    "a container port named http, and select pods by matchLabels); its port "
                    "is closed to everyone",
                )
            )
    else:
        assert port is not None
        config_map = guards.build_config_map(
            name=guard_name,
            namespace=namespace,
            config=guards.guard_config(
                upstream=guards.upstream_url(body, upstream_name, port),
                replicas=settings.guard_replicas,
                governing=[model for _, model in with_api],
                drift_monitor=drift_url,
                reference_features=features,
            ),
        )
        secrets = sorted(
            {
                model.spec.api.authentication.api_keys.secret_ref.name
                for _, model in with_api
                if model.spec.api is not None
                and model.spec.api.authentication is not None
                and model.spec.api.authentication.api_keys is not None
            }
        )
        manifests = [
            config_map,
            guards.build_service_account(name=guard_name, namespace=namespace),
            guards.build_deployment(
                name=guard_name,
                namespace=namespace,
                config_map=config_map,
                replicas=settings.guard_replicas,
                key_secrets=secrets,
                settings=settings.monitor,
            ),
            guards.build_service(name=guard_name, namespace=namespace),
        ]
        if upstream_service is not None:
            manifests.append(upstream_service)
        governance = ownership.Governance(
            workload=workload_ref, policies=refs, component=guards.COMPONENT
        )
        for manifest in manifests:
            stamped = ownership.stamp(manifest, governance)
            result.desired[caches.key_of(stamped)] = stamped
    enforced = tuple(
        ref for ref, model in with_api if model.spec.enforcement is policies.Enforcement.ENFORCE
    )
    if not enforced:
        return None
    return enforced, guards.model_ingress_requirement(
        guard_name=guard_name, model_port=port if reachable else None
    )


def _plan_network(
    result: Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    governing: Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]],
    unreadable: tuple[ownership.ObjectRef, ...],
    settings: Settings,
    monitor: networkpolicies.MonitorEndpoint | None,
    guard: tuple[tuple[ownership.ObjectRef, ...], policies.NetworkRequirements] | None = None,
) -> None:
    kind, namespace, name = caches.key_of(body)
    enforced = [
        (ref, model.spec.network)
        for ref, model in governing
        if model.spec.network is not None and model.spec.enforcement is policies.Enforcement.ENFORCE
    ]
    if guard is not None:
        # With an api block clients reach the guard, never the model: the model's ingress is
        # the guard's pods only, whatever the network blocks allowed (their egress stays).
        api_refs, requirement = guard
        enforced = [
            (ref, network.model_copy(update={"ingress": requirement.ingress}))
            for ref, network in enforced
        ]
        enforced += [(ref, requirement) for ref in api_refs]
    audited = [
        (ref, model.spec.network)
        for ref, model in governing
        if model.spec.network is not None and model.spec.enforcement is policies.Enforcement.AUDIT
    ]
    if not enforced and not unreadable:
        _note_audited(result, workload_ref, audited, None, namespace, settings)
        return
    refs = tuple(dict.fromkeys(ref for ref, _ in enforced)) + unreadable
    result.network_policies = refs
    governance = ownership.Governance(
        workload=workload_ref, policies=refs, component=networkpolicies.COMPONENT
    )
    policy_name = ownership.child_name("netpol", kind, name)
    pod_selector = networkpolicies.workload_pod_selector(body)
    deny_all = ownership.stamp(
        networkpolicies.deny_all(name=policy_name, namespace=namespace, pod_selector=pod_selector),
        governance,
    )
    key = caches.key_of(deny_all)
    scraper_ports = settings.scraper_ports | networkpolicies.metrics_ports(body)
    reason = ""
    if unreadable:
        reason = "a policy that asks for network isolation cannot be read (see its status)"
        manifest = None
    else:
        try:
            manifest = networkpolicies.build(
                name=policy_name,
                namespace=namespace,
                pod_selector=pod_selector,
                requirements=[requirement for _, requirement in enforced],
                scraper_peers=settings.scraper_peers,
                scraper_ports=scraper_ports,
                monitor=monitor,
            )
        except networkpolicies.BuildError as error:
            reason = str(error)
            manifest = None
        except Exception as error:  # noqa: BLE001 - a bug must not leave the workload open
            reason = f"building it failed ({type(error).__name__}: {error})"
            manifest = None
    if manifest is None:
        result.desired[key] = deny_all
        for ref in refs:
            result.problems.setdefault(ref, []).append(
                Problem(
                    NETWORK_POLICY_FAILED_CLOSED,
                    f"{workload_ref.display}: NetworkPolicy {name} denies all traffic: {reason}",
                )
            )
        return
    result.desired[key] = ownership.stamp(manifest, governance)
    result.fallbacks[key] = deny_all
    _note_audited(result, workload_ref, audited, [r for _, r in enforced], namespace, settings)


def _note_audited(
    result: Plan,
    workload_ref: ownership.ObjectRef,
    audited: Sequence[tuple[ownership.ObjectRef, policies.NetworkRequirements]],
    enforced: Sequence[policies.NetworkRequirements] | None,
    namespace: str,
    settings: Settings,
) -> None:
    """Tell each Audit policy what its network block would change under Enforce."""
    for ref, requirement in audited:
        try:
            would = networkpolicies.build(
                name="would",
                namespace=namespace,
                pod_selector={},
                requirements=[*(enforced or ()), requirement],
                scraper_peers=settings.scraper_peers,
            )["spec"]
        except Exception as error:  # noqa: BLE001 - BuildError, or a bug: deny-all either way
            message = f"under Enforce it would deny all traffic: {error}"
        else:
            if enforced is not None:
                now = networkpolicies.build(
                    name="now",
                    namespace=namespace,
                    pod_selector={},
                    requirements=enforced,
                    scraper_peers=settings.scraper_peers,
                )["spec"]
                if now == would:
                    continue  # the Enforce policies already allow no more than this one
            rules = json.dumps(
                {"ingress": would["ingress"], "egress": would["egress"]}, separators=(",", ":")
            )
            message = f"under Enforce only this traffic would be allowed, the rest denied: {rules}"
        result.notes.setdefault(ref, []).append(
            Problem(
                NETWORK_NOT_ENFORCED,
                f"{workload_ref.display}: network not enforced (Audit); {message}",
            )
        )


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
