"""The serving index: ``status.servedBy`` of every ModelArtifact, kept current.

Watch events of the workload kinds (Deployments, StatefulSets and InferenceServices, as
the policy reconciler watches them, and DaemonSets, Jobs and CronJobs) and of
ModelArtifacts only update a small cache (each workload's model sources as the engine
reads them, each artifact's facts and stored ``servedBy``) and mark the namespace; a
writer recomputes marked namespaces (``provenance.serving``, pure) a moment later and
patches only the records whose ``servedBy`` differs. Whatever the order of events, a pass
moves every record of the namespace to what the cache says. A Job a CronJob made is
recorded too: an owner reference is the creator's to write, so leaving owned workloads
out would let one hide behind any CronJob.

At startup, and again every resync interval while this instance is active, everything is
listed afresh: a workload deleted while the operator was down is gone from the list, so its
entries are removed. A standby instance receives no events (kopf pauses its watches) and
writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
import pydantic

from modelshield.api.v1alpha1 import artifacts
from modelshield.api.v1alpha1 import serving as serving_types
from modelshield.controllers import caches, leadership, policies, writing
from modelshield.engine import facts, workloads
from modelshield.provenance import serving

LOGGER = logging.getLogger("modelshield.serving")
ARTIFACTS_PATH = f"/apis/{policies.GROUP}/{policies.VERSION}/modelartifacts"
#: The workload kinds watched: the policy reconciler's, and the other kinds whose pods may
#: serve a model (not bare Pods or ReplicaSets: a Pod watch is the costliest there is).
WORKLOAD_RESOURCES = (
    *policies.WORKLOAD_RESOURCES,
    ("apps", "v1", "daemonsets"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
)
WORKLOAD_PATHS = tuple(
    f"/apis/{group}/{version}/{plural}" for group, version, plural in WORKLOAD_RESOURCES
)
RETRY_SECONDS = 5.0

ArtifactKey = serving.ArtifactKey


@dataclasses.dataclass
class Index:
    """What the writer needs, and nothing more (no workload bodies are kept)."""

    workloads: dict[caches.Key, tuple[serving.Served, tuple[workloads.ModelReference, ...]]] = (
        dataclasses.field(default_factory=dict)
    )
    artifacts: dict[ArtifactKey, facts.ArtifactFacts] = dataclasses.field(default_factory=dict)
    #: status.servedBy as stored (None: never written), by artifact.
    stored: dict[ArtifactKey, Any] = dataclasses.field(default_factory=dict)

    def put_workload(self, body: Mapping[str, Any]) -> bool:
        """Record a workload; True when what it serves may have changed."""
        entry = serving.read(body)
        key = caches.key_of(body)
        changed = self.workloads.get(key) != entry
        self.workloads[key] = entry
        return changed

    def put_artifact(self, body: Mapping[str, Any]) -> None:
        """Record an artifact's facts and stored servedBy (an invalid one is left out)."""
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name", "")))
        self.stored[key] = (body.get("status") or {}).get("servedBy")
        try:
            artifact = artifacts.ModelArtifact.model_validate(
                {k: body.get(k) for k in ("apiVersion", "kind", "spec")}
                | {"metadata": _metadata(metadata)}
                | ({"status": body["status"]} if body.get("status") else {})
            )
        except pydantic.ValidationError:
            self.artifacts.pop(key, None)
            return
        self.artifacts[key] = facts.from_model_artifact(artifact)

    def remove_artifact(self, key: ArtifactKey) -> None:
        """Forget a deleted artifact."""
        self.artifacts.pop(key, None)
        self.stored.pop(key, None)

    def namespaces(self) -> set[str]:
        """Every namespace with an artifact."""
        return {namespace for namespace, _ in self.artifacts}

    def desired(self, namespace: str) -> dict[ArtifactKey, serving_types.ServedBy]:
        """servedBy of every artifact in the namespace, from the cache."""
        in_namespace = {k: a for k, a in sorted(self.artifacts.items()) if k[0] == namespace}
        source = facts.StaticFacts(artifacts=in_namespace)
        uris: dict[str, list[str]] = {}
        for artifact in in_namespace.values():
            uris.setdefault(artifact.uri, []).append(artifact.name)
        served = {
            workload: serving.served_artifacts(workload, references, source, uris)
            for (_, workload_namespace, _), (workload, references) in self.workloads.items()
            if workload_namespace == namespace
        }
        return serving.index(served, in_namespace.values())


def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata fields the API model knows (not uid, resourceVersion, managedFields...)."""
    return {
        field: metadata[field]
        for field in ("name", "namespace", "generation", "labels", "annotations")
        if metadata.get(field) is not None
    }


def snapshot(lists: Iterable[Iterable[Mapping[str, Any]]]) -> Index:
    """An Index from lists of workloads and ModelArtifacts."""
    index = Index()
    for items in lists:
        for body in items:
            if body.get("kind") == "ModelArtifact":
                index.put_artifact(body)
            elif not caches.is_managed(body):
                index.put_workload(body)
    return index


class Recorder:
    """Keeps ``status.servedBy`` converged; the kopf handlers feed it."""

    def __init__(
        self,
        kube: writing.Kube,
        *,
        leader: leadership.Leadership | None = None,
        delay: float = 0.5,
        resync_interval: float = policies.DEFAULT_RESYNC_SECONDS,
    ) -> None:
        self.kube = kube
        self.leader = leader
        self.delay = delay
        self.resync_interval = resync_interval
        self.index = Index()
        self.dirty: set[str] = set()
        self.writes = 0
        #: Namespace passes that failed (and were retried).
        self.failures = 0
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- events -----------------------------------------------------------------

    def mark(self, namespace: str) -> None:
        """Recompute the namespace's records soon."""
        self.dirty.add(namespace)
        self._wakeup.set()

    def workload_event(self, event: Mapping[str, Any]) -> None:
        """A workload was listed, added, changed or deleted."""
        body = event.get("object")
        if not isinstance(body, Mapping) or caches.is_managed(body):
            return
        key = caches.key_of(body)
        if event.get("type") == "DELETED":
            if self.index.workloads.pop(key, None) is not None:
                self.mark(key[1])
        elif self.index.put_workload(body):
            self.mark(key[1])

    def artifact_event(self, event: Mapping[str, Any]) -> None:
        """An artifact was listed, added, changed or deleted: its URI, type, provenance or
        stored servedBy may differ from what the index says."""
        body = event.get("object")
        if not isinstance(body, Mapping):
            return
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name", "")))
        if event.get("type") == "DELETED":
            self.index.remove_artifact(key)
        else:
            self.index.put_artifact(body)
        self.mark(key[0])

    # --- lifecycle ----------------------------------------------------------------

    async def resync(self) -> None:
        """List everything afresh and recompute every namespace."""
        lists = await asyncio.gather(
            self.kube.list_all(ARTIFACTS_PATH), *(self.kube.list_all(p) for p in WORKLOAD_PATHS)
        )
        self.index = snapshot(lists)
        for namespace in self.index.namespaces():
            self.mark(namespace)

    def start(self) -> None:
        """Start the writer and the periodic resync on the running loop."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_forever())]
        if self.resync_interval > 0:
            self._tasks.append(loop.create_task(self._resync_forever()))

    async def stop(self) -> None:
        """Stop the tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def active(self) -> bool:
        """Whether this instance writes (the active one, by kopf's peering)."""
        return self.leader is None or await self.leader.active()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            try:
                if await self.active():
                    await self.resync()
            except Exception:  # the API server unreachable...: the next resync
                LOGGER.warning("serving index resync failed", exc_info=True)

    async def _write_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self.delay)  # one pass for a burst of events
            due, self.dirty = self.dirty, set()
            failed = [namespace for namespace in sorted(due) if not await self._written(namespace)]
            if failed:
                await asyncio.sleep(RETRY_SECONDS)
                for namespace in failed:
                    self.mark(namespace)

    async def _written(self, namespace: str) -> bool:
        """write(), where any error (the API server unreachable...) is a failure to retry,
        never the end of the writer."""
        try:
            return await self.write(namespace)
        except Exception:  # retried after RETRY_SECONDS
            LOGGER.warning("servedBy in namespace %s", namespace, exc_info=True)
            self.failures += 1
            return False

    async def write(self, namespace: str) -> bool:
        """Patch the records of the namespace whose servedBy differs; False when one failed."""
        ok = True
        for key, served in self.index.desired(namespace).items():
            # As the API server stores it (no nulls), so that the echo compares equal.
            document = served.model_dump(mode="json", by_alias=True, exclude_none=True)
            if self.index.stored.get(key) == document:
                continue
            path = writing.object_path("ModelArtifact", key[0], key[1]) + "/status"
            try:
                await self.kube.request(
                    "PATCH",
                    path,
                    {"status": {"servedBy": document}},
                    [("fieldManager", writing.FIELD_MANAGER)],
                    writing.MERGE_PATCH,
                )
            except writing.ApiException as error:
                if error.status == 404:
                    continue  # deleted meanwhile: its DELETED event follows
                LOGGER.warning("servedBy of %s/%s: %s", key[0], key[1], writing.describe(error))
                ok = False
                continue
            self.index.stored[key] = document
            self.writes += 1
        return ok

    async def settled(self) -> None:
        """Wait until nothing is marked (tests)."""
        while self.dirty or self._wakeup.is_set():
            await asyncio.sleep(0.05)


def register(
    registry: kopf.OperatorRegistry,
    *,
    kube: writing.Kube,
    leader: leadership.Leadership | None = None,
    resync_interval: float = policies.DEFAULT_RESYNC_SECONDS,
) -> Recorder:
    """Attach the serving index's handlers to a registry."""
    recorder = Recorder(kube, leader=leader, resync_interval=resync_interval)

    @kopf.on.startup(registry=registry)
    async def start_serving_index(**_: Any) -> None:
        recorder.start()
        try:
            if await recorder.active():  # the standby writes nothing
                await recorder.resync()
        except Exception:  # events and the periodic resync fill the index
            LOGGER.warning("serving index: the first listing failed", exc_info=True)

    @kopf.on.cleanup(registry=registry)
    async def stop_serving_index(**_: Any) -> None:
        await recorder.stop()

    for group, version, plural in WORKLOAD_RESOURCES:

        @kopf.on.event(group, version, plural, id=f"{plural}-serving", registry=registry)
        async def serving_workload_event(event: Mapping[str, Any], **_: Any) -> None:
            recorder.workload_event(event)

    @kopf.on.event(
        policies.GROUP,
        policies.VERSION,
        "modelartifacts",
        id="modelartifacts-serving",
        registry=registry,
    )
    async def serving_artifact_event(event: Mapping[str, Any], **_: Any) -> None:
        recorder.artifact_event(event)

    return recorder
