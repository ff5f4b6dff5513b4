"""The artifact reconciler's policy indices, fed through kopf's own indexing engine.

kopf keeps an object's previous index value when its index function returns None, so a
policy whose ``models`` block was removed kept counting as requiring its signers. A
``when=`` filter that stops matching makes kopf drop the object instead.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.configs import configuration
from kopf._cogs.structs import bodies, ephemera, references
from kopf._core.engines import indexing

from modelshield.controllers import artifactchecks, artifacts, modelkeypublishing, modelpolicies

GROUP, VERSION = "modelshield.dev", "v1alpha1"
POLICIES = references.Resource(
    GROUP, VERSION, "modelsecuritypolicies", kind="ModelSecurityPolicy", namespaced=True
)
CLUSTER_POLICIES = references.Resource(
    GROUP,
    VERSION,
    "clustermodelsecuritypolicies",
    kind="ClusterModelSecurityPolicy",
    namespaced=False,
)
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
MODELS = {"signers": [{"name": "release", "publicKey": PEM}]}


class Indices:
    """The operator's registry and indexers, and a way to send watch events through them."""

    def __init__(self) -> None:
        self.registry = kopf.OperatorRegistry()
        artifacts.register(self.registry, settings=artifactchecks.Settings())
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(self.registry._indexing.get_all_handlers())
        self.memories: dict[str, indexing.IndexingMemory] = {}

    async def event(
        self, resource: references.Resource, event_type: str, obj: dict[str, Any]
    ) -> None:
        """One watch event, as kopf's processing hands it to the indexers."""
        raw: bodies.RawBody = obj  # type: ignore[assignment]
        await indexing.index_resource(
            indexers=self.indexers,
            registry=self.registry,
            settings=configuration.OperatorSettings(),
            resource=resource,
            raw_event={"type": event_type, "object": raw},  # type: ignore[typeddict-item]
            memory=self.memories.setdefault(obj["metadata"]["uid"], indexing.IndexingMemory()),
            logger=logging.getLogger("test"),
            memo=ephemera.AnyMemo(ephemera.Memo()),
            body=bodies.Body(raw),
        )

    def __getitem__(self, index: str) -> dict[Any, list[Any]]:
        return {key: list(store) for key, store in self.indexers.indices[index].items()}


def _policy(kind: str, models: dict[str, Any] | None) -> dict[str, Any]:
    cluster = kind == "ClusterModelSecurityPolicy"
    spec: dict[str, Any] = {"enforcement": "Enforce", "selector": {}}
    if cluster:
        spec["namespaceSelector"] = {"matchLabels": {"team": "ml"}}
    if models is not None:
        spec["models"] = models
    metadata = {"name": "p", "uid": f"uid-{kind}"}
    if not cluster:
        metadata["namespace"] = "ml"
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": metadata, "spec": spec}


@pytest.mark.parametrize(
    ("resource", "index", "key", "value"),
    [
        (POLICIES, "model_policies", "ml", MODELS),
        (
            CLUSTER_POLICIES,
            "cluster_model_policies",
            None,
            ({"matchLabels": {"team": "ml"}}, MODELS),
        ),
    ],
    ids=["namespaced", "cluster"],
)
async def test_a_policy_losing_its_models_block_leaves_the_index(
    resource: references.Resource, index: str, key: str | None, value: Any
) -> None:
    indices = Indices()
    await indices.event(resource, "ADDED", _policy(str(resource.kind), MODELS))
    assert indices[index] == {key: [value]}

    await indices.event(resource, "MODIFIED", _policy(str(resource.kind), None))
    assert indices[index] == {}

    await indices.event(resource, "MODIFIED", _policy(str(resource.kind), MODELS))
    assert indices[index] == {key: [value]}
    await indices.event(resource, "MODIFIED", _policy(str(resource.kind), {}))
    assert indices[index] == {}


async def test_the_reconciler_stops_trusting_the_removed_signers() -> None:
    indices = Indices()
    await indices.event(POLICIES, "ADDED", _policy("ModelSecurityPolicy", MODELS))
    await indices.event(POLICIES, "MODIFIED", _policy("ModelSecurityPolicy", None))
    requirements = modelpolicies.governing_requirements(
        "ml", {}, indices["model_policies"].get("ml", []), []
    )
    assert requirements == []


def test_policies_and_namespace_labels_are_indexed_once_for_both_artifact_controllers() -> None:
    # Issue 17: the reconciler and the model-keys publisher each kept their own copy.
    registry = kopf.OperatorRegistry()
    artifacts.register(registry, settings=artifactchecks.Settings())
    modelkeypublishing.register(registry, kube_source=lambda: None, resync_seconds=60)
    ids = sorted(str(handler.id) for handler in registry._indexing.get_all_handlers())
    assert ids == sorted(
        [
            modelpolicies.NAMESPACED,
            modelpolicies.CLUSTER,
            modelpolicies.NAMESPACE_LABELS,
            "modelkeys_artifacts",
        ]
    )
