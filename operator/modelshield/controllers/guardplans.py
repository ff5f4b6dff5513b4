"""The inference guard's part of a plan: its objects next to a workload governed by an
``api`` block, what it asks of the model's NetworkPolicy, and its ServiceAccount, which
alone may be bound for TokenReviews (``guard_account``). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches, plans
from modelshield.controllers.builders import guards, networkpolicies, ownership
from modelshield.engine import compiling

#: The guard cannot reach the model server's pods (no port, or a selector a Service cannot
#: hold): the model's port is closed to everyone, the guard included.
GUARD_UPSTREAM_UNKNOWN = "GuardUpstreamUnknown"

PolicyRefs = Sequence[tuple[ownership.ObjectRef, compiling.AnyPolicy]]


def _with_api(governing: PolicyRefs) -> list[tuple[ownership.ObjectRef, compiling.AnyPolicy]]:
    return [(ref, model) for ref, model in governing if model.spec.api is not None]


def _upstream(body: Mapping[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    """The model port and, for a Deployment or StatefulSet, the upstream Service the guard
    calls (None when its selector is not plain labels, or there is no port)."""
    kind, namespace, name = caches.key_of(body)
    port = guards.model_port(body)
    if port is None or kind == "InferenceService":
        return port, None
    service = guards.build_upstream_service(
        name=ownership.child_name("guard-up", kind, name),
        namespace=namespace,
        pod_selector=networkpolicies.workload_pod_selector(body),
        port=port,
    )
    return port, service


def _reachable(body: Mapping[str, Any], port: int | None, service: object | None) -> bool:
    return port is not None and (body.get("kind") == "InferenceService" or service is not None)


def guard_account(world: caches.World, key: caches.Key) -> tuple[str, str] | None:
    """(namespace, name) of the ServiceAccount the plan gives the workload's guard, or None
    when it plans no guard. Exactly the accounts ``plan_guard`` creates: the workload's own
    namespace, a name derived from its kind and name; nothing a policy can choose."""
    body = world.workloads.get(key)
    if body is None or not _with_api(plans.governing_refs(world, key)):
        return None
    port, service = _upstream(body)
    if not _reachable(body, port, service):
        return None
    kind, namespace, name = caches.key_of(body)
    return namespace, ownership.child_name("guard", kind, name)


def upstream_cluster_ip(world: caches.World, key: caches.Key) -> str | None:
    """The ClusterIP of the upstream Service the operator made for the workload's guard,
    once it has one (None for an InferenceService: KServe's Service is called by name)."""
    kind, namespace, name = key
    live = world.children.get(("Service", namespace, ownership.child_name("guard-up", kind, name)))
    address = str(((live or {}).get("spec") or {}).get("clusterIP") or "")
    return address if address and address != "None" and kind != "InferenceService" else None


def guard_accounts(world: caches.World) -> set[tuple[str, str]]:
    """Every guard ServiceAccount the plans of all known workloads create."""
    found = (guard_account(world, key) for key in world.workloads_in(None))
    return {account for account in found if account is not None}


def plan_guard(
    result: plans.Plan,
    body: Mapping[str, Any],
    workload_ref: ownership.ObjectRef,
    governing: PolicyRefs,
    settings: plans.Settings,
    drift_url: str | None = None,
    features: list[dict[str, str]] | None = None,
    upstream_ip: str | None = None,
    outlier_model: dict[str, Any] | None = None,
) -> tuple[tuple[ownership.ObjectRef, ...], policies.NetworkRequirements] | None:
    """The inference guard's objects; the Enforce api policies and what they ask of the
    model's NetworkPolicy (None when no Enforce policy has an api block). ``upstream_ip``:
    the upstream Service's ClusterIP, when it has one (``upstream_cluster_ip``)."""
    with_api = _with_api(governing)
    if not with_api:
        return None
    kind, namespace, name = caches.key_of(body)
    guard_name = ownership.child_name("guard", kind, name)
    refs = tuple(ref for ref, _ in with_api)
    port, upstream_service = _upstream(body)
    reachable = _reachable(body, port, upstream_service)
    if not reachable:
        for ref in refs:
            result.problems.setdefault(ref, []).append(
                plans.Problem(
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
                upstream=guards.upstream_url(
                    body, ownership.child_name("guard-up", kind, name), port, upstream_ip
                ),
                replicas=settings.guard_replicas,
                governing=[model for _, model in with_api],
                drift_monitor=drift_url,
                reference_features=features,
                outlier_model=outlier_model,
                workload=body,
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
        if guards.probing_events([model for _, model in with_api]):
            manifests.append(guards.build_events_role(name=guard_name, namespace=namespace))
            manifests.append(guards.build_events_role_binding(name=guard_name, namespace=namespace))
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
