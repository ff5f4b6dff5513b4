"""Fuzz: generated AdmissionReviews straight into the handlers (no HTTP), ≥ 100,000 by default.

Properties: the handler never raises and always answers a well-formed AdmissionReview
that carries the request's uid; and it never admits a workload that the Enforce policy
governs while a fact that policy requires is missing (an image without a verified
signature, a model without a verified ModelArtifact, a container that cannot be read).
The one deliberate exception is an UPDATE that leaves everything policies look at
unchanged (see ``validating.unchanged``).

The bulk (MODELSHIELD_FUZZ_EXAMPLES, default 100,000) is generated from a seed that
Hypothesis draws, one draw per review, which keeps it to about a minute; a twentieth of
that is generated with every choice drawn by Hypothesis, so that a failure shrinks.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from modelshield.engine import startup, workloads
from modelshield_webhooks import contexts, mutating, resources, responses, validating
from tests.support import admissionscenarios as scenarios
from tests.support import imageverdicts as verdicts
from tests.webhooks import reviewgenerators


def _loop_and_context() -> tuple[asyncio.AbstractEventLoop, contexts.AdmissionContext]:
    context = contexts.AdmissionContext(
        state=scenarios.standard_state(verify_at_startup=True, mutate_to_digest=True),
        verifier=verdicts.FixedVerdictVerifierForTests(),
        verify_deadline_seconds=1.0,
        namespace_wait_seconds=0.0,
        clock=lambda: scenarios.NOW,
    )
    return asyncio.new_event_loop(), context


def _request_uid(document: Mapping[str, Any]) -> str | None:
    request = document.get("request")
    if isinstance(request, Mapping) and isinstance(request.get("uid"), str):
        return str(request["uid"])
    return None


def _missing_required_fact(document: Mapping[str, Any]) -> bool:
    """Whether the Enforce policy governs the review's workload and a fact it needs is absent."""
    request = document.get("request")
    if document.get("apiVersion") != "admission.k8s.io/v1" or not isinstance(request, Mapping):
        return False
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return False
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        return False
    kind = obj.get("kind") if obj.get("kind") in workloads.SUPPORTED_KINDS else None
    requested = request.get("kind")
    if kind is None and isinstance(requested, Mapping):
        kind = requested.get("kind")
    if kind not in workloads.SUPPORTED_KINDS:
        return False
    workload = workloads.parse({**obj, "kind": kind})
    namespace = request.get("namespace") or workload.namespace
    if namespace != scenarios.ENFORCED or workload.labels.get("app") != "fraud-detector":
        return False
    if request.get("operation") == "UPDATE" and isinstance(request.get("oldObject"), Mapping):
        old = workloads.parse({**request["oldObject"], "kind": kind})
        if (old.labels, old.containers, old.models, old.problems) == (
            workload.labels,
            workload.containers,
            workload.models,
            workload.problems,
        ):
            return False  # the deliberate exception: nothing policies look at changed
    startup_missing = workload.kind == "Pod" and not _carries_startup_container(workload)
    # The exact injected container runs the administrator's image: not a missing fact.
    unverified = any(
        c.image not in reviewgenerators.VERIFIED
        and c.spec != reviewgenerators.startup_container_of(c.pod.spec)
        for c in workload.containers
    )
    no_model = [m.artifact_name for m in workload.models] != [scenarios.ARTIFACT]
    return unverified or no_model or startup_missing or bool(workload.problems)


def _carries_startup_container(workload: workloads.Workload) -> bool:
    """Whether the Pod has the exact container the policy's verifyAtStartup asks for."""
    return any(
        c.field == "initContainers"
        and c.spec == reviewgenerators.startup_container_of(c.pod.spec)
        and startup.keys_volume() in (c.pod.spec.get("volumes") or [])
        for c in workload.containers
    )


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sent(body: bytes) -> tuple[Any, bool]:
    """The document as the server reads the body, and whether all of it is UTF-8 text.

    json reads the body as the handlers' fallback does: a surrogate pair escaped in JSON is
    one valid character, a lone one (escaped, or raw bytes ED A0-BF) is not.
    """
    document = json.loads(body)
    return document, _utf8(json.dumps(document, ensure_ascii=False))


def _check_answer(answer: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """``document`` as the server read it (see ``_sent``)."""
    # What the server writes (responses.encode), read back as the API server would: UTF-8.
    written = json.loads(responses.encode(answer).decode("utf-8"))
    assert written == answer, "the answer does not survive encoding"
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert isinstance(response["allowed"], bool)
    uid = _request_uid(document)
    if uid and _utf8(uid):
        assert response["uid"] == uid
    elif uid:
        assert response["uid"] == ""  # a uid no answer can carry is not echoed
        assert not response["allowed"]
    if not response["allowed"]:
        assert response["status"]["message"]
    return bool(response["allowed"])


def _body(document: Any, seed: int) -> bytes:
    """As json would send it: surrogates escaped, or (one time in four) as raw bytes."""
    if seed % 4:
        return json.dumps(document).encode()
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # Every malformed review is logged; at this volume the log is the cost.
    logger = logging.getLogger("modelshield_webhooks")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def _property(
    strategy: st.SearchStrategy[dict[str, Any]], examples: int, *, governed_share: int
) -> None:
    loop, context = _loop_and_context()
    seen: collections.Counter[str] = collections.Counter()

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(strategy)
    def check(document: dict[str, Any]) -> None:
        body = _body(document, len(seen))
        answer = loop.run_until_complete(validating.review(body, context))
        document, utf8 = _sent(body)
        allowed = _check_answer(answer, document)
        if _missing_required_fact(document):
            assert not allowed, f"admitted without a required fact: {body[:2000]!r}"
            seen["denied for a missing fact"] += 1
        else:
            seen["allowed" if allowed else "denied"] += 1
        if not utf8:
            assert not allowed, f"admitted a review that is not UTF-8: {body[:2000]!r}"
            seen["not UTF-8"] += 1

    try:
        check()
    finally:
        loop.close()
    # The generator must reach every branch, or the property says little.
    assert seen["denied for a missing fact"] >= max(1, examples // governed_share), seen
    assert seen["allowed"] > examples // 20, seen
    assert seen["denied"] > 0, seen
    assert seen["not UTF-8"] > 0, seen


def test_seeded_reviews_never_crash_nor_admit_without_the_facts() -> None:
    # The bulk: one Hypothesis draw (a seed) per review keeps 100,000 within a minute or so.
    _property(reviewgenerators.seeded_reviews, reviewgenerators.EXAMPLES, governed_share=20)


def test_drawn_reviews_never_crash_nor_admit_without_the_facts() -> None:
    # Fewer, but every choice drawn by Hypothesis, so a failure shrinks to a minimal review.
    # Hypothesis favours small and boundary choices: fewer governed reviews come out.
    _property(reviewgenerators.drawn_reviews(), reviewgenerators.SMALL, governed_share=100)


@pytest.mark.parametrize("endpoint", ["mutate", "validate-resources"])
def test_other_endpoints_never_crash(endpoint: str) -> None:
    loop, context = _loop_and_context()
    reviewer = mutating.review if endpoint == "mutate" else resources.review

    @hypothesis.settings(
        max_examples=reviewgenerators.SMALL,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        reviewgenerators.seeded_reviews | st.binary(max_size=64).map(lambda b: {"raw": b.hex()})
    )
    def check(document: dict[str, Any]) -> None:
        body = _body(document, len(repr(document)))
        answer = loop.run_until_complete(reviewer(body, context))
        document, utf8 = _sent(body)
        allowed = _check_answer(answer, document)
        assert utf8 or not allowed, f"admitted a review that is not UTF-8: {body[:2000]!r}"

    try:
        check()
    finally:
        loop.close()


def test_raw_bytes_never_crash() -> None:
    loop, context = _loop_and_context()

    @hypothesis.settings(max_examples=reviewgenerators.SMALL, deadline=None, database=None)
    @hypothesis.given(st.binary(max_size=256))
    def check(body: bytes) -> None:
        answer = loop.run_until_complete(validating.review(body, context))
        assert answer["response"]["allowed"] is False
        json.loads(responses.encode(answer).decode("utf-8"))

    try:
        check()
    finally:
        loop.close()
