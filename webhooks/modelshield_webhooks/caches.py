"""The state admission reads: policies (compiled), ModelArtifact facts and namespace labels.

Filled by list+watch (``watching``), read by the handlers without any API call. Lives on
one event loop: updates and reads never interleave inside a method, so no locks.
A policy that does not validate is kept as *broken*: workloads it could govern are
denied until it is fixed, because dropping it would admit what it was meant to stop.
When its selectors still read, only the workloads they pick are denied, so that one
broken cluster policy is not an outage everywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import artifacts, common, policies
from modelshield.engine import compiling, facts, selectors
from modelshield.supplychain.images import signerkeys
from modelshield_webhooks import servingruntimes

_logger = logging.getLogger(__name__)

POLICIES = "modelsecuritypolicies"
CLUSTER_POLICIES = "clustermodelsecuritypolicies"
ARTIFACTS = "modelartifacts"
NAMESPACES = "namespaces"
KINDS = (POLICIES, CLUSTER_POLICIES, ARTIFACTS, NAMESPACES)
#: Watched too, but their CRDs may be absent: readiness does not wait for them.
OPTIONAL_KINDS = servingruntimes.KINDS

_MODELS: dict[str, type[compiling.AnyPolicy]] = {
    POLICIES: policies.ModelSecurityPolicy,
    CLUSTER_POLICIES: policies.ClusterModelSecurityPolicy,
}

#: (resource kind, namespace, name)
Key = tuple[str, str, str]


@dataclasses.dataclass(frozen=True)
class Scope:
    """The selectors of a broken policy, when they still read as selectors."""

    selector: selectors.Selector
    #: A cluster policy's namespaceSelector; None for a namespaced policy.
    namespace_selector: selectors.Selector | None


@dataclasses.dataclass(frozen=True)
class BrokenPolicy:
    """A policy in the cluster that the API models reject."""

    kind: str
    namespace: str
    name: str
    problem: str
    #: Where it would apply; None when its selectors are unusable too, and it then
    #: applies to everything in its namespace (every namespace for a cluster policy).
    scope: Scope | None = dataclasses.field(default=None, compare=False)

    def could_govern(
        self, labels: Mapping[str, str], namespace_labels: Mapping[str, str] | None
    ) -> bool:
        """Whether it could govern a workload with these labels (fails closed).

        ``namespace_labels`` None: the namespace is not known, so a namespaceSelector
        cannot tell and the workload counts as governed.
        """
        scope = self.scope
        if scope is None:
            return True
        if scope.namespace_selector is not None:
            if namespace_labels is None:
                return True
            if not scope.namespace_selector.matches(namespace_labels):
                return False
        return scope.selector.matches(labels)

    def describe(self) -> str:
        """What is broken and what to do."""
        where = f"{self.namespace}/" if self.namespace else ""
        scope = (
            "the workloads its selectors pick"
            if self.scope is not None
            else "every workload it could govern (its selectors cannot be read either)"
        )
        return (
            f"{self.kind} {where}{self.name} is invalid ({self.problem}); fix or delete it: "
            f"until then modelshield denies {scope}"
        )


def _scope(resource: str, obj: Mapping[str, Any]) -> Scope | None:
    """A broken policy's selectors, read on their own; None when they are unusable."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return None
    try:
        selector = selectors.compile_selector(common.LabelSelector.model_validate(spec["selector"]))
        namespace_selector = (
            selectors.compile_selector(
                common.LabelSelector.model_validate(spec["namespaceSelector"])
            )
            if resource == CLUSTER_POLICIES
            else None
        )
    except (KeyError, pydantic.ValidationError):
        return None
    return Scope(selector, namespace_selector)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _key(resource: str, obj: Mapping[str, Any]) -> Key:
    metadata = _metadata(obj)
    return (resource, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _interned(
    compiled: compiling.CompiledPolicy, seen: dict[object, object]
) -> compiling.CompiledPolicy:
    images = compiled.images
    if images is not None:
        # CompiledImages compares without its source, but the source still decides
        # (mutateToDigest): only blocks with equal sources may be shared.
        shared = ("images", images, images.source.model_dump_json())
        images = seen.setdefault(shared, images)  # type: ignore[assignment]
    return dataclasses.replace(
        compiled,
        images=images,
        models=seen.setdefault(("models", compiled.models), compiled.models),  # type: ignore[arg-type]
        runtime=seen.setdefault(("runtime", compiled.runtime), compiled.runtime),  # type: ignore[arg-type]
    )


def _without_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    # Admission depends on the spec only; the operator's status must never break a policy.
    return {k: v for k, v in obj.items() if k != "status"}


class ClusterState:
    """Watch-fed caches and the compiled PolicySet, plus a FactSource over the artifacts."""

    def __init__(self) -> None:
        self._compiled: dict[Key, compiling.CompiledPolicy] = {}
        self._broken: dict[Key, BrokenPolicy] = {}
        self._generations: dict[Key, object] = {}
        self.policy_set: compiling.PolicySet = compiling.EMPTY
        self._artifacts: dict[tuple[str, str], facts.ArtifactFacts] = {}
        self._artifacts_by_uri: dict[tuple[str, str], dict[str, facts.ArtifactFacts]] = {}
        self._namespaces: dict[str, Mapping[str, str]] = {}
        self._namespace_seen: dict[str, asyncio.Event] = {}
        self._synced: set[str] = set()
        #: KServe's runtimes, for the InferenceServices that name one.
        self.runtimes = servingruntimes.ServingRuntimes()
        #: Bumped on every change; lets tests and metrics see that an event was applied.
        self.version = 0

    # --- readiness -----------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether every kind has been listed at least once."""
        return self._synced.issuperset(KINDS)

    def unsynced(self) -> list[str]:
        """The kinds not listed yet, for /readyz."""
        return [kind for kind in KINDS if kind not in self._synced]

    # --- updates -----------------------------------------------------------------------

    def replace(self, resource: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list of every object of a kind (the initial list and each resync)."""
        if resource in _MODELS:
            for key in [k for k in (*self._compiled, *self._broken) if k[0] == resource]:
                self._compiled.pop(key, None)
                self._broken.pop(key, None)
                self._generations.pop(key, None)
            for obj in objects:
                self._put_policy(resource, obj)
            self._rebuild()
        elif resource == ARTIFACTS:
            self._artifacts.clear()
            self._artifacts_by_uri.clear()
            for obj in objects:
                self._put_artifact(obj)
        elif resource == NAMESPACES:
            self._namespaces.clear()
            for obj in objects:
                self._put_namespace(obj)
        elif resource in OPTIONAL_KINDS:
            self.runtimes.replace(resource, objects)
        self._synced.add(resource)
        self.version += 1

    def apply(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""
        deleted = event_type == "DELETED"
        if resource in _MODELS:
            key = _key(resource, obj)
            generation = _metadata(obj).get("generation")
            if not deleted and generation and self._generations.get(key) == generation:
                return  # a status or metadata update: what admission compiled is unchanged
            self._compiled.pop(key, None)
            self._broken.pop(key, None)
            self._generations.pop(key, None)
            if not deleted:
                self._put_policy(resource, obj)
            self._rebuild()
        elif resource == ARTIFACTS:
            self._drop_artifact(obj)
            if not deleted:
                self._put_artifact(obj)
        elif resource == NAMESPACES:
            name = str(_metadata(obj).get("name") or "")
            if deleted:
                self._namespaces.pop(name, None)
            else:
                self._put_namespace(obj)
        elif resource in OPTIONAL_KINDS:
            self.runtimes.apply(resource, event_type, obj)
        self.version += 1

    def _put_policy(self, resource: str, obj: Mapping[str, Any]) -> None:
        key = _key(resource, obj)
        self._generations[key] = _metadata(obj).get("generation")
        try:
            policy = _MODELS[resource].model_validate(_without_status(obj))
            images = policy.spec.images
            if resource == CLUSTER_POLICIES and images and signerkeys.secret_refs(images):
                # The resource webhook refuses these; one created while it was down must not
                # make the webhook read a Secret in the namespace of the workload's author.
                raise ValueError(
                    "a secretRef image signer: a ClusterModelSecurityPolicy has no namespace "
                    "to read a Secret from; use publicKey or keyless"
                )
            self._compiled[key] = compiling.compile_policy(policy)
        except (pydantic.ValidationError, ValueError) as error:
            problem = str(error).replace("\n", " ")[:500]
            _logger.warning("policy %s/%s/%s is invalid: %s", *key, problem)
            kind = "ModelSecurityPolicy" if resource == POLICIES else "ClusterModelSecurityPolicy"
            self._broken[key] = BrokenPolicy(
                kind, key[1], key[2], problem, _scope(resource, _without_status(obj))
            )

    def _rebuild(self) -> None:
        namespaced: dict[str, list[compiling.CompiledPolicy]] = {}
        cluster: list[compiling.CompiledPolicy] = []
        # Equal requirement blocks of different policies become one object: the engine
        # memoizes checks by block identity (as compiling.compile_policies does).
        seen: dict[object, object] = {}
        for key in sorted(self._compiled):
            compiled = _interned(self._compiled[key], seen)
            if key[0] == CLUSTER_POLICIES:
                cluster.append(compiled)
            else:
                namespaced.setdefault(key[1], []).append(compiled)
        self.policy_set = compiling.PolicySet(
            namespaced={ns: tuple(group) for ns, group in namespaced.items()},
            cluster=tuple(cluster),
        )

    def _put_artifact(self, obj: Mapping[str, Any]) -> None:
        _, namespace, name = _key(ARTIFACTS, obj)
        try:
            artifact = artifacts.ModelArtifact.model_validate(obj)
        except pydantic.ValidationError:
            try:
                # A status the models reject proves nothing: keep the spec, drop the facts.
                artifact = artifacts.ModelArtifact.model_validate(_without_status(obj))
            except pydantic.ValidationError as error:
                _logger.warning("ModelArtifact %s/%s is invalid: %s", namespace, name, error)
                return
        found = facts.from_model_artifact(artifact)
        found = dataclasses.replace(found, namespace=namespace, name=name)
        self._artifacts[(namespace, name)] = found
        self._artifacts_by_uri.setdefault((namespace, found.uri), {})[name] = found

    def _drop_artifact(self, obj: Mapping[str, Any]) -> None:
        _, namespace, name = _key(ARTIFACTS, obj)
        old = self._artifacts.pop((namespace, name), None)
        if old is not None:
            same_uri = self._artifacts_by_uri.get((namespace, old.uri), {})
            same_uri.pop(name, None)
            if not same_uri:
                self._artifacts_by_uri.pop((namespace, old.uri), None)

    def _put_namespace(self, obj: Mapping[str, Any]) -> None:
        metadata = _metadata(obj)
        name = str(metadata.get("name") or "")
        labels = metadata.get("labels")
        self._namespaces[name] = (
            {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}
        )
        seen = self._namespace_seen.pop(name, None)
        if seen is not None:
            seen.set()

    # --- reads -----------------------------------------------------------------------

    def broken_for(self, namespace: str) -> list[BrokenPolicy]:
        """Invalid policies that could govern workloads in the namespace.

        A cluster policy is listed for every namespace: ``BrokenPolicy.could_govern``
        tells from its selectors (when they still read) which workloads it would pick.
        """
        return [
            broken
            for key, broken in self._broken.items()
            if key[0] == CLUSTER_POLICIES or key[1] == namespace
        ]

    def namespace_labels_now(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's labels if the cache has seen it."""
        return self._namespaces.get(namespace)

    async def namespace_labels(
        self, namespace: str, wait_seconds: float
    ) -> Mapping[str, str] | None:
        """The labels, waiting a little for a namespace created a moment ago to be seen."""
        labels = self._namespaces.get(namespace)
        if labels is not None or wait_seconds <= 0:
            return labels
        seen = self._namespace_seen.setdefault(namespace, asyncio.Event())
        try:
            await asyncio.wait_for(seen.wait(), wait_seconds)
        except TimeoutError:
            self._namespace_seen.pop(namespace, None)
        return self._namespaces.get(namespace)

    def artifact(self, namespace: str, name: str) -> facts.ArtifactFacts | None:
        """The ModelArtifact of that name."""
        return self._artifacts.get((namespace, name))

    def artifact_by_uri(self, namespace: str, uri: str) -> facts.ArtifactFacts | None:
        """The ModelArtifact in the namespace whose spec.uri is uri (the first by name)."""
        same_uri = self._artifacts_by_uri.get((namespace, uri))
        if not same_uri:
            return None
        return same_uri[min(same_uri)]

    def counts(self) -> dict[str, int]:
        """How much is cached, for /readyz and logs."""
        return {
            "policies": len(self._compiled),
            "brokenPolicies": len(self._broken),
            "modelArtifacts": len(self._artifacts),
            "namespaces": len(self._namespaces),
        }
