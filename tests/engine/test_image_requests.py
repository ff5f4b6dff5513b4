"""Which images the webhook verifies: never for a requirement whose registries refuse them."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelshield.api.v1alpha1 import policies
from modelshield.engine import compiling, evaluating, facts, workloads
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as b

ALLOWED = "registry.example.com/ml/server:1.0"
ELSEWHERE = "attacker.example.net:8443/x/server:1.0"
OTHER_SIGNERS = [{"name": "vendor", "publicKey": b.PUBLIC_KEY.replace("MFkw", "MFky")}]


@dataclasses.dataclass(frozen=True)
class KeyedFacts:
    """A FactSource keyed like the webhook's: (image, requirement key)."""

    images: dict[tuple[str, str], facts.ImageFacts]

    def image(self, reference: str, requirement_key: str) -> facts.ImageFacts | None:
        """The facts gathered for that pair, if any."""
        return self.images.get((reference, requirement_key))

    def artifact(self, namespace: str, name: str) -> facts.ArtifactFacts | None:
        """No artifacts: these tests only have image requirements."""
        return None

    def artifact_by_uri(self, namespace: str, uri: str) -> facts.ArtifactFacts | None:
        """No artifacts."""
        return None


def _policy(
    name: str, enforcement: str = "Enforce", signers: Any = b.SIGNERS, **images: Any
) -> policies.ModelSecurityPolicy:
    made = b.policy(enforcement, images={"signers": signers, **images})
    return made.model_copy(update={"metadata": made.metadata.model_copy(update={"name": name})})


def _governing(
    *policy_list: policies.ModelSecurityPolicy,
) -> tuple[compiling.CompiledPolicy, ...]:
    return compiling.compile_policies(policy_list).namespaced[b.NAMESPACE]


def _workload(*images: str) -> workloads.Workload:
    containers = [b.hardened_container(image, f"c{i}") for i, image in enumerate(images)]
    body = b.workload("Deployment", b.pod_spec(*containers))
    return workloads.complete(workloads.read_header(body), b.NAMESPACE)


def _requested(
    workload: workloads.Workload, governing: tuple[compiling.CompiledPolicy, ...]
) -> set[tuple[str, str]]:
    """(image, policy names sharing the requirement) for each request."""
    names: dict[str, set[str]] = {}
    for policy in governing:
        assert policy.images is not None
        names.setdefault(policy.images.key, set()).add(policy.ref.name)
    return {
        (image, ",".join(sorted(names[requirement.key])))
        for image, requirement in evaluating.image_requests(workload, governing)
    }


def test_an_image_from_a_refused_registry_is_not_verified() -> None:
    governing = _governing(_policy("p", allowedRegistries=["registry.example.com/"]))
    workload = _workload(ALLOWED, ELSEWHERE)
    assert _requested(workload, governing) == {(ALLOWED, "p")}


def test_an_audit_only_policy_does_not_fetch_a_refused_image_either() -> None:
    governing = _governing(_policy("p", "Audit", allowedRegistries=["registry.example.com/"]))
    assert _requested(_workload(ELSEWHERE), governing) == set()


def test_no_allowed_registries_means_every_registry() -> None:
    governing = _governing(_policy("p"))
    assert _requested(_workload(ELSEWHERE), governing) == {(ELSEWHERE, "p")}


def test_bare_names_are_matched_in_their_normalized_form() -> None:
    governing = _governing(_policy("p", allowedRegistries=["docker.io/library/"]))
    assert _requested(_workload("busybox:1.36"), governing) == {("busybox:1.36", "p")}


def test_an_image_another_policy_allows_is_verified_for_that_policy() -> None:
    # strict refuses the registry; lenient (other signers, so another requirement key)
    # allows it and needs its verification: only lenient's is asked for.
    strict = _policy("strict", allowedRegistries=["registry.example.com/"])
    lenient = _policy("lenient", "Audit", signers=OTHER_SIGNERS)
    governing = _governing(strict, lenient)
    assert _requested(_workload(ELSEWHERE), governing) == {(ELSEWHERE, "lenient")}


def test_a_shared_requirement_key_is_verified_when_any_policy_allows_the_image() -> None:
    # Same signers: one requirement key, asked for once, whichever policy comes first.
    strict = _policy("strict", allowedRegistries=["registry.example.com/"])
    lenient = _policy("lenient", allowedRegistries=["attacker.example.net:8443/"])
    for order in ((strict, lenient), (lenient, strict)):
        governing = _governing(*order)
        assert _requested(_workload(ELSEWHERE), governing) == {(ELSEWHERE, "lenient,strict")}


def test_a_refused_image_without_facts_is_denied_for_its_registry_only() -> None:
    governing = _governing(_policy("p", allowedRegistries=["registry.example.com/"]))
    decision = evaluating.decide(_workload(ELSEWHERE), governing, KeyedFacts({}), b.NOW)
    assert not decision.allowed
    assert [v.code for v in decision.violations] == [Code.IMAGE_REGISTRY_NOT_ALLOWED]


def test_an_allowed_image_without_facts_is_still_not_verified() -> None:
    # The registry exemption must not turn into "a missing fact passes".
    governing = _governing(_policy("p", allowedRegistries=["registry.example.com/"]))
    decision = evaluating.decide(_workload(ALLOWED), governing, KeyedFacts({}), b.NOW)
    assert [v.code for v in decision.violations] == [Code.IMAGE_NOT_VERIFIED]


# Property: gathering facts only for the requests changes no verdict, for any mix of
# Enforce/Audit policies, registries, signers and images.
REGISTRY_CHOICES = [[], ["registry.example.com/"], ["attacker.example.net:8443/"]]
IMAGE_CHOICES = [ALLOWED, ELSEWHERE, "busybox", "registry.example.com/ml/other@sha256:" + "e" * 64]
OUTCOMES = [facts.Outcome.VERIFIED, facts.Outcome.NO_SIGNATURE, facts.Outcome.TIMED_OUT]

policy_specs = st.lists(
    st.tuples(
        st.sampled_from(["Enforce", "Audit"]),
        st.sampled_from(range(len(REGISTRY_CHOICES))),
        st.booleans(),  # other signers
    ),
    min_size=1,
    max_size=4,
)


def _allows(prefixes: tuple[str, ...], image: str) -> bool:
    """allowedRegistries as the policy reference states it, independently of the engine."""
    qualified = "docker.io/library/busybox" if image == "busybox" else image
    return not prefixes or any(qualified.startswith(prefix) for prefix in prefixes)


def _fact(image: str, outcome: facts.Outcome) -> facts.ImageFacts:
    signer = "release" if outcome is facts.Outcome.VERIFIED else None
    return facts.ImageFacts(image, None, facts.SignatureFact(outcome, signer))


@settings(max_examples=300, deadline=None)
@given(
    policy_specs,
    st.lists(st.sampled_from(IMAGE_CHOICES), min_size=1, max_size=3),
    st.sampled_from(OUTCOMES),
)
def test_skipping_refused_images_never_changes_a_verdict(
    specs: list[tuple[str, int, bool]], images: list[str], outcome: facts.Outcome
) -> None:
    governing = _governing(
        *(
            _policy(
                f"p{i}",
                enforcement,
                signers=OTHER_SIGNERS if other else b.SIGNERS,
                allowedRegistries=REGISTRY_CHOICES[registries],
            )
            for i, (enforcement, registries, other) in enumerate(specs)
        )
    )
    workload = _workload(*images)
    every = {
        (image, policy.images.key): _fact(image, outcome)
        for image in images
        for policy in governing
        if policy.images is not None
    }
    requests = evaluating.image_requests(workload, governing)
    asked = {(image, requirement.key) for image, requirement in requests}
    assert len(asked) == len(requests)  # deduplicated
    # Asked for exactly the pairs whose requirement allows the image.
    expected = {
        (image, policy.images.key)
        for policy in governing
        if policy.images is not None
        for image in images
        if _allows(policy.images.allowed_registries, image)
    }
    assert asked == expected

    full = evaluating.decide(workload, governing, KeyedFacts(every), b.NOW)
    gathered = {pair: fact for pair, fact in every.items() if pair in asked}
    partial = evaluating.decide(workload, governing, KeyedFacts(gathered), b.NOW)
    assert partial.allowed == full.allowed

    def failing(found: tuple[Any, ...]) -> set[tuple[str, str]]:
        return {(str(v.policy), v.path) for v in found}

    # The same policies fail on the same containers, Enforce and Audit alike.
    assert failing(partial.violations) == failing(full.violations)
    assert failing(partial.warnings) == failing(full.warnings)
    # And no "not verified" appears for a pair that was left out on purpose.
    assert Code.IMAGE_NOT_VERIFIED not in {v.code for v in partial.violations + partial.warnings}
