"""The ModelArtifact controllers read policies and namespace labels from the one ``World``.

Issue 17: the artifact reconciler and the model-keys publisher kept kopf indices of both
policy kinds and of namespace labels beside the policy reconciler's ``World``. Now they
read ``World.model_requirements``; the policy reconciler's handlers keep it current and
run first (kopf runs a resource's event handlers in registration order).
"""

from __future__ import annotations

import argparse
from typing import Any

import kopf
import pydantic
import pytest
from kubernetes import client

from modelshield.api.v1alpha1.common import Severity
from modelshield.cli import main
from modelshield.cli import operator as operator_command
from modelshield.controllers import artifactchecks, artifacts, caches, modelkeypublishing

GROUP, VERSION = "modelshield.dev", "v1alpha1"
PEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
MODELS = {"signers": [{"name": "release", "publicKey": PEM}]}


def _policy(kind: str, models: dict[str, Any] | None, **spec_fields: Any) -> dict[str, Any]:
    cluster = kind == "ClusterModelSecurityPolicy"
    spec: dict[str, Any] = {"enforcement": "Enforce", "selector": {}, **spec_fields}
    if cluster:
        spec.setdefault("namespaceSelector", {"matchLabels": {"team": "ml"}})
    if models is not None:
        spec["models"] = models
    metadata = {"name": "p", "uid": f"uid-{kind}"}
    if not cluster:
        metadata["namespace"] = "ml"
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": metadata, "spec": spec}


def _namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _signer_names(world: caches.World, namespace: str = "ml") -> list[str]:
    return [s.name for r in world.model_requirements(namespace) for s in r.signers]


@pytest.mark.parametrize("kind", ["ModelSecurityPolicy", "ClusterModelSecurityPolicy"])
def test_a_policy_losing_its_models_block_stops_counting(kind: str) -> None:
    world = caches.World()
    world.put_namespace(_namespace("ml", team="ml"))
    world.put_policy(_policy(kind, MODELS))
    assert _signer_names(world) == ["release"]

    world.put_policy(_policy(kind, None))
    assert world.model_requirements("ml") == []
    world.put_policy(_policy(kind, MODELS))
    assert _signer_names(world) == ["release"]
    world.put_policy(_policy(kind, {}))
    assert world.model_requirements("ml") == []
    world.put_policy(_policy(kind, MODELS))
    world.remove_policy(_policy(kind, MODELS))
    assert world.model_requirements("ml") == []


def test_cluster_policies_follow_the_namespace_labels() -> None:
    world = caches.World()
    world.put_policy(_policy("ClusterModelSecurityPolicy", MODELS))
    world.put_policy(_policy("ModelSecurityPolicy", {"blockFindingsAtOrAbove": "Low"}))
    assert [r.block_findings_at_or_above for r in world.model_requirements("ml")] == [Severity.LOW]
    world.put_namespace(_namespace("ml", team="ml"))
    assert _signer_names(world) == ["release"]
    assert len(world.model_requirements("ml")) == 2
    # Another namespace sees neither the namespaced policy nor, without the label, the
    # cluster one.
    world.put_namespace(_namespace("web", team="web"))
    assert world.model_requirements("web") == []
    world.put_namespace(_namespace("ml", team="other"))
    assert _signer_names(world) == []


def test_a_policy_unreadable_elsewhere_still_gives_its_models_block() -> None:
    world = caches.World()
    # An unknown field outside models: the policy cannot be compiled, its models block
    # still names the signers the artifact is verified against (as the indices did).
    world.put_policy(_policy("ModelSecurityPolicy", MODELS, notAField=True))
    assert world.policies[("ModelSecurityPolicy", "ml", "p")].model is None
    assert _signer_names(world) == ["release"]


def test_an_invalid_models_block_fails_the_check_closed() -> None:
    world = caches.World()
    world.put_policy(_policy("ModelSecurityPolicy", {"signers": [{"name": "x", "bogus": 1}]}))
    with pytest.raises(pydantic.ValidationError):
        world.model_requirements("ml")


def test_the_artifact_controllers_keep_no_copy_of_policies_or_namespaces() -> None:
    registry = kopf.OperatorRegistry()
    world = caches.World()
    artifacts.register(registry, world=world, settings=artifactchecks.Settings())
    modelkeypublishing.register(registry, world=world, kube_source=lambda: None, resync_seconds=60)
    ids = [str(handler.id) for handler in registry._indexing.get_all_handlers()]
    assert ids == ["modelkeys_artifacts"]


def _operator_registry() -> kopf.OperatorRegistry:
    arguments = main.build_parser("operator").parse_args(["operator"])
    assert isinstance(arguments, argparse.Namespace)
    registry, _, kube = operator_command.build(arguments, client.ApiClient(client.Configuration()))
    kube.close()
    return registry


@pytest.mark.parametrize(
    ("plural", "feeder", "reader"),
    [
        ("modelsecuritypolicies", "modelsecuritypolicies-event", "modelkeys-policy"),
        ("clustermodelsecuritypolicies", "clustermodelsecuritypolicies-event", "modelkeys-cluster"),
        ("namespaces", "namespace_event", "modelkeys-namespace"),
    ],
)
def test_the_world_is_updated_before_the_model_keys_read_it(
    plural: str, feeder: str, reader: str
) -> None:
    # ``feeder``: the policy reconciler's handler of this kind (it records the object in
    # the World); kopf calls a resource's event handlers one after another, in this order.
    ids = [
        str(handler.id)
        for handler in _operator_registry()._watching.get_all_handlers()
        if handler.selector is not None and handler.selector.any_name == plural
    ]
    [feeding] = [position for position, id_ in enumerate(ids) if id_.endswith(feeder)]
    assert feeding < ids.index(reader)
