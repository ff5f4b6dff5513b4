"""PRADA's growing sets per predicted class: the class read from the model's answer
(``answers``), the per-class sets (``probing``) and the distance step after the answer
(``defending.Defences.answered``)."""

from __future__ import annotations

import json

import numpy as np
import prometheus_client
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from modelshield.api.v1alpha1 import apiprotection, policies
from modelshield.api.v1alpha1.apiprotection import Protocol
from modelshield.engine.decisions import PolicyRef
from modelshield.guard import answers, defending, outliermodel, probing, routes

DATA = load_breast_cancer()
TRAIN, HELD = DATA.data[:400], DATA.data[400:]
MEAN, STD = TRAIN.mean(0), TRAIN.std(0)
SERVED = LogisticRegression(max_iter=5000).fit((TRAIN - MEAN) / STD, DATA.target[:400])
DISTANCE = frozenset({probing.Detector.DISTANCE_DISTRIBUTION})


def seed_steps(rng: np.random.Generator) -> np.ndarray:
    """Jacobian-style augmentation: steps of 0.1 std per feature in the sign of a direction
    around five real seeds; the served model puts them in both classes."""
    seeds = HELD[:5]
    queries = [*seeds]
    while len(queries) < 400:
        direction = np.sign(rng.normal(size=TRAIN.shape[1]))
        queries.append(seeds[len(queries) % 5] + 0.1 * STD * direction)
    return np.asarray(queries)


def predicted(rows: np.ndarray) -> list[str | None]:
    return [str(label) for label in SERVED.predict((rows - MEAN) / STD)]


def first_alarm(queries: np.ndarray, labels: list[str | None] | None) -> int | None:
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=DISTANCE))
    for index in range(len(queries)):
        named = labels[index : index + 1] if labels is not None else None
        if prober.observe("c", queries[index : index + 1], 0.0, None, named):
            return index + 1
    return None


def test_a_query_is_compared_with_earlier_queries_of_its_own_class_only() -> None:
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=DISTANCE))
    a = HELD[0]
    b = a + 0.01 * STD  # next to a, but the model put it in another class
    c = a + 3.0 * STD  # far from a and from b
    prober.observe("c", a[None, :], 0.0, None, ["0"])
    prober.observe("c", b[None, :], 0.0, None, ["1"])
    stream = prober.clients["c"]
    assert len(stream.distances) == 0  # b was the first of its class: no distance
    prober.observe("c", c[None, :], 0.0, None, ["1"])
    # Nearest of class 1 is b (3 - 0.01 = 2.99 standard units per feature away).
    assert stream.distances[-1] == np.sqrt(TRAIN.shape[1]) * 2.99
    assert list(stream.classes) == ["0", "1"]


def test_one_class_for_every_answer_is_the_single_set_of_answers_without_one() -> None:
    rng = np.random.default_rng(5)
    queries = HELD[rng.integers(0, len(HELD), 600)] + rng.normal(0, 0.05, (600, 30)) * STD
    runs = []
    for labels in (None, ["only"] * 600):
        prober = probing.Prober(MEAN, STD, probing.Settings(detectors=DISTANCE))
        for index in range(600):
            named = labels[index : index + 1] if labels is not None else None
            prober.observe("c", queries[index : index + 1], 0.0, None, named)
        runs.append(list(prober.clients["c"].distances))
    assert runs[0] == runs[1]
    assert len(runs[0]) == 599


def test_planted_streams_per_class_seed_steps_alarm_and_benign_replays_do_not() -> None:
    rng = np.random.default_rng(2)
    for _ in range(2):
        benign = HELD[rng.integers(0, len(HELD), 2000)]
        assert first_alarm(benign, predicted(benign)) is None
    planted = seed_steps(rng)
    labels = predicted(planted)
    assert set(labels) == {"0", "1"}
    count = first_alarm(planted, labels)
    assert count is not None
    assert count <= 200


def test_classes_per_client_are_bounded() -> None:
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=DISTANCE, memory=50))
    rng = np.random.default_rng(6)
    for index in range(probing.MAX_CLASSES + 20):
        prober.observe("c", rng.normal(MEAN, STD)[None, :], 0.0, None, [f"class{index}"])
    stream = prober.clients["c"]
    assert len(stream.classes) == probing.MAX_CLASSES
    assert stream.class_code(f"class{probing.MAX_CLASSES + 5}") == 0
    assert len(stream.thresholds) <= probing.MAX_CLASSES + 1


def _body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_the_class_is_read_from_kserve_v1_and_open_inference_v2_answers() -> None:
    v1, v2 = Protocol.KSERVE_V1, Protocol.OPEN_INFERENCE_V2
    read = answers.predicted_classes
    assert read(_body({"predictions": [1, 0, 1]}), v1, 3) == ["1", "0", "1"]
    assert read(_body({"predictions": ["cat", "dog"]}), v1, 2) == ["cat", "dog"]
    assert read(_body({"predictions": [[0.1, 0.9], [0.7, 0.3]]}), v1, 2) == ["#1", "#0"]
    # Regression outputs, booleans, a count that is not the request's: no class.
    assert read(_body({"predictions": [0.25, 1.5]}), v1, 2) == [None, None]
    assert read(_body({"predictions": [True]}), v1, 1) == [None]
    assert read(_body({"predictions": [1, 0]}), v1, 3) is None
    assert read(b"not json", v1, 1) is None
    assert read(_body([1]), v1, 1) is None
    labels = {"name": "predict", "datatype": "INT64", "shape": [2], "data": [1, 0]}
    assert read(_body({"outputs": [labels]}), v2, 2) == ["1", "0"]
    probabilities = {"name": "p", "datatype": "FP32", "shape": [2, 3], "data": [0, 1, 0, 5, 1, 0]}
    assert read(_body({"outputs": [probabilities]}), v2, 2) == ["#1", "#0"]
    regression = {"name": "y", "datatype": "FP64", "shape": [2], "data": [0.5, 1.5]}
    assert read(_body({"outputs": [regression]}), v2, 2) is None
    assert read(_body({"outputs": [regression, labels]}), v2, 2) == ["1", "0"]
    assert read(_body({"outputs": [{**labels, "shape": [3]}]}), v2, 2) is None
    assert read(_body({"predictions": [1, 0]}), v2, 2) is None


def test_the_distance_alarm_comes_with_the_answer_and_an_enforce_block_withholds_it() -> None:
    names = [f"f{i}" for i in range(30)]
    model = outliermodel.to_document(
        outliermodel.build({n: TRAIN[:, i].tolist() for i, n in enumerate(names)}, names)
    )
    api = apiprotection.ApiRequirements.model_validate(
        {"probing": {"action": "Block", "detectors": ["DistanceDistribution"]}}
    )
    ref = PolicyRef("ModelSecurityPolicy", "ml", "p")
    defences = defending.Defences(
        [(ref, policies.Enforcement.ENFORCE, api)], model, prometheus_client.CollectorRegistry()
    )
    route = routes.parse("POST", "/v1/models/m:predict")
    assert isinstance(route, routes.Route)
    seen = []
    for index, row in enumerate(seed_steps(np.random.default_rng(2))):
        before = defences.judge("apikey:c", route, {"instances": [row.tolist()]}, float(index))
        if before.verdict.refusal is not None:
            seen.append(("refused before", before.verdict.refusal.status))
            break
        assert before.alarms == []  # the distance test waits for the answer
        answer = _body({"predictions": predicted(row[None, :])})
        after = defences.answered("apikey:c", route, before, answer, float(index))
        if after.alarms:
            assert after.alarms[0][1].detector is probing.Detector.DISTANCE_DISTRIBUTION
            assert after.verdict.refusal is not None
            seen.append(("withheld", after.verdict.refusal.status))
    assert seen[:2] == [("withheld", 403), ("refused before", 403)]
