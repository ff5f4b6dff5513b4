"""The models blocks that govern a namespace, indexed once for every ModelArtifact controller.

The artifact reconciler (``artifacts``) and the model-keys publisher
(``modelkeypublishing``) both need the ``models`` blocks of the policies that govern a
namespace. kopf indexes them here, once per operator: the namespaced policies' blocks by
namespace, the cluster policies' (namespace selector, block) pairs, and the namespaces'
labels. kopf hands each index to every handler as a keyword named by its id.

``when=`` filters, not None results, drop a policy without a models block: kopf keeps the
previous value of an indexer that returns None, so a removed block would still count.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from modelshield.api.v1alpha1 import common, policies
from modelshield.engine import selectors

GROUP, VERSION = "modelshield.dev", "v1alpha1"
#: The index ids, which are also the keywords kopf passes them as.
NAMESPACED = "model_policies"
CLUSTER = "cluster_model_policies"
NAMESPACE_LABELS = "namespace_labels"

_registered: weakref.WeakSet[kopf.OperatorRegistry] = weakref.WeakSet()


def governing_requirements(
    namespace: str,
    namespace_labels: Mapping[str, str],
    namespaced: Iterable[Mapping[str, Any]],
    cluster: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> list[policies.ModelRequirements]:
    """The models blocks of the namespace's policies and of cluster policies selecting it."""
    requirements = [policies.ModelRequirements.model_validate(models) for models in namespaced]
    for namespace_selector, models in cluster:
        selector = selectors.compile_selector(
            common.LabelSelector.model_validate(namespace_selector or {})
        )
        if selector.matches(namespace_labels):
            requirements.append(policies.ModelRequirements.model_validate(models))
    return requirements


@dataclasses.dataclass(frozen=True)
class Indices:
    """kopf's live indices of the models blocks (kopf updates them as watch events arrive)."""

    namespaced: Mapping[str, Iterable[Mapping[str, Any]]]
    cluster: Mapping[None, Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]]
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Indices:
        """The indices kopf hands a handler, by their ids."""
        return cls(kwargs[NAMESPACED], kwargs[CLUSTER], kwargs[NAMESPACE_LABELS])

    def requirements(self, namespace: str) -> list[policies.ModelRequirements]:
        """The models blocks that govern the namespace."""
        labels: Mapping[str, str] = next(iter(self.namespace_labels.get(namespace, [])), {})
        return governing_requirements(
            namespace,
            labels,
            self.namespaced.get(namespace, []),
            self.cluster.get(None, []),
        )


def register(registry: kopf.OperatorRegistry) -> None:
    """Attach the three indices to a registry (once, however many controllers ask)."""
    if registry in _registered:
        return
    _registered.add(registry)

    @kopf.index(
        GROUP,
        VERSION,
        "modelsecuritypolicies",
        id=NAMESPACED,
        when=lambda spec, **_: bool(spec.get("models")),
        registry=registry,
    )
    def model_policies(**kwargs: Any) -> Any:
        return {kwargs["namespace"]: dict(kwargs["spec"]["models"])}

    @kopf.index(
        GROUP,
        VERSION,
        "clustermodelsecuritypolicies",
        id=CLUSTER,
        when=lambda spec, **_: bool(spec.get("models")),
        registry=registry,
    )
    def cluster_model_policies(**kwargs: Any) -> Any:
        spec = kwargs["spec"]
        return {None: (dict(spec.get("namespaceSelector") or {}), dict(spec["models"]))}

    @kopf.index("", "v1", "namespaces", id=NAMESPACE_LABELS, registry=registry)
    def namespace_labels(**kwargs: Any) -> Any:
        return {kwargs["name"]: dict(kwargs["labels"])}
