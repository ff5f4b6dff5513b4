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
import copy
import json
import logging
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import hypothesis
import pytest
from hypothesis import strategies as st

from modelshield.engine import workloads
from modelshield.modelartifacts import startup
from modelshield_webhooks import contexts, mutating, resources, responses, validating
from tests.webhooks import scenarios, verdicts

EXAMPLES = int(os.environ.get("MODELSHIELD_FUZZ_EXAMPLES", "100000"))
SMALL = max(1, EXAMPLES // 20)
VERIFIED = frozenset({scenarios.SIGNED, scenarios.SIGNED_BY_TAG})

JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    1.5,
    "",
    "x",
    "\u0000",
    "\ud800",
    "x\udfff",
    "\ud83d\ude00",
    "é" * 3,
    [],
    [None],
    [{}],
    {},
    {"": None},
    {"image": 7},
    {"containers": "no"},
    {"name": [], "image": {}},
]
IMAGES = [
    scenarios.SIGNED,
    scenarios.SIGNED,
    scenarios.SIGNED_BY_TAG,
    scenarios.UNSIGNED,
    "",
    "registry.example.com/ml/other:1",
    "docker.io/library/busybox",
]
# The startup container's name too: only the exact injected container may use it.
NAMES = ["server", "sidecar", "init", "", startup.CONTAINER_NAME]
NAMESPACES = [scenarios.ENFORCED, scenarios.ENFORCED, scenarios.AUDITED, scenarios.UNGOVERNED, ""]
LABEL_SETS: list[dict[str, str]] = [scenarios.LABELS, scenarios.LABELS, {"app": "web"}, {}]
MODELS = [scenarios.ARTIFACT, scenarios.ARTIFACT, None, "unknown-model", ""]
OPERATIONS = ["CREATE", "CREATE", "UPDATE", "UPDATE", "DELETE", "CONNECT"]
T = TypeVar("T")


class Chooser(Protocol):
    """Where the generator's choices come from: Hypothesis draws, or a seeded Random."""

    def pick(self, options: Sequence[T]) -> T:
        """One of the options."""
        ...

    def below(self, bound: int) -> int:
        """An integer in [0, bound)."""
        ...

    def text(self, max_size: int) -> str:
        """Arbitrary text."""
        ...


class DrawChooser:
    """Choices drawn by Hypothesis (shrinkable)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def pick(self, options: Sequence[T]) -> T:
        """Drawn."""
        return self.draw(st.sampled_from(options))

    def below(self, bound: int) -> int:
        """Drawn."""
        return self.draw(st.integers(0, bound - 1))

    def text(self, max_size: int) -> str:
        """Drawn, lone surrogates included (st.text() leaves them out)."""
        text = self.draw(st.text(st.characters(exclude_categories=()), max_size=max_size))
        if self.draw(st.integers(0, 7)) == 0:
            at = self.draw(st.integers(0, len(text)))
            text = text[:at] + self.draw(st.characters(categories=["Cs"])) + text[at:]
        return text


class RandomChooser:
    """Choices from a Random seeded by Hypothesis: one draw per review, so 100,000 are cheap."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)  # noqa: S311 - reproducible choices, not secrets

    def pick(self, options: Sequence[T]) -> T:
        """Chosen."""
        return options[self.random.randrange(len(options))]

    def below(self, bound: int) -> int:
        """Chosen."""
        return self.random.randrange(bound)

    def text(self, max_size: int) -> str:
        """Printable, control, non-BMP characters and lone surrogates alike."""
        length = self.random.randrange(max_size + 1)
        return "".join(
            chr(
                self.random.choice(
                    (
                        self.random.randrange(32, 127),
                        self.random.randrange(32, 127),
                        self.random.randrange(0x110000),
                        # What JSON can carry but UTF-8 cannot: json accepts it, orjson not.
                        self.random.randrange(0xD800, 0xE000),
                    )
                )
            )
            for _ in range(length)
        )


def _junk(choose: Chooser) -> Any:
    return choose.text(8) if choose.below(4) == 0 else copy.deepcopy(choose.pick(JUNK))


def _rarely(choose: Chooser, common: Callable[[], Any], rare: Callable[[], Any]) -> Any:
    """Mostly common, one time in eight rare: enough governed reviews to test the property."""
    return rare() if choose.below(8) == 7 else common()


def _image(choose: Chooser) -> Any:
    return _rarely(choose, lambda: choose.pick(IMAGES), lambda: _junk(choose))


def _name(choose: Chooser) -> Any:
    return _rarely(choose, lambda: choose.pick(NAMES), lambda: _junk(choose))


def _container(choose: Chooser) -> Any:
    return _rarely(
        choose,
        lambda: scenarios.container(_image(choose), _name(choose), realistic=False),
        lambda: (
            {"name": _name(choose), "image": _image(choose)} if choose.below(2) else _junk(choose)
        ),
    )


def _containers(choose: Chooser) -> list[Any]:
    return [_container(choose) for _ in range(choose.below(4))]


def _startup_container(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The init container the mutating webhook injects into this pod spec, if it can."""
    return startup.for_pod(
        pod_spec,
        image=contexts.AdmissionContext.startup_image,
        digest="sha256:" + "b" * 64,  # what scenarios.model_artifact verified
        artifact=scenarios.ARTIFACT,
        signer=scenarios.MODEL_SIGNER,
    )


def _with_startup_container(spec: dict[str, Any]) -> None:
    """The pod as the mutating webhook leaves it: model volume, keys volume, init container."""
    first = spec["containers"][0] if spec["containers"] else None
    if isinstance(first, dict):
        first["volumeMounts"] = [{"name": "model", "mountPath": "/models", "readOnly": True}]
        spec["volumes"] = [{"name": "model", "emptyDir": {}}, startup.keys_volume()]
        spec["initContainers"] = [_startup_container(spec), *spec.get("initContainers", [])]


def _namespace(choose: Chooser) -> str:
    return str(_rarely(choose, lambda: choose.pick(NAMESPACES), lambda: choose.text(8)))


def _pod_spec(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec the builder made inside obj."""
    spec: dict[str, Any] = obj["spec"]
    if kind == "Pod":
        return spec
    if kind == "InferenceService":
        return cast(dict[str, Any], spec["predictor"])
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return cast(dict[str, Any], spec["template"]["spec"])


def workload_object(choose: Chooser) -> tuple[scenarios.KindInfo, Any]:
    """An object of a supported kind, with chosen containers and a few corrupted fields."""
    info = choose.pick(scenarios.KINDS)
    labels = _rarely(
        choose, lambda: choose.pick(LABEL_SETS), lambda: {choose.text(6): choose.text(6)}
    )
    namespace = _namespace(choose)
    obj: Any = scenarios.workload(
        info,
        [scenarios.SIGNED],
        namespace="placeholder",  # the builder derives a uid from it, which needs UTF-8
        labels=labels,
        model=choose.pick(MODELS),
        realistic=False,
    )
    obj["metadata"]["namespace"] = namespace
    spec = _pod_spec(info.kind, obj)
    spec["containers"] = _containers(choose)
    if choose.below(4) == 0:
        field = choose.pick(["initContainers", "ephemeralContainers"])
        spec[field] = _containers(choose) if choose.below(2) else _junk(choose)
    if (
        info.kind == "Pod"
        and choose.below(4) == 0
        and isinstance(spec.get("initContainers", []), list)
    ):
        _with_startup_container(spec)
    if choose.below(10) == 0:
        spec["containers"] = _junk(choose)
    if choose.below(10) == 0:
        obj["spec"] = _junk(choose)
    if choose.below(20) == 0:
        obj["metadata"] = _junk(choose)
    if choose.below(30) == 0:
        obj = _junk(choose)
    return info, obj


def admission_review(choose: Chooser) -> dict[str, Any]:
    """A review as the API server would send it, then possibly broken at one place."""
    info, obj = workload_object(choose)
    old: Any = None
    which = choose.below(4)
    if which == 1:
        old = json.loads(json.dumps(obj))
    elif which == 2:
        old = workload_object(choose)[1]
    document = scenarios.review(
        info,
        "CREATE",
        obj if isinstance(obj, dict) else {},
        old if isinstance(old, dict) else None,
        namespace=_rarely(choose, lambda: None, lambda: _namespace(choose)),
        copy_objects=False,
    )
    request = document["request"]
    request["operation"] = _rarely(choose, lambda: choose.pick(OPERATIONS), lambda: choose.text(6))
    request["object"] = obj
    request["oldObject"] = old
    request["dryRun"] = bool(choose.below(2))
    breakage = choose.below(40)
    if breakage == 0:
        request[choose.pick(sorted(request))] = _junk(choose)
    elif breakage == 1:
        document[choose.pick(["apiVersion", "kind", "request"])] = _junk(choose)
    elif breakage == 2:
        return {"wrapped": document}
    return document


@st.composite
def drawn_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """Reviews whose every choice Hypothesis draws (and can shrink)."""
    return admission_review(DrawChooser(draw))


seeded_reviews = st.integers(0, 2**64 - 1).map(lambda seed: admission_review(RandomChooser(seed)))


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
        c.image not in VERIFIED and c.spec != _startup_container(c.pod.spec)
        for c in workload.containers
    )
    no_model = [m.artifact_name for m in workload.models] != [scenarios.ARTIFACT]
    return unverified or no_model or startup_missing or bool(workload.problems)


def _carries_startup_container(workload: workloads.Workload) -> bool:
    """Whether the Pod has the exact container the policy's verifyAtStartup asks for."""
    return any(
        c.field == "initContainers"
        and c.spec == _startup_container(c.pod.spec)
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
    _property(seeded_reviews, EXAMPLES, governed_share=20)


def test_drawn_reviews_never_crash_nor_admit_without_the_facts() -> None:
    # Fewer, but every choice drawn by Hypothesis, so a failure shrinks to a minimal review.
    # Hypothesis favours small and boundary choices: fewer governed reviews come out.
    _property(drawn_reviews(), SMALL, governed_share=100)


@pytest.mark.parametrize("endpoint", ["mutate", "validate-resources"])
def test_other_endpoints_never_crash(endpoint: str) -> None:
    loop, context = _loop_and_context()
    reviewer = mutating.review if endpoint == "mutate" else resources.review

    @hypothesis.settings(
        max_examples=SMALL,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(seeded_reviews | st.binary(max_size=64).map(lambda b: {"raw": b.hex()}))
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

    @hypothesis.settings(max_examples=SMALL, deadline=None, database=None)
    @hypothesis.given(st.binary(max_size=256))
    def check(body: bytes) -> None:
        answer = loop.run_until_complete(validating.review(body, context))
        assert answer["response"]["allowed"] is False
        json.loads(responses.encode(answer).decode("utf-8"))

    try:
        check()
    finally:
        loop.close()
