"""What the operator has seen: policies, namespaces, workloads, ModelArtifacts, owned objects.

The one view of policies and namespace labels in the operator: the policy reconciler, the
audit, the ModelArtifact controllers (``World.model_requirements``) and the
ungoverned-namespace labeller all read it.

One in-memory ``World`` fed by the watch events kopf delivers (and primed by one list of
each kind at startup, so that the first reconciles never see a half-known cluster). The
reconcilers read only from here, so reconciling 1,000 workloads costs no reads.
No I/O in this module.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import artifacts, common, policies
from modelshield.controllers.builders import ownership
from modelshield.engine import compiling, evaluating, facts, scopes, selectors, workloads

#: (kind, namespace, name) of a workload or an owned object.
Key = tuple[str, str, str]
#: A policy's models block (named here because ``World.policies``, a field, hides the module
#: inside the class).
ModelRequirements = policies.ModelRequirements
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "InferenceService")


def key_of(body: Mapping[str, Any]) -> Key:
    """The (kind, namespace, name) of an object given as a dict."""
    metadata = body.get("metadata") or {}
    return (
        str(body.get("kind", "")),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name", "")),
    )


def is_managed(body: Mapping[str, Any]) -> bool:
    """Whether modelshield made this object: its label *and* its ownership annotations.

    A label alone must not turn a user's Deployment into "one of ours" (and so take it out
    of governance); an object carrying all of them is treated as ours: made to match what
    should exist, or deleted.
    """
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return bool(
        labels.get(ownership.MANAGED_BY_LABEL) == ownership.MANAGED_BY
        and ownership.HASH_ANNOTATION in annotations
        and ownership.WORKLOAD_ANNOTATION in annotations
    )


def owner_workload(body: Mapping[str, Any]) -> Key | None:
    """The workload an owned object was made for.

    The annotation comes first: once the workload is deleted, the garbage collector strips
    its (dangling) owner reference from objects that still have another owner, a policy.
    """
    metadata = body.get("metadata") or {}
    named = str((metadata.get("annotations") or {}).get(ownership.WORKLOAD_ANNOTATION, ""))
    kind, _, rest = named.partition("/")
    namespace, _, name = rest.partition("/")
    if kind in WORKLOAD_KINDS and namespace == metadata.get("namespace") and name:
        return (kind, namespace, name)
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in WORKLOAD_KINDS:
            return (
                str(ref["kind"]),
                str(metadata.get("namespace") or ""),
                str(ref.get("name", "")),
            )
    return None


@dataclasses.dataclass
class PolicyEntry:
    """A policy as last seen, validated, with its raw body (for status and Events)."""

    body: dict[str, Any]
    model: compiling.AnyPolicy | None
    error: str = ""


@dataclasses.dataclass
class World:
    """Everything the reconcilers read."""

    policies: dict[Key, PolicyEntry] = dataclasses.field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    #: Namespaces being deleted (a deletionTimestamp): still here, but no longer labelled.
    terminating: set[str] = dataclasses.field(default_factory=set)
    workloads: dict[Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    children: dict[Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    artifacts: dict[tuple[str, str], facts.ArtifactFacts] = dataclasses.field(default_factory=dict)
    #: Where governing is allowed at all (admission's scope); kept across resyncs.
    scope: scopes.Scope = dataclasses.field(default_factory=scopes.Scope)
    _children_by_owner: dict[Key, set[Key]] = dataclasses.field(default_factory=dict)
    _policy_set: compiling.PolicySet | None = None

    def replace_with(self, other: World) -> None:
        """Take everything from a fresh snapshot (a resync)."""
        self.policies = other.policies
        self.namespaces = other.namespaces
        self.terminating = other.terminating
        self.workloads = other.workloads
        self.children = other.children
        self.artifacts = other.artifacts
        self._children_by_owner = other._children_by_owner
        self._policy_set = None

    # --- policies -------------------------------------------------------------

    def put_policy(self, body: Mapping[str, Any]) -> bool:
        """Record a policy; True when what it demands changed (not only its status)."""
        key = key_of(body)
        entry = _policy_entry(body)
        previous = self.policies.get(key)
        self.policies[key] = entry
        changed = previous is None or _demands(previous.body) != _demands(entry.body)
        if changed:
            self._policy_set = None
        return changed

    def remove_policy(self, body: Mapping[str, Any]) -> None:
        """Forget a deleted policy."""
        if self.policies.pop(key_of(body), None) is not None:
            self._policy_set = None

    def policy_set(self) -> compiling.PolicySet:
        """Every valid policy, compiled once per change."""
        if self._policy_set is None:
            self._policy_set = compiling.compile_policies(
                entry.model for entry in self.policies.values() if entry.model is not None
            )
        return self._policy_set

    def policy_entry(self, ref: ownership.ObjectRef | Key) -> PolicyEntry | None:
        """A policy by reference or key."""
        if isinstance(ref, ownership.ObjectRef):
            return self.policies.get((ref.kind, ref.namespace, ref.name))
        return self.policies.get(ref)

    # --- namespaces -----------------------------------------------------------

    def put_namespace(self, body: Mapping[str, Any]) -> bool:
        """Record a namespace's labels; True when they changed."""
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        labels = dict(metadata.get("labels") or {})
        changed = self.namespaces.get(name) != labels
        self.namespaces[name] = labels
        if metadata.get("deletionTimestamp"):
            self.terminating.add(name)
        else:
            self.terminating.discard(name)
        return changed

    def remove_namespace(self, name: str) -> None:
        """Forget a deleted namespace."""
        self.namespaces.pop(name, None)
        self.terminating.discard(name)

    # --- workloads and owned objects ------------------------------------------

    def put_workload(self, body: Mapping[str, Any]) -> None:
        """Record a workload as last seen. The World keeps the dict: callers hand over a
        fresh one (a watch event's, a response's) and never change it afterwards."""
        self.workloads[key_of(body)] = dict(body)

    def remove_workload(self, key: Key) -> None:
        """Forget a deleted workload."""
        self.workloads.pop(key, None)

    def put_child(self, body: Mapping[str, Any]) -> None:
        """Record an owned object as last seen (or as just written)."""
        key = key_of(body)
        self.remove_child(key)
        self.children[key] = dict(body)  # handed over, as in put_workload
        owner = owner_workload(body)
        if owner is not None:
            self._children_by_owner.setdefault(owner, set()).add(key)

    def remove_child(self, key: Key) -> None:
        """Forget an owned object."""
        previous = self.children.pop(key, None)
        if previous is not None:
            owner = owner_workload(previous)
            if owner is not None:
                self._children_by_owner.get(owner, set()).discard(key)

    def children_of(self, workload: Key) -> dict[Key, dict[str, Any]]:
        """The owned objects made for a workload."""
        return {key: self.children[key] for key in self._children_by_owner.get(workload, ())}

    def put_artifact(self, body: Mapping[str, Any]) -> None:
        """Record a ModelArtifact's facts (an invalid one proves nothing and is dropped)."""
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name", "")))
        try:
            artifact = artifacts.ModelArtifact.model_validate(_without_server_fields(body))
        except pydantic.ValidationError:
            self.artifacts.pop(key, None)
            return
        self.artifacts[key] = facts.from_model_artifact(artifact)

    def remove_artifact(self, namespace: str, name: str) -> None:
        """Forget a deleted ModelArtifact."""
        self.artifacts.pop((namespace, name), None)

    # --- questions ------------------------------------------------------------

    def workloads_in(self, namespace: str | None) -> Iterator[Key]:
        """Workload keys in one namespace, or everywhere for None."""
        for key in list(self.workloads):
            if namespace is None or key[1] == namespace:
                yield key

    def in_scope(self, namespace: str) -> bool:
        """Whether workloads in the namespace may be governed at all (``scopes``)."""
        return self.scope.governs(namespace, self.namespaces.get(namespace, {}))

    def governing(self, key: Key) -> tuple[compiling.CompiledPolicy, ...]:
        """The policies that govern a workload now (none when it is gone, or out of scope:
        kube-system, modelshield's own namespace, ... whatever the selectors say)."""
        body = self.workloads.get(key)
        if body is None or not self.in_scope(key[1]):
            return ()
        parsed = workloads.parse(body)
        # The engine's own rule (an InferenceService's components carry their own labels).
        return evaluating.governing_policies(
            parsed, self.policy_set(), self.namespaces.get(parsed.namespace, {})
        )

    def model_requirements(self, namespace: str) -> list[ModelRequirements]:
        """The models blocks that govern a namespace's ModelArtifacts (and its model keys).

        Those of the namespace's policies and of the cluster policies whose namespace
        selector matches its labels, read from the bodies as stored, in key order: a
        policy unreadable for another reason still contributes a valid models block, and
        an invalid models block raises pydantic.ValidationError (the check fails closed).
        """
        namespaced: list[Mapping[str, Any]] = []
        cluster: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        for (kind, policy_namespace, _), entry in sorted(self.policies.items()):
            spec = entry.body.get("spec") or {}
            models = spec.get("models")
            if not models:
                continue  # no block, or an emptied one: the policy asks nothing of models
            if kind == "ClusterModelSecurityPolicy":
                cluster.append((spec.get("namespaceSelector") or {}, models))
            elif policy_namespace == namespace:
                namespaced.append(models)
        return governing_model_requirements(self.namespaces.get(namespace, {}), namespaced, cluster)

    def unreadable_network_policies(self, key: Key) -> list[PolicyEntry]:
        """Policies that cannot be read (stored before a rule of today's schema existed)
        but ask for network isolation and whose selectors pick this workload: their
        ``network`` block cannot be honoured, so the workload must fail closed."""
        body = self.workloads.get(key)
        if body is None or not self.in_scope(key[1]):
            return []
        parsed = workloads.parse(body)
        namespace_labels = self.namespaces.get(parsed.namespace, {})
        return [
            entry
            for (kind, namespace, _), entry in sorted(self.policies.items())
            if entry.model is None
            and (kind == "ClusterModelSecurityPolicy" or namespace == parsed.namespace)
            and _selects(entry.body, parsed.labels, namespace_labels)
        ]


def governing_model_requirements(
    namespace_labels: Mapping[str, str],
    namespaced: Iterable[Mapping[str, Any]],
    cluster: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> list[policies.ModelRequirements]:
    """The namespace's policies' models blocks, then those of the cluster policies (given
    as (namespace selector, models block)) whose selector matches the namespace's labels."""
    requirements = [policies.ModelRequirements.model_validate(models) for models in namespaced]
    for namespace_selector, models in cluster:
        selector = selectors.compile_selector(
            common.LabelSelector.model_validate(namespace_selector or {})
        )
        if selector.matches(namespace_labels):
            requirements.append(policies.ModelRequirements.model_validate(models))
    return requirements


def _without_server_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Only what the API models know: apiVersion, kind, our metadata fields, spec, status."""
    metadata = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            field: metadata[field]
            for field in ("name", "namespace", "generation", "labels", "annotations")
            if metadata.get(field) is not None
        },
        "spec": body.get("spec"),
        **({"status": body["status"]} if body.get("status") else {}),
    }


def _policy_entry(body: Mapping[str, Any]) -> PolicyEntry:
    model_type: type[compiling.AnyPolicy] = (
        policies.ClusterModelSecurityPolicy
        if body.get("kind") == "ClusterModelSecurityPolicy"
        else policies.ModelSecurityPolicy
    )
    document = _without_server_fields(body)
    # Status is ours and may lag the schema; the spec is what is validated here.
    document.pop("status", None)
    try:
        model = model_type.model_validate(document)
    except pydantic.ValidationError as error:
        return PolicyEntry(body=copy.deepcopy(dict(body)), model=None, error=str(error))
    return PolicyEntry(body=copy.deepcopy(dict(body)), model=model)


def _selects(
    body: Mapping[str, Any], labels: Mapping[str, str], namespace_labels: Mapping[str, str]
) -> bool:
    """Whether an unreadable policy with a ``network`` block picks these labels (False when
    even its selectors cannot be read: then nothing says which workloads it meant)."""
    spec = body.get("spec")
    if not isinstance(spec, Mapping) or spec.get("network") is None:
        return False
    try:
        selector = common.LabelSelector.model_validate(spec.get("selector"))
        namespace_selector = common.LabelSelector.model_validate(
            spec.get("namespaceSelector") or {}
        )
    except pydantic.ValidationError:
        return False
    namespaced = body.get("kind") != "ClusterModelSecurityPolicy"
    return selectors.compile_selector(selector).matches(labels) and (
        namespaced or selectors.compile_selector(namespace_selector).matches(namespace_labels)
    )


def _demands(body: Mapping[str, Any]) -> Any:
    metadata = body.get("metadata") or {}
    return (body.get("spec"), metadata.get("uid"))


ImageLookup = Callable[[str, str], "facts.ImageFacts | None"]


@dataclasses.dataclass(frozen=True)
class WorldFacts(facts.FactSource):
    """A FactSource over what the operator has seen: ModelArtifact status and the image
    verifier's cache (``image_lookup``; without one no image counts as verified)."""

    world: World
    image_lookup: ImageLookup | None = None

    def image(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """The verifier's cached verdict, if any."""
        if self.image_lookup is None:
            return None
        return self.image_lookup(reference, requirement_key)

    def artifact(self, namespace: str, name: str) -> facts.ArtifactFacts | None:
        """A ModelArtifact's facts by name."""
        return self.world.artifacts.get((namespace, name))

    def artifact_by_uri(self, namespace: str, uri: str) -> facts.ArtifactFacts | None:
        """The first ModelArtifact in the namespace with that URI."""
        for (artifact_namespace, _), found in sorted(self.world.artifacts.items()):
            if artifact_namespace == namespace and found.uri == uri:
                return found
        return None
