"""kopf handlers of the policy reconciler: watch events in, queue keys out.

Every handler is a low-level ``on.event`` handler: it records the object in the ``World``
and queues the workloads to reconcile. None of them writes kopf bookkeeping onto the
object, so users' Deployments and InferenceServices are never annotated by kopf.

Watched: both policy kinds, Namespaces (labels, for cluster policies), Deployments,
StatefulSets and InferenceServices (workloads; Deployments labelled as ours are drift
monitors, i.e. owned objects), the owned NetworkPolicies, Services, ConfigMaps,
ServiceAccounts, Roles and RoleBindings (deleted or edited → restored), and ModelArtifacts (their facts change compliance).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from modelshield.controllers import caches, reconciling, writing
from modelshield.controllers import leadership as leadership_
from modelshield.controllers.builders import ownership

LOGGER = logging.getLogger("modelshield.policies")
DEFAULT_RESYNC_SECONDS = 600.0
RESYNC_CHECK_SECONDS = 30.0
GROUP = "modelshield.dev"
VERSION = "v1alpha1"

#: (group, version, plural) of the workload kinds.
WORKLOAD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("serving.kserve.io", "v1beta1", "inferenceservices"),
)
#: (group, version, plural) of the owned kinds other than Deployments.
OWNED_RESOURCES = (
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
)
#: List paths read once at startup, before any watch event is handled.
PRIME_PATHS = (
    f"/apis/{GROUP}/{VERSION}/modelsecuritypolicies",
    f"/apis/{GROUP}/{VERSION}/clustermodelsecuritypolicies",
    "/api/v1/namespaces",
    f"/apis/{GROUP}/{VERSION}/modelartifacts",
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/statefulsets",
    "/apis/serving.kserve.io/v1beta1/inferenceservices",
)
OWNED_PRIME_PATHS = (
    "/apis/networking.k8s.io/v1/networkpolicies",
    "/api/v1/services",
    "/api/v1/configmaps",
    "/api/v1/serviceaccounts",
    "/apis/rbac.authorization.k8s.io/v1/roles",
    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
)


def _object(event: Mapping[str, Any]) -> dict[str, Any]:
    body = event.get("object")
    return dict(body) if isinstance(body, Mapping) else {}


def _deleted(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "DELETED"


def _initial(event: Mapping[str, Any]) -> bool:
    """kopf's initial listing (after a start or a resumed watch): everything is reconciled."""
    return event.get("type") is None


def _workload_changed(previous: Mapping[str, Any] | None, body: Mapping[str, Any]) -> bool:
    """Whether anything the reconciler reads changed (not mere status updates)."""
    if previous is None:
        return True
    before, after = previous.get("metadata") or {}, body.get("metadata") or {}
    return (
        before.get("uid") != after.get("uid")
        or before.get("generation") != after.get("generation")
        or before.get("labels") != after.get("labels")
        or previous.get("spec") != body.get("spec")
    )


def handle_policy(controller: reconciling.Controller, event: Mapping[str, Any]) -> None:
    """A policy was added, changed or deleted."""
    body = _object(event)
    key = caches.key_of(body)
    if _deleted(event):
        controller.world.remove_policy(body)
        controller.enqueue_scope(key)
    elif controller.world.put_policy(body) or _initial(event):
        controller.enqueue_scope(key)
    elif not (body.get("status") or {}).get("conditions"):
        controller.status_due([key])


def handle_namespace(controller: reconciling.Controller, event: Mapping[str, Any]) -> None:
    """A namespace's labels may decide which cluster policies apply in it."""
    body = _object(event)
    name = str((body.get("metadata") or {}).get("name", ""))
    if _deleted(event):
        controller.world.remove_namespace(name)
        return
    if controller.world.put_namespace(body) and controller.world.policy_set().cluster:
        controller.enqueue_many(controller.world.workloads_in(name))


def handle_workload(controller: reconciling.Controller, event: Mapping[str, Any]) -> None:
    """A workload (or, for labelled Deployments, one of our drift monitors) changed."""
    body = _object(event)
    if caches.is_managed(body):
        handle_owned(controller, event)
        return
    key = caches.key_of(body)
    if _deleted(event):
        controller.world.remove_workload(key)
        controller.enqueue(key)
        return
    previous = controller.world.workloads.get(key)
    controller.world.put_workload(body)
    if _workload_changed(previous, body) or _initial(event):
        controller.enqueue(key)


def handle_owned(controller: reconciling.Controller, event: Mapping[str, Any]) -> None:
    """An object the operator made changed: restore it if that was not our own write."""
    body = _object(event)
    if not caches.is_managed(body):
        return
    key = caches.key_of(body)
    owner = caches.owner_workload(body)
    known = controller.world.children.get(key)
    if _deleted(event):
        if known is not None and known["metadata"].get("uid") == body["metadata"].get("uid"):
            controller.world.remove_child(key)
    else:
        version = (body.get("metadata") or {}).get("resourceVersion")
        if (
            known is not None
            and (known.get("metadata") or {}).get("resourceVersion") == version
            and not _initial(event)
        ):
            return  # the echo of our own write
        controller.world.put_child(body)
    if owner is not None:
        controller.enqueue(owner)


def handle_artifact(controller: reconciling.Controller, event: Mapping[str, Any]) -> None:
    """A ModelArtifact's facts changed: compliance in its namespace may have changed."""
    body = _object(event)
    metadata = body.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    if _deleted(event):
        controller.world.remove_artifact(namespace, str(metadata.get("name", "")))
    else:
        controller.world.put_artifact(body)
    controller.status_due_in(namespace)


async def prime(controller: reconciling.Controller) -> None:
    """Read every kind once, so the first reconciles see the whole cluster."""
    world = await snapshot(controller)
    controller.world.replace_with(world)
    LOGGER.info(
        "primed: %d policies, %d namespaces, %d workloads, %d owned objects",
        len(world.policies),
        len(world.namespaces),
        len(world.workloads),
        len(world.children),
    )


async def resync(controller: reconciling.Controller) -> None:
    """Read everything again (missed or paused watches), then reconcile everything."""
    controller.world.replace_with(await snapshot(controller))
    controller.enqueue_many(controller.world.workloads_in(None))
    controller.status_due(list(controller.world.policies))


async def resync_forever(
    controller: reconciling.Controller, leadership: leadership_.Leadership, interval: float
) -> None:
    """Resync every interval while active, and at once when this instance becomes active."""
    was_active = True
    while True:
        await asyncio.sleep(min(interval, RESYNC_CHECK_SECONDS))
        active = await leadership.active()
        due = time.monotonic() - controller.last_resync >= interval
        if active and (due or not was_active):
            try:
                await resync(controller)
            except writing.ApiException as error:
                LOGGER.warning("resync: %s %s", error.status, error.reason)
            controller.last_resync = time.monotonic()
        was_active = active


async def snapshot(controller: reconciling.Controller) -> caches.World:
    """A World read from lists of every watched kind."""
    kube = controller.kube
    lists = await asyncio.gather(
        *(kube.list_all(path) for path in PRIME_PATHS),
        *(kube.list_all(path, ownership.MANAGED_SELECTOR) for path in OWNED_PRIME_PATHS),
    )
    world = caches.World()
    for items in lists:
        for body in items:
            kind = body.get("kind")
            if kind in ("ModelSecurityPolicy", "ClusterModelSecurityPolicy"):
                world.put_policy(body)
            elif kind == "Namespace":
                world.put_namespace(body)
            elif kind == "ModelArtifact":
                world.put_artifact(body)
            elif caches.is_managed(body):
                world.put_child(body)
            elif kind in caches.WORKLOAD_KINDS:
                world.put_workload(body)
    return world


def register(
    registry: kopf.OperatorRegistry,
    controller: reconciling.Controller,
    *,
    leadership: leadership_.Leadership | None = None,
    resync_interval: float = DEFAULT_RESYNC_SECONDS,
) -> None:
    """Attach the policy reconciler's handlers to a registry."""
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def start_reconciler(**_: Any) -> None:
        await prime(controller)
        controller.last_resync = time.monotonic()
        controller.start()
        if leadership is not None and resync_interval > 0:
            loop = asyncio.get_running_loop()
            tasks.append(loop.create_task(resync_forever(controller, leadership, resync_interval)))

    @kopf.on.cleanup(registry=registry)
    async def stop_reconciler(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await controller.stop()

    for plural in ("modelsecuritypolicies", "clustermodelsecuritypolicies"):

        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-event", registry=registry)
        async def policy_event(event: Mapping[str, Any], **_: Any) -> None:
            handle_policy(controller, event)

    @kopf.on.event("", "v1", "namespaces", registry=registry)
    async def namespace_event(event: Mapping[str, Any], **_: Any) -> None:
        handle_namespace(controller, event)

    for group, version, plural in WORKLOAD_RESOURCES:

        @kopf.on.event(group, version, plural, id=f"{plural}-event", registry=registry)
        async def workload_event(event: Mapping[str, Any], **_: Any) -> None:
            handle_workload(controller, event)

    for group, version, plural in OWNED_RESOURCES:

        @kopf.on.event(
            group,
            version,
            plural,
            id=f"owned-{plural}-event",
            labels={ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY},
            registry=registry,
        )
        async def owned_event(event: Mapping[str, Any], **_: Any) -> None:
            handle_owned(controller, event)

    @kopf.on.event(GROUP, VERSION, "modelartifacts", registry=registry)
    async def artifact_event(event: Mapping[str, Any], **_: Any) -> None:
        handle_artifact(controller, event)
