"""kopf handlers that keep each namespace's ``modelshield-model-keys`` ConfigMap current.

The startup re-verification init container that the mutating webhook injects reads the
public key of a ModelArtifact's signer from this ConfigMap. What it should hold is decided
by ``builders.modelkeys`` (pure); this module gathers the inputs (a kopf index of the
ModelArtifacts here, the policies' models blocks from the operator's one ``World``; the
``secretRef`` Secrets, read by name through ``secretreading.key_values`` as for a
ModelArtifact check) and makes the one write the plan calls for.

A pass over a namespace runs when one of its ModelArtifacts or policies changes, when a
cluster policy or the namespace's labels change, when the ConfigMap itself is edited or
deleted, and every ``resync_seconds`` (a Secret's content can change without any event
the operator watches: it never lists or watches Secrets). Passes of one namespace never
overlap, and events that arrive during a pass are served by one more pass, not one each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from modelshield.api.v1alpha1 import policies
from modelshield.controllers import caches, kubesecrets, writing
from modelshield.controllers.builders import modelkeys
from modelshield.modelartifacts import reconciling
from modelshield.supplychain.images import secretreading

LOGGER = logging.getLogger("modelshield.modelkeys")
GROUP, VERSION = "modelshield.dev", "v1alpha1"
RESYNC_ENV = "MODELSHIELD_MODEL_KEYS_RESYNC_SECONDS"
DEFAULT_RESYNC_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class View:
    """kopf's live index of ModelArtifacts, and the World the policies are read from
    (both updated in place as watch events arrive)."""

    artifacts: Mapping[str, Iterable[modelkeys.Artifact]]
    world: caches.World

    def requirements(self, namespace: str) -> list[policies.ModelRequirements]:
        """The models blocks that govern the namespace."""
        return self.world.model_requirements(namespace)


def _involved(namespace: str, artifact: modelkeys.Artifact) -> dict[str, Any]:
    return {
        "apiVersion": modelkeys.ARTIFACT_API_VERSION,
        "kind": "ModelArtifact",
        "metadata": {"name": artifact.name, "namespace": namespace, "uid": artifact.uid},
    }


class Publisher:
    """Runs the passes: at most one per namespace at a time, coalescing requests."""

    def __init__(self, kube_source: Callable[[], Any], resync_seconds: float) -> None:
        self._kube_source = kube_source
        self.resync_seconds = resync_seconds
        self.view: View | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._asked: dict[str, int] = {}
        self._served: dict[str, int] = {}
        #: Problems already posted as Events, per namespace (each is posted once).
        self._reported: dict[str, set[modelkeys.Problem]] = {}
        #: Namespaces where a managed ConfigMap was written and not yet removed.
        self.published: set[str] = set()

    async def publish(self, namespace: str, view: View) -> None:
        """Bring the namespace's ConfigMap up to date (errors are logged, not raised)."""
        self.view = view
        ticket = self._asked[namespace] = self._asked.get(namespace, 0) + 1
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            if self._served.get(namespace, 0) >= ticket:
                return  # a pass that started after this request covered it
            self._served[namespace] = self._asked[namespace]
            try:
                await self._pass(namespace, view)
            except writing.ApiException as error:
                # 409: someone wrote in between; their write's event (or the resync) retries.
                level = logging.INFO if error.status in (403, 404, 409) else logging.WARNING
                LOGGER.log(level, "model keys in %s: %s %s", namespace, error.status, error.reason)
            except Exception:
                LOGGER.exception("model keys in %s", namespace)

    async def _pass(self, namespace: str, view: View) -> None:
        kube = self._kube_source()
        if kube is None:
            LOGGER.warning("no Kubernetes client: model keys in %s not published", namespace)
            return
        present = list(view.artifacts.get(namespace, []))
        data: dict[str, str] = {}
        problems: tuple[modelkeys.Problem, ...] = ()
        if any(artifact.signer is not None for artifact in present):
            requirements = view.requirements(namespace)
            secret_keys = await secretreading.key_values(
                kubesecrets.KubeSecrets(kube),
                namespace,
                reconciling.signer_secret_refs(requirements),
            )
            known = modelkeys.signer_keys(requirements, secret_keys)
            wanted = modelkeys.contents(present, known)
            data, problems = wanted.data, wanted.problems
        live = await kube.get("ConfigMap", namespace, modelkeys.NAME)
        action = modelkeys.plan(namespace, live, present, data)
        if action.verb == "create" and action.body is not None:
            await kube.create(action.body)
            self.published.add(namespace)
            LOGGER.info("created %s/%s with %d key(s)", namespace, modelkeys.NAME, len(data))
        elif action.verb == "replace" and action.body is not None:
            await kube.replace(action.body, action.resource_version)
            self.published.add(namespace)
            LOGGER.info("updated %s/%s: %d key(s)", namespace, modelkeys.NAME, len(data))
        elif action.verb == "delete":
            await kube.delete("ConfigMap", namespace, modelkeys.NAME, action.uid)
            LOGGER.info("deleted %s/%s: no ModelArtifact left", namespace, modelkeys.NAME)
        elif action.verb == "conflict":
            problems = modelkeys.conflict_problems(present)
        if not present:
            self.published.discard(namespace)
        await self._report(kube, namespace, present, problems)

    async def _report(
        self,
        kube: Any,
        namespace: str,
        present: Iterable[modelkeys.Artifact],
        problems: Iterable[modelkeys.Problem],
    ) -> None:
        by_name = {artifact.name: artifact for artifact in present}
        current = set(problems)
        for problem in sorted(current - self._reported.get(namespace, set()), key=str):
            artifact = by_name.get(problem.artifact)
            LOGGER.warning("%s/%s: %s", namespace, problem.artifact, problem.message)
            if artifact is not None:
                await kube.event(
                    _involved(namespace, artifact), "Warning", problem.reason, problem.message
                )
        if current:
            self._reported[namespace] = current
        else:
            self._reported.pop(namespace, None)

    async def resync_forever(self) -> None:
        """Every ``resync_seconds``, a pass over each namespace with artifacts or our ConfigMap."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            view = self.view
            if view is None:
                continue  # no handler has run yet: kopf is still listing
            for namespace in sorted({*view.artifacts, *self.published}):
                await self.publish(namespace, view)


def resync_seconds_from(environ: Mapping[str, str] = os.environ) -> float:
    """The resync period: ``MODELSHIELD_MODEL_KEYS_RESYNC_SECONDS``, else the default."""
    value = float(environ.get(RESYNC_ENV, DEFAULT_RESYNC_SECONDS))
    if value <= 0:
        raise ValueError(f"{RESYNC_ENV} must be positive, not {value}")
    return value


def register(
    registry: kopf.OperatorRegistry,
    *,
    world: caches.World,
    kube_source: Callable[[], Any],
    resync_seconds: float | None = None,
) -> Publisher:
    """Attach the model-keys handlers to a registry.

    The policies and namespace labels come from ``world``, which handlers registered
    before these keep current (kopf runs a resource's event handlers in registration
    order, so a pass started by a policy or namespace event sees that event).
    """
    publisher = Publisher(kube_source, resync_seconds or resync_seconds_from())
    tasks: list[asyncio.Task[None]] = []

    def view_of(kwargs: Mapping[str, Any]) -> View:
        return View(kwargs["modelkeys_artifacts"], world)

    # Filters, not None results, drop an object from an index: kopf keeps the previous
    # value of an indexer that returns None.
    @kopf.index(
        GROUP,
        VERSION,
        "modelartifacts",
        id="modelkeys_artifacts",
        # An artifact being deleted has its key withdrawn at once.
        when=lambda meta, **_: not meta.get("deletionTimestamp"),
        registry=registry,
    )
    def modelkeys_artifacts(**kwargs: Any) -> Any:
        return {kwargs["namespace"]: modelkeys.artifact_of(kwargs["body"])}

    @kopf.on.startup(registry=registry)
    async def start_model_keys_resync(**_: Any) -> None:
        tasks.append(asyncio.get_running_loop().create_task(publisher.resync_forever()))

    @kopf.on.cleanup(registry=registry)
    async def stop_model_keys_resync(**_: Any) -> None:
        for task in tasks:
            task.cancel()

    @kopf.on.event(GROUP, VERSION, "modelartifacts", id="modelkeys-artifact", registry=registry)
    async def model_keys_artifact(**kwargs: Any) -> None:
        await publisher.publish(str(kwargs["namespace"]), view_of(kwargs))

    @kopf.on.event(
        GROUP, VERSION, "modelsecuritypolicies", id="modelkeys-policy", registry=registry
    )
    async def model_keys_policy(**kwargs: Any) -> None:
        view = view_of(kwargs)
        if str(kwargs["namespace"]) in view.artifacts:
            await publisher.publish(str(kwargs["namespace"]), view)

    @kopf.on.event(
        GROUP, VERSION, "clustermodelsecuritypolicies", id="modelkeys-cluster", registry=registry
    )
    async def model_keys_cluster_policy(**kwargs: Any) -> None:
        view = view_of(kwargs)
        for namespace in sorted(view.artifacts):
            await publisher.publish(namespace, view)

    @kopf.on.event("", "v1", "namespaces", id="modelkeys-namespace", registry=registry)
    async def model_keys_namespace(**kwargs: Any) -> None:
        view = view_of(kwargs)
        if str(kwargs["name"]) in view.artifacts:
            await publisher.publish(str(kwargs["name"]), view)

    @kopf.on.event(
        "",
        "v1",
        "configmaps",
        id="modelkeys-configmap",
        when=lambda name, **_: name == modelkeys.NAME,
        registry=registry,
    )
    async def model_keys_config_map(**kwargs: Any) -> None:
        # An edit or deletion by hand is undone; so is what a pass of ours left behind.
        await publisher.publish(str(kwargs["namespace"]), view_of(kwargs))

    return publisher
