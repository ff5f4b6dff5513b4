"""Generated AdmissionReviews for the fuzz: every kind, broken shapes, junk values, lone
surrogates, the startup container; from a seed (fast) or drawn by Hypothesis (shrinkable)."""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from hypothesis import strategies as st

from modelshield.engine import startup
from modelshield_webhooks import contexts
from tests.support import admissionscenarios as scenarios

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


def startup_container_of(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
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
        spec["initContainers"] = [startup_container_of(spec), *spec.get("initContainers", [])]


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
