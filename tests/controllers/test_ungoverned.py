"""Which namespaces carry modelshield.dev/ungoverned, and the order the labeller writes in."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from modelshield.controllers import caches, writing
from modelshield.controllers import namespacelabelling as labelling
from modelshield.controllers.builders import ungoverned

LABEL = ungoverned.LABEL
NOTHING = ungoverned.policies_of([], [])


def test_a_namespace_without_any_policy_is_labelled() -> None:
    assert ungoverned.change("team-a", {}, NOTHING) == ungoverned.Change("team-a", add=True)
    assert ungoverned.Change("team-a", add=True).patch == {"metadata": {"labels": {LABEL: "true"}}}


def test_a_namespaced_policy_governs_its_namespace_whatever_its_workload_selector() -> None:
    policies = ungoverned.policies_of(["team-a"], [])
    assert ungoverned.governed("team-a", {}, policies)
    assert not ungoverned.governed("team-b", {}, policies)
    removal = ungoverned.change("team-a", {LABEL: "true"}, policies)
    assert removal == ungoverned.Change("team-a", add=False)
    assert removal.patch == {"metadata": {"labels": {LABEL: None}}}


def test_a_cluster_policy_governs_the_namespaces_its_selector_picks() -> None:
    policies = ungoverned.policies_of([], [{"matchLabels": {"tier": "prod"}}])
    assert ungoverned.governed("a", {"tier": "prod"}, policies)
    assert not ungoverned.governed("b", {"tier": "dev"}, policies)
    expressions = ungoverned.policies_of(
        [], [{"matchExpressions": [{"key": "team", "operator": "Exists"}]}]
    )
    assert ungoverned.governed("c", {"team": "x"}, expressions)
    assert not ungoverned.governed("d", {}, expressions)


@pytest.mark.parametrize("selector", [None, {}])
def test_an_empty_or_missing_cluster_selector_governs_every_namespace(
    selector: Mapping[str, Any] | None,
) -> None:
    policies = ungoverned.policies_of([], [selector])
    assert ungoverned.governed("anything", {}, policies)


@pytest.mark.parametrize(
    "selector",
    [
        {"matchExpressions": [{"key": "a", "operator": "In"}]},  # In without values
        {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]},
        {"matchLabels": "not a map"},
    ],
)
def test_an_unreadable_cluster_selector_governs_every_namespace(selector: Any) -> None:
    # Fail closed: a selector the operator cannot read must not take namespaces out.
    policies = ungoverned.policies_of([], [selector])
    assert policies.cluster == (None,)
    assert ungoverned.governed("anything", {"tier": "dev"}, policies)


def test_the_label_itself_is_not_seen_by_selectors_so_the_judgement_cannot_flip() -> None:
    # A cluster policy that selects on the operator's own label: were it seen, adding the
    # label would govern the namespace, which would remove it, and so on forever.
    selects_labelled = ungoverned.policies_of([], [{"matchLabels": {LABEL: "true"}}])
    assert ungoverned.change("x", {}, selects_labelled) == ungoverned.Change("x", add=True)
    assert ungoverned.change("x", {LABEL: "true"}, selects_labelled) is None
    selects_unlabelled = ungoverned.policies_of(
        [], [{"matchExpressions": [{"key": LABEL, "operator": "DoesNotExist"}]}]
    )
    assert ungoverned.change("x", {LABEL: "true"}, selects_unlabelled) == ungoverned.Change(
        "x", add=False
    )
    assert ungoverned.change("x", {}, selects_unlabelled) is None


def test_excluded_namespaces_are_left_alone() -> None:
    governed_everywhere = ungoverned.policies_of([], [{}])
    for labels in ({}, {LABEL: "true"}):
        assert ungoverned.change("kube-system", labels, NOTHING) is None
        assert ungoverned.change("kube-system", labels, governed_everywhere) is None
        assert (
            ungoverned.change("modelshield-system", labels, NOTHING, ["modelshield-system"]) is None
        )


def test_a_value_other_than_true_is_corrected_either_way() -> None:
    assert ungoverned.change("x", {LABEL: "yes"}, NOTHING) == ungoverned.Change("x", add=True)
    governed = ungoverned.policies_of(["x"], [])
    assert ungoverned.change("x", {LABEL: "yes"}, governed) == ungoverned.Change("x", add=False)


def test_plan_puts_removals_first_and_touches_only_what_differs() -> None:
    namespaces = {
        "a-new": {},
        "b-governed-labelled": {LABEL: "true", "tier": "prod"},
        "c-right": {LABEL: "true"},
        "d-governed": {"tier": "prod"},
        "kube-system": {},
    }
    policies = ungoverned.policies_of([], [{"matchLabels": {"tier": "prod"}}])
    assert ungoverned.plan(namespaces, policies) == [
        ungoverned.Change("b-governed-labelled", add=False),
        ungoverned.Change("a-new", add=True),
    ]
    assert ungoverned.plan(namespaces, policies, only=["a-new", "gone"]) == [
        ungoverned.Change("a-new", add=True)
    ]


def test_a_namespace_never_seen_gets_nothing() -> None:
    # Not in the view (not judged yet): no label, so the webhooks still select it.
    assert ungoverned.plan({}, NOTHING, only=["brand-new"]) == []


class RecordingKubeForTests:
    """Records the label patches the labeller sends (the API server's side is e2e's).

    ``on_patch`` runs at the moment of each write, so a test can change the World the way
    a watch event would while a write is in flight.
    """

    def __init__(self) -> None:
        self.patches: list[tuple[str, Any]] = []
        self.on_patch: Any = None

    async def request(
        self, method: str, path: str, body: Any, query: Any, content_type: str
    ) -> dict[str, Any]:
        assert method == "PATCH"
        assert content_type == writing.MERGE_PATCH
        self.patches.append((path.rsplit("/", 1)[1], body["metadata"]["labels"][LABEL]))
        if self.on_patch is not None:
            self.on_patch()
        await asyncio.sleep(0)
        return {}


def _namespace(name: str, labels: Mapping[str, str], **metadata: Any) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": dict(labels), **metadata}}


def _policy(namespace: str | None, name: str = "p", **spec: Any) -> dict[str, Any]:
    kind = "ModelSecurityPolicy" if namespace else "ClusterModelSecurityPolicy"
    metadata = {"name": name, "uid": f"uid-{namespace}-{name}"}
    if namespace:
        metadata["namespace"] = namespace
    body = {"apiVersion": "modelshield.dev/v1alpha1", "kind": kind, "metadata": metadata}
    return {**body, "spec": {"enforcement": "Enforce", "selector": {}, **spec}}


def _view(
    namespaces: dict[str, dict[str, str]],
    namespaced: dict[str, list[str]],
    cluster: list[Any],
) -> labelling.View:
    """A View over a World fed as the policy reconciler's handlers feed it."""
    world = caches.World()
    for name, labels in namespaces.items():
        world.put_namespace(_namespace(name, labels))
    for namespace, names in namespaced.items():
        for name in names:
            world.put_policy(_policy(namespace, name))
    for index, selector in enumerate(cluster):
        world.put_policy(_policy(None, f"c{index}", namespaceSelector=selector))
    return labelling.View(world)


def test_the_view_reads_the_world_as_the_builder_expects() -> None:
    view = _view(
        {"a": {"tier": "prod"}, "b": {}},
        {"a": ["p", "q"]},
        [{"matchLabels": {"tier": "prod"}}, None, {"matchLabels": "not a map"}],
    )
    assert view.labels() == {"a": {"tier": "prod"}, "b": {}}
    assert view.labels(["b", "never-seen"]) == {"b": {}}
    policies = view.policies()
    assert policies.namespaced == frozenset({"a"})
    # A missing selector selects all; an unreadable one is kept as None (fails closed).
    assert len(policies.cluster) == 3
    assert policies.cluster.count(None) == 1


def test_a_namespace_being_deleted_is_not_labelled() -> None:
    # Was a filter on the labeller's own kopf index; now the World tracks it.
    view = _view({"going": {}}, {}, [])
    view.world.put_namespace(_namespace("going", {}, deletionTimestamp="2026-12-03T00:00:00Z"))
    assert view.labels() == {}
    kube = RecordingKubeForTests()
    asyncio.run(labelling.Labeller(kube).judge(view))  # type: ignore[arg-type]
    assert kube.patches == []
    view.world.remove_namespace("going")
    assert view.world.terminating == set()


def test_the_labeller_removes_first_and_judges_additions_again_on_the_live_world() -> None:
    namespaces = {"governed": {LABEL: "true"}, "free": {}, "also-free": {}}
    view = _view(namespaces, {"governed": ["p"]}, [])
    kube = RecordingKubeForTests()

    def a_policy_arrives_in_also_free() -> None:
        view.world.put_policy(_policy("also-free", "q"))

    kube.on_patch = a_policy_arrives_in_also_free
    labeller = labelling.Labeller(kube, excluded=["modelshield-system"])  # type: ignore[arg-type]
    asyncio.run(labeller.judge(view))
    # The removal went first; "also-free" became governed while it was written, so it is
    # not labelled although the plan made before the removal said so.
    assert kube.patches == [("governed", None), ("free", "true")]
    assert labeller.writes == 2


def test_the_labeller_swallows_a_namespace_that_is_gone() -> None:
    class GoneKubeForTests(RecordingKubeForTests):
        async def request(self, *args: Any) -> dict[str, Any]:
            raise writing.ApiException(status=404, reason="Not Found")

    labeller = labelling.Labeller(GoneKubeForTests())  # type: ignore[arg-type]
    asyncio.run(labeller.judge(_view({"x": {}}, {}, [])))
    assert labeller.writes == 0


def test_a_namespace_event_judges_that_namespace_only() -> None:
    kube = RecordingKubeForTests()
    labeller = labelling.Labeller(kube)  # type: ignore[arg-type]
    view = _view({"a": {}, "b": {}, "gone-soon": {}}, {}, [])
    asyncio.run(labeller.judge(view, ["b", "never-seen"]))
    assert kube.patches == [("b", "true")]
