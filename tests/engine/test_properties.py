"""Property-based: the engine never raises, and never allows when a required fact is missing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelshield.engine import compiling, evaluating, facts, workloads
from tests.support import workloadbuilders as b

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

KEYS = st.sampled_from(
    ["kind", "metadata", "spec", "template", "containers", "initContainers", "image", "name",
     "labels", "annotations", "securityContext", "predictor", "jobTemplate", "namespace"]
)  # fmt: skip

STRICT = compiling.compile_policies(
    [
        b.policy(
            selector={},
            images={"signers": b.SIGNERS},
            models={"signers": b.SIGNERS},
            runtime={},
        )
    ]
)
EMPTY_FACTS = facts.StaticFacts()


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(obj: Any) -> None:
    decision = evaluating.evaluate(obj, STRICT, {}, EMPTY_FACTS, b.NOW)
    assert isinstance(decision.allowed, bool)


def _mutated(kind: str, path: list[str], value: Any) -> dict[str, Any]:
    body = b.workload(kind)
    node: Any = body
    for key in path[:-1]:
        if not isinstance(node, dict):
            return body
        node = node.setdefault(key, {})
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    return body


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(b.KINDS), st.lists(KEYS, min_size=1, max_size=5), json_values)
def test_damaged_workloads_never_raise_and_fail_closed(
    kind: str, path: list[str], value: Any
) -> None:
    body = _mutated(kind, path, value)
    decision = evaluating.evaluate(body, STRICT, {}, EMPTY_FACTS, b.NOW, namespace=b.NAMESPACE)
    parsed = workloads.parse(body)
    if decision.governed_by and (parsed.containers or parsed.problems or parsed.models):
        assert not decision.allowed, "a required fact is missing, yet the workload was allowed"


images = st.lists(
    st.sampled_from(
        [
            b.SIGNED_IMAGE,
            "registry.example.com/ml/other:1",
            "busybox",
            "ghcr.io/x/y@sha256:" + "e" * 64,
        ]
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(b.KINDS), images, st.sets(st.integers(0, 3)))
def test_any_image_without_facts_denies(kind: str, refs: list[str], verified: set[int]) -> None:
    containers = [b.hardened_container(ref, f"c{i}") for i, ref in enumerate(refs)]
    body = b.workload(kind, b.pod_spec(*containers))
    known = {refs[i]: b.verified_image(refs[i]) for i in verified if i < len(refs)}
    source = facts.StaticFacts(images=known, artifacts={(b.NAMESPACE, b.MODEL): b.artifact()})
    decision = evaluating.evaluate(body, STRICT, {}, source, b.NOW)
    assert decision.allowed == all(ref in known for ref in refs)
