"""The NetworkPolicy part of a plan. Pure.

It fails closed: only Enforce policies' ``network`` blocks restrict traffic (an Audit
policy's is reported, never applied); when they cannot be built (a policy the API would
refuse today, or one that cannot be read at all) the workload gets a deny-all
NetworkPolicy, and ``Plan.fallbacks`` holds that deny-all for the reconciler to write when
the API server refuses the one planned. A workload is never left without one. With an
``api`` block the model's ingress is the guard's pods only (``guardplans``), and the guard's pods admit the sources the
network blocks admitted to the model (``plan_guard_network``): the guard is the model's
front door, not a way around its NetworkPolicy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches, plans
from modelshield.controllers.builders import guards, networkpolicies, ownership
from modelshield.engine import compiling

#: The workload got a deny-all NetworkPolicy instead of the one its policies describe.
NETWORK_POLICY_FAILED_CLOSED = "NetworkPolicyFailedClosed"
#: A note on an Audit policy: what its network block would change under Enforce.
NETWORK_NOT_ENFORCED = "NetworkNotEnforced"


def plan_network(
    result: plans.Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    governing: Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]],
    unreadable: tuple[ownership.ObjectRef, ...],
    settings: plans.Settings,
    monitor: networkpolicies.MonitorEndpoint | None,
    guard: tuple[tuple[ownership.ObjectRef, ...], policies.NetworkRequirements] | None = None,
) -> None:
    kind, namespace, name = caches.key_of(body)
    enforced = _networks(governing, policies.Enforcement.ENFORCE)
    if guard is not None:
        # With an api block clients reach the guard, never the model: the model's ingress is
        # the guard's pods only, whatever the network blocks allowed (their egress stays).
        api_refs, requirement = guard
        enforced = [
            (ref, network.model_copy(update={"ingress": requirement.ingress}))
            for ref, network in enforced
        ]
        enforced += [(ref, requirement) for ref in api_refs]
    audited = _networks(governing, policies.Enforcement.AUDIT)
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
    scraper_ports = settings.scraper_ports | networkpolicies.metrics_ports(body)
    placed = _place_or_deny_all(
        result,
        lambda: networkpolicies.build(
            name=policy_name,
            namespace=namespace,
            pod_selector=pod_selector,
            requirements=[requirement for _, requirement in enforced],
            scraper_peers=settings.scraper_peers,
            scraper_ports=scraper_ports,
            monitor=monitor,
        ),
        readable=not unreadable,
        deny_all=ownership.stamp(
            networkpolicies.deny_all(
                name=policy_name, namespace=namespace, pod_selector=pod_selector
            ),
            governance,
        ),
        governance=governance,
        failed=f"{workload_ref.display}: NetworkPolicy {name} denies all traffic",
    )
    if not placed:
        return
    _note_audited(result, workload_ref, audited, [r for _, r in enforced], namespace, settings)


def plan_guard_network(
    result: plans.Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    governing: Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]],
    unreadable: tuple[ownership.ObjectRef, ...],
    settings: plans.Settings,
) -> None:
    """The guard's ingress NetworkPolicy, when the plan holds a guard and Enforce policies
    restrict the workload's network (or one that might cannot be read).

    Without it the model's ingress rule (the guard's pods only) would replace the blocks'
    sources, and any pod could call the model through the guard: the network blocks would
    restrict nothing. It fails closed like the model's: deny-all when the blocks cannot be
    built, or as the fallback when the API server refuses the one planned.
    """
    kind, namespace, name = caches.key_of(body)
    guard_name = ownership.child_name("guard", kind, name)
    model_port = guards.model_port(body)
    if ("Deployment", namespace, guard_name) not in result.desired or model_port is None:
        return
    enforced = _networks(governing, policies.Enforcement.ENFORCE)
    if not enforced and not unreadable:
        return
    refs = tuple(dict.fromkeys(ref for ref, _ in enforced)) + unreadable
    governance = ownership.Governance(
        workload=workload_ref, policies=refs, component=networkpolicies.COMPONENT
    )
    policy_name = ownership.child_name("netpol-guard", kind, name)
    pod_selector = {"matchLabels": guards.pod_labels(guard_name)}
    _place_or_deny_all(
        result,
        lambda: networkpolicies.build_front_door(
            name=policy_name,
            namespace=namespace,
            pod_selector=pod_selector,
            requirements=[requirement for _, requirement in enforced],
            model_port=model_port,
            front_port=guards.PORT,
            scraper_peers=settings.scraper_peers,
            scraper_ports=frozenset({(guards.MANAGEMENT_PORT, "TCP")}),
        ),
        readable=not unreadable,
        deny_all=ownership.stamp(
            networkpolicies.deny_all(
                name=policy_name, namespace=namespace, pod_selector=pod_selector
            ),
            governance,
        ),
        governance=governance,
        failed=(
            f"{workload_ref.display}: NetworkPolicy {policy_name} denies all traffic "
            "to the inference guard"
        ),
    )


def _networks(
    governing: Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]],
    enforcement: policies.Enforcement,
) -> list[tuple[ownership.ObjectRef, policies.NetworkRequirements]]:
    """The network blocks of the governing policies in this mode."""
    return [
        (ref, model.spec.network)
        for ref, model in governing
        if model.spec.network is not None and model.spec.enforcement is enforcement
    ]


def _place_or_deny_all(
    result: plans.Plan,
    build: Callable[[], dict[str, Any]],
    *,
    readable: bool,
    deny_all: dict[str, Any],
    governance: ownership.Governance,
    failed: str,
) -> bool:
    """Plan what ``build`` makes (stamped) with ``deny_all`` as its fallback; or, when a
    policy could not be read or building fails, ``deny_all`` itself, with a problem on each
    policy that starts with ``failed``. True when the built one was planned."""
    key = caches.key_of(deny_all)
    manifest = None
    if not readable:
        reason = "a policy that asks for network isolation cannot be read (see its status)"
    else:
        try:
            manifest = build()
        except networkpolicies.BuildError as error:
            reason = str(error)
        except Exception as error:  # noqa: BLE001 - a bug must not leave the pods open
            reason = f"building it failed ({type(error).__name__}: {error})"
    if manifest is None:
        result.desired[key] = deny_all
        for ref in governance.policies:
            result.problems.setdefault(ref, []).append(
                plans.Problem(NETWORK_POLICY_FAILED_CLOSED, f"{failed}: {reason}")
            )
        return False
    result.desired[key] = ownership.stamp(manifest, governance)
    result.fallbacks[key] = deny_all
    return True


def _note_audited(
    result: plans.Plan,
    workload_ref: ownership.ObjectRef,
    audited: Sequence[tuple[ownership.ObjectRef, policies.NetworkRequirements]],
    enforced: Sequence[policies.NetworkRequirements] | None,
    namespace: str,
    settings: plans.Settings,
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
            plans.Problem(
                NETWORK_NOT_ENFORCED,
                f"{workload_ref.display}: network not enforced (Audit); {message}",
            )
        )
