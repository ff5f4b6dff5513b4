"""kopf handlers that keep ``modelshield.dev/ungoverned=true`` on the namespaces no policy governs.

The workload webhooks skip namespaces carrying the label, so a dead admission server (which
fails closed) blocks creates only where some policy could govern them. What carries the
label is decided by ``builders.ungoverned`` (pure); this module reads kopf indices of the
namespaces and both policy kinds, and merge-patches the label onto or off namespaces.

kopf calls no handler before every index has its initial listing, so nothing is labelled
on a partial view. A policy event removes labels before the policy reconciler queues its
work (these handlers are registered first, and kopf runs an object's handlers in that
order); what remains is the time from the policy's creation to its watch event here.
A periodic pass (active instance only) retries writes that failed.
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

from modelshield.controllers import leadership as leadership_
from modelshield.controllers import writing
from modelshield.controllers.builders import ungoverned

LOGGER = logging.getLogger("modelshield.ungoverned")
GROUP, VERSION = "modelshield.dev", "v1alpha1"
DEFAULT_RESYNC_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class View:
    """kopf's live indices (kopf updates them in place as watch events arrive)."""

    namespaces: Mapping[str, Iterable[Mapping[str, str]]]
    namespaced: Mapping[str, Iterable[str]]
    cluster: Mapping[None, Iterable[Mapping[str, Any] | None]]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> View:
        """The indices kopf hands a handler, by their ids."""
        return cls(
            kwargs["ungoverned_namespaces"],
            kwargs["ungoverned_policies"],
            kwargs["ungoverned_cluster_policies"],
        )

    def labels(self, only: Iterable[str] | None = None) -> dict[str, Mapping[str, str]]:
        """The labels of each live namespace (of those named, when ``only`` is given)."""
        names = self.namespaces if only is None else only
        return {
            name: next(iter(found), {})
            for name in names
            if (found := self.namespaces.get(name)) is not None
        }

    def policies(self) -> ungoverned.Policies:
        """The policies, as the builder reads them."""
        return ungoverned.policies_of(
            (namespace for namespace, names in self.namespaced.items() if list(names)),
            self.cluster.get(None, []),
        )


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
                # Judged again on the indices as they are now: the removals took time.
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
            # A standby instance's watches are paused: its indices are stale.
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
    excluded: Iterable[str] = (),
    leadership: leadership_.Leadership | None = None,
    resync_seconds: float = DEFAULT_RESYNC_SECONDS,
) -> Labeller:
    """Attach the label handlers (and the indices they read) to a registry.

    Register before the policy reconciler so that a policy's label removal comes first.
    """
    labeller = Labeller(
        kube, excluded=excluded, leadership=leadership, resync_seconds=resync_seconds
    )
    tasks: list[asyncio.Task[None]] = []

    # Own index ids: this controller also runs without the others. A terminating namespace
    # is filtered out (filters, not None results, drop an object from a kopf index).
    @kopf.index(
        "",
        "v1",
        "namespaces",
        id="ungoverned_namespaces",
        when=lambda meta, **_: not meta.get("deletionTimestamp"),
        registry=registry,
    )
    def ungoverned_namespaces(**kwargs: Any) -> Any:
        return {kwargs["name"]: dict(kwargs["labels"])}

    @kopf.index(
        GROUP, VERSION, "modelsecuritypolicies", id="ungoverned_policies", registry=registry
    )
    def ungoverned_policies(**kwargs: Any) -> Any:
        return {kwargs["namespace"]: kwargs["name"]}

    @kopf.index(
        GROUP,
        VERSION,
        "clustermodelsecuritypolicies",
        id="ungoverned_cluster_policies",
        registry=registry,
    )
    def ungoverned_cluster_policies(**kwargs: Any) -> Any:
        selector = kwargs["spec"].get("namespaceSelector")
        return {None: dict(selector) if isinstance(selector, Mapping) else selector}

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
        await labeller.judge(View.of(kwargs), [str(kwargs["namespace"])])

    @kopf.on.event(
        GROUP, VERSION, "clustermodelsecuritypolicies", id="ungoverned-cluster", registry=registry
    )
    async def ungoverned_cluster_policy(**kwargs: Any) -> None:
        await labeller.judge(View.of(kwargs))

    @kopf.on.event("", "v1", "namespaces", id="ungoverned-namespace", registry=registry)
    async def ungoverned_namespace(**kwargs: Any) -> None:
        if (kwargs.get("event") or {}).get("type") == "DELETED":
            return
        await labeller.judge(View.of(kwargs), [str(kwargs["name"])])

    return labeller
