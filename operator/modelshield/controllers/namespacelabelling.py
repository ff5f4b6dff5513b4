"""kopf handlers that keep ``modelshield.dev/ungoverned=true`` on the namespaces no policy governs.

The workload webhooks skip namespaces carrying the label, so a dead admission server (which
fails closed) blocks creates only where some policy could govern them. What carries the
label is decided by ``builders.ungoverned`` (pure); this module reads the namespaces and
both policy kinds from the policy reconciler's ``caches.World`` (the operator's one view of
them) and merge-patches the label onto or off namespaces.

The World is primed from full lists at startup, before kopf calls any handler, so nothing
is labelled on a partial view. These handlers are registered after the policy
reconciler's, and kopf runs an object's event handlers one after another in that order:
the reconciler's records the policy or namespace in the World and queues its work (no API
call), then the label is judged on the World as it now is and removals are written at
once; what remains is the time from the policy's creation to its watch event here. A
periodic pass (active instance only) retries writes that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import kopf

from modelshield.controllers import caches, writing
from modelshield.controllers import leadership as leadership_
from modelshield.controllers.builders import ungoverned

LOGGER = logging.getLogger("modelshield.ungoverned")
GROUP, VERSION = "modelshield.dev", "v1alpha1"
DEFAULT_RESYNC_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class View:
    """The World as the labeller reads it (the policy reconciler's handlers keep it current)."""

    world: caches.World

    def labels(self, only: Iterable[str] | None = None) -> dict[str, Mapping[str, str]]:
        """The labels of each live namespace (of those named, when ``only`` is given); a
        namespace being deleted is left out."""
        namespaces = self.world.namespaces
        names = list(namespaces) if only is None else only
        return {
            name: found
            for name in names
            if (found := namespaces.get(name)) is not None and name not in self.world.terminating
        }

    def policies(self) -> ungoverned.Policies:
        """The policies, as the builder reads them: where namespaced ones are, and every
        cluster one's namespaceSelector as stored (the builder fails closed on a bad one)."""
        namespaced: set[str] = set()
        cluster: list[Mapping[str, Any] | None] = []
        for (kind, namespace, _), entry in self.world.policies.items():
            if kind == "ClusterModelSecurityPolicy":
                selector = (entry.body.get("spec") or {}).get("namespaceSelector")
                cluster.append(dict(selector) if isinstance(selector, Mapping) else selector)
            else:
                namespaced.add(namespace)
        return ungoverned.policies_of(namespaced, cluster)


class Labeller:
    """Writes the label changes the builder plans, one pass at a time."""

    def __init__(
        self,
        kube: writing.Kube,
        *,
        excluded: Iterable[str] = (),
        leadership: leadership_.Leadership | None = None,
        resync_seconds: float = DEFAULT_RESYNC_SECONDS,
    ) -> None:
        self.kube = kube
        self.excluded = frozenset(excluded)
        self.leadership = leadership
        self.resync_seconds = resync_seconds
        self.view: View | None = None
        self.writes = 0
        self._lock = asyncio.Lock()

    def _current(self, view: View, namespace: str) -> ungoverned.Change | None:
        labels = view.labels([namespace]).get(namespace)
        if labels is None:
            return None  # deleted or terminating meanwhile
        return ungoverned.change(namespace, labels, view.policies(), self.excluded)

    async def judge(self, view: View, only: Iterable[str] | None = None) -> None:
        """Bring the label of these namespaces (``only``, else all) in line with the view."""
        self.view = view
        async with self._lock:
            # One namespace per namespace event: never walk all of them for it.
            names = None if only is None else list(only)
            planned = ungoverned.plan(view.labels(names), view.policies(), self.excluded, names)
            removals = [change for change in planned if not change.add]
            # Removals at once, side by side: each is a create that would escape the webhook.
            await asyncio.gather(*(self._write(change) for change in removals))
            for change in planned:
                if not change.add:
                    continue
                # Judged again on the World as it is now: the removals took time.
                now = self._current(view, change.namespace)
                if now is not None and now.add:
                    await self._write(now)

    async def _write(self, change: ungoverned.Change) -> None:
        path = f"/api/v1/namespaces/{quote(change.namespace, safe='')}"
        try:
            await self.kube.request(
                "PATCH",
                path,
                change.patch,
                [("fieldManager", writing.FIELD_MANAGER)],
                writing.MERGE_PATCH,
            )
        except writing.ApiException as error:
            if error.status != 404:  # a namespace that is gone needs no label
                LOGGER.warning(
                    "%s %s on namespace %s: %s %s",
                    "adding" if change.add else "removing",
                    ungoverned.LABEL,
                    change.namespace,
                    error.status,
                    error.reason,
                )
            return
        except Exception:
            LOGGER.exception("label of namespace %s", change.namespace)
            return
        self.writes += 1
        LOGGER.info(
            "%s %s=%s %s namespace %s",
            "set" if change.add else "removed",
            ungoverned.LABEL,
            ungoverned.VALUE,
            "on" if change.add else "from",
            change.namespace,
        )

    async def resync_forever(self) -> None:
        """Every ``resync_seconds``, a pass over every namespace (retries failed writes)."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            view = self.view
            if view is None:
                continue  # no handler has run yet: kopf is still listing
            # A standby instance's watches are paused: its World is stale.
            if self.leadership is not None and not await self.leadership.active():
                continue
            try:
                await self.judge(view)
            except Exception:
                LOGGER.exception("ungoverned namespaces resync")


def register(
    registry: kopf.OperatorRegistry,
    *,
    kube: writing.Kube,
    world: caches.World,
    excluded: Iterable[str] = (),
    leadership: leadership_.Leadership | None = None,
    resync_seconds: float = DEFAULT_RESYNC_SECONDS,
) -> Labeller:
    """Attach the label handlers to a registry; they read ``world``.

    Register after the policy reconciler (``policies.register``), whose handlers of the
    same objects record them in ``world`` before these run.
    """
    labeller = Labeller(
        kube, excluded=excluded, leadership=leadership, resync_seconds=resync_seconds
    )
    view = View(world)
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def start_ungoverned_resync(**_: Any) -> None:
        tasks.append(asyncio.get_running_loop().create_task(labeller.resync_forever()))

    @kopf.on.cleanup(registry=registry)
    async def stop_ungoverned_resync(**_: Any) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @kopf.on.event(
        GROUP, VERSION, "modelsecuritypolicies", id="ungoverned-policy", registry=registry
    )
    async def ungoverned_policy(**kwargs: Any) -> None:
        await labeller.judge(view, [str(kwargs["namespace"])])

    @kopf.on.event(
        GROUP, VERSION, "clustermodelsecuritypolicies", id="ungoverned-cluster", registry=registry
    )
    async def ungoverned_cluster_policy(**_: Any) -> None:
        await labeller.judge(view)

    @kopf.on.event("", "v1", "namespaces", id="ungoverned-namespace", registry=registry)
    async def ungoverned_namespace(**kwargs: Any) -> None:
        if (kwargs.get("event") or {}).get("type") == "DELETED":
            return
        await labeller.judge(view, [str(kwargs["name"])])

    return labeller
