"""Probing detectors on planted streams: real rows (benign), synthetic ones (attacks)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.guard import probing
from tests.guard import probing_reference

DATA = load_breast_cancer().data
TRAIN, HELD = DATA[:400], DATA[400:]
MEAN, STD = TRAIN.mean(0), TRAIN.std(0)
LOW, HIGH = TRAIN.min(0), TRAIN.max(0)
ONLY = probing.Detector


def first_alarm(
    queries: np.ndarray,
    detectors: set[probing.Detector],
    flagged: np.ndarray | None = None,
    *,
    seconds_apart: float = 1.0,
) -> tuple[int | None, probing.Alarm | None]:
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=frozenset(detectors)))
    for index, query in enumerate(queries):
        marks = flagged[index : index + 1] if flagged is not None else None
        alarms = prober.observe("apikey:c", query[None, :], index * seconds_apart, marks)
        if alarms:
            return index + 1, alarms[0]
    return None, None


def test_benign_replay_of_real_rows_raises_no_alarm() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        stream = HELD[rng.integers(0, len(HELD), 2000)]
        assert first_alarm(stream, set(ONLY) - {ONLY.VOLUME}) == (None, None)


def test_small_steps_around_seeds_fail_the_distance_test() -> None:
    # Synthetic queries around five real seeds, each a fixed step (0.1 std per feature,
    # in the sign of some direction, as Jacobian-based augmentation steps) from its seed.
    rng = np.random.default_rng(2)
    seeds = HELD[:5]
    queries = [*seeds]
    while len(queries) < 400:
        direction = np.sign(rng.normal(size=DATA.shape[1]))
        queries.append(seeds[len(queries) % 5] + 0.1 * STD * direction)
    count, alarm = first_alarm(np.asarray(queries), {ONLY.DISTANCE_DISTRIBUTION})
    assert alarm is not None
    assert count is not None
    assert count <= 200
    assert alarm.detector is ONLY.DISTANCE_DISTRIBUTION
    assert alarm.client == "apikey:c"
    assert "Shapiro-Wilk" in alarm.reason


def test_one_feature_sweeps_are_found() -> None:
    queries = []
    for seed in HELD[:3]:
        for feature in range(DATA.shape[1]):
            for value in np.linspace(LOW[feature], HIGH[feature], 10):
                query = seed.copy()
                query[feature] = value
                queries.append(query)
    count, alarm = first_alarm(np.asarray(queries), {ONLY.SWEEP})
    assert alarm is not None
    assert count is not None
    assert count <= 60
    assert "sweep" in alarm.reason


def test_a_stream_of_outliers_is_found_and_a_benign_share_is_not() -> None:
    rng = np.random.default_rng(3)
    queries = rng.uniform(LOW, HIGH, (300, DATA.shape[1]))
    count, alarm = first_alarm(queries, {ONLY.OUTLIER_SHARE}, np.ones(300, dtype=bool))
    assert alarm is not None
    assert count == probing.Settings().outlier_alarm_count
    benign_marks = rng.random(3000) < 0.01
    stream = HELD[rng.integers(0, len(HELD), 3000)] + rng.normal(0, 1e-6, (3000, DATA.shape[1]))
    assert first_alarm(stream, {ONLY.OUTLIER_SHARE}, benign_marks) == (None, None)


def test_volume_far_above_the_clients_history() -> None:
    rows = np.tile(HELD[:1], (1, 1))
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=frozenset({ONLY.VOLUME})))
    now = 0.0
    for _ in range(10 * 20):  # 20 queries a minute for ten minutes: its usual rate
        assert prober.observe("c", rows, now) == []
        now += 3.0
    alarms = []
    for _ in range(500):  # then 500 in thirty seconds
        alarms.extend(prober.observe("c", rows, now))
        now += 0.06
    assert alarms
    assert alarms[0].detector is ONLY.VOLUME
    assert "usual" in alarms[0].reason


def test_memory_per_client_and_number_of_clients_are_bounded() -> None:
    settings = probing.Settings(memory=50, max_clients=3)
    prober = probing.Prober(MEAN, STD, settings)
    rng = np.random.default_rng(4)
    for client in range(5):
        for _ in range(120):
            prober.observe(f"c{client}", rng.normal(MEAN, STD)[None, :], 0.0)
    assert list(prober.clients) == ["c2", "c3", "c4"]
    stream = prober.clients["c4"]
    assert stream.growing_count <= 50
    assert len(stream.distances) <= 50
    assert len(stream.seen) <= 50
    assert stream.growing.shape == (50, DATA.shape[1])


def test_one_alarm_per_episode_not_one_per_query() -> None:
    settings = probing.Settings(detectors=frozenset({ONLY.SWEEP}), quiet_after_alarm=60)
    prober = probing.Prober(MEAN, STD, settings)
    seed = HELD[0]
    raised: list[tuple[int, probing.Alarm]] = []
    for index, value in enumerate(np.linspace(LOW[1], HIGH[1], 200)):
        query = seed.copy()
        query[1] = value
        raised.extend((index, a) for a in prober.observe("c", query[None, :], index * 0.1))
    # 200 queries over 20 s: one alarm; the sweep goes on after the quiet time: another.
    assert len(raised) == 1
    query = seed.copy()
    query[1] = HIGH[1] * 2
    assert len(prober.observe("c", query[None, :], 100.0)) == 1


def _equivalence_streams(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standardised streams of the shapes the detectors see: replays with repeats, random
    points in the box, steps around seeds, one-feature sweeps, a mix; one with huge values."""
    replay = (HELD[rng.integers(0, len(HELD), 600)] - MEAN) / STD
    box = (rng.uniform(LOW, HIGH, (600, DATA.shape[1])) - MEAN) / STD
    seeds = (HELD[:5] - MEAN) / STD
    steps = np.concatenate(
        [seeds + 0.1 * k * np.sign(rng.normal(size=seeds.shape)) for k in range(120)]
    )
    sweep = np.repeat(seeds, 120, axis=0)
    sweep[np.arange(600), np.arange(600) % DATA.shape[1]] += np.tile(np.linspace(-2, 2, 120), 5)
    mixed = np.where(rng.random((600, 1)) < 0.5, replay, box)
    huge = box.copy()
    huge[::37] *= 1e160
    return {
        "replay": replay,
        "box": box,
        "steps": steps,
        "sweep": sweep,
        "mixed": mixed,
        "huge": huge,
    }


def test_client_stream_decides_as_the_first_formula_on_random_streams() -> None:
    """Every alarm, distance and threshold as the first formula's (tests/guard/
    probing_reference.py), with the default memory and with a small one that wraps."""
    rng = np.random.default_rng(18)
    for settings in (probing.Settings(), probing.Settings(memory=50, min_queries=20)):
        for name, stream in _equivalence_streams(rng).items():
            flags = rng.random(len(stream)) < (0.3 if name in ("box", "mixed") else 0.01)
            fast = probing.ClientStream(DATA.shape[1], settings)
            first = probing_reference.FirstClientStream(DATA.shape[1], settings)
            for query, flagged in zip(stream, flags, strict=True):
                query = np.ascontiguousarray(query)
                with np.errstate(over="ignore", invalid="ignore"):
                    assert fast.observe(query, bool(flagged)) == first.observe(
                        query, bool(flagged)
                    ), name
                assert fast.threshold == first.threshold
                assert fast.growing_count == first.growing_count
                assert fast.distances.array().tolist() == list(first.distances)


def test_the_shapiro_wilk_statistic_is_scipys() -> None:
    rng = np.random.default_rng(5)
    for size in (3, 4, 10, 100, 1000, 5000):
        for values in (
            rng.normal(size=size),
            rng.lognormal(size=size),
            np.round(rng.normal(size=size)),
        ):
            assert probing._shapiro(values) == float(stats.shapiro(values).statistic)
    with_inf = rng.normal(size=50)
    with_inf[3] = np.inf
    with np.errstate(invalid="ignore"):
        assert np.isnan(probing._shapiro(with_inf)) == np.isnan(
            float(stats.shapiro(with_inf).statistic)
        )


def test_recent_keeps_the_last_values_in_order() -> None:
    recent = probing.Recent(7)
    kept: list[float] = []
    for value in range(30):
        recent.append(float(value))
        kept = [*kept, float(value)][-7:]
        assert recent.array().tolist() == kept
        assert len(recent) == len(kept)


def _model_radius() -> float:
    from modelshield.guard import outliermodel

    names = [f"f{i}" for i in range(DATA.shape[1])]
    built = outliermodel.build(
        {n: TRAIN[:, i].tolist() for i, n in enumerate(names)}, names, near_duplicates=True
    )
    return outliermodel.from_document(outliermodel.to_document(built)).near_duplicate


def _distance_alarm(queries: np.ndarray, near_duplicate: float) -> int | None:
    settings = probing.Settings(
        detectors=frozenset({ONLY.DISTANCE_DISTRIBUTION}), near_duplicate=near_duplicate
    )
    prober = probing.Prober(MEAN, STD, settings)
    for index, query in enumerate(queries):
        if prober.observe("apikey:c", query[None, :], float(index)):
            return index + 1
    return None


def test_distinct_near_copies_of_real_rows_pass_the_distance_test_beyond_the_radius() -> None:
    """A benign client whose every query is a real row with a little noise (0.05 standard
    deviations per feature): tested whole, its nearest distances have two modes (near
    copies of a row seen before, new rows) and PRADA's normality test fails it; leaving out
    the queries nearer than the profile's near-duplicate radius, it passes. Small fixed
    steps around a few seeds are still caught."""
    radius = _model_radius()
    rng = np.random.default_rng(5)
    found = []
    for _ in range(3):
        rows = HELD[rng.integers(0, len(HELD), 3000)]
        jittered = rows + rng.normal(0.0, 0.05, rows.shape) * STD
        found.append((_distance_alarm(jittered, 0.0), _distance_alarm(jittered, radius)))
    assert [before is not None for before, _ in found].count(True) >= 2
    assert [after for _, after in found] == [None, None, None]
    # The steps around seeds of test_small_steps_around_seeds_fail_the_distance_test.
    seeds = HELD[:5]
    steps = [*seeds]
    while len(steps) < 1000:
        steps.append(seeds[len(steps) % 5] + 0.1 * STD * np.sign(rng.normal(size=DATA.shape[1])))
    assert _distance_alarm(np.asarray(steps), radius) is not None


def test_the_near_duplicate_radius_is_a_low_quantile_of_reference_nearest_distances() -> None:
    from modelshield.guard import outliermodel, outliertypes

    rng = np.random.default_rng(6)
    rows = TRAIN[:200]
    scale = np.where(STD > 0, STD, 1.0)
    with_copies = np.concatenate([rows, rows[:20]])
    radius = outliermodel.near_duplicate_radius(with_copies, MEAN, STD, rng)
    standard = (rows - MEAN) / scale
    brute = [
        min(float(np.sqrt(((standard[i] - standard[j]) ** 2).sum())) for j in range(200) if j != i)
        for i in range(200)
    ]
    # Exact copies are left out: the radius is that of the distinct rows.
    assert radius > 0
    assert np.isclose(radius, np.quantile(brute, outliermodel.NEAR_DUPLICATE_QUANTILE))
    names = [f"f{i}" for i in range(DATA.shape[1])]
    document = outliermodel.to_document(
        outliermodel.build(
            {n: TRAIN[:, i].tolist() for i, n in enumerate(names)}, names, near_duplicates=True
        )
    )
    assert document["nearDuplicate"] > 0
    older = {key: value for key, value in document.items() if key != "nearDuplicate"}
    assert outliermodel.from_document(older).near_duplicate == 0.0
    for bad in (-1.0, float("inf"), "1", True):
        with pytest.raises(outliertypes.OutlierModelError, match="nearDuplicate"):
            outliermodel.from_document({**document, "nearDuplicate": bad})


def test_rows_reach_the_detectors_in_the_first_formulas_standard_units(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing values at the mean (0), infinities kept, everything else (x - mean) / scale,
    bit for bit as ``(where(isnan(rows), mean, rows) - mean) / scale``: rows with NaN, with
    +inf and -inf together (their sum is NaN too), with both, two-row requests, plain."""
    rng = np.random.default_rng(18)
    mean, std = rng.normal(size=6), rng.uniform(0.1, 3, 6)
    std[2] = 0.0
    seen: list[np.ndarray] = []

    def record(
        stream: probing.ClientStream, query: np.ndarray, flagged: bool = False
    ) -> list[probing.Alarm]:
        seen.append(query.copy())
        return []

    monkeypatch.setattr(probing.ClientStream, "observe", record)
    prober = probing.Prober(mean, std, probing.Settings())
    requests = [rng.normal(size=(1, 6)) for _ in range(6)] + [rng.normal(size=(2, 6))]
    requests[1][0, 3] = np.nan
    requests[2][0, [1, 4]] = [np.inf, -np.inf]
    requests[3][0, [0, 1, 5]] = [np.nan, np.inf, -np.inf]
    requests[4][0, :] = np.nan
    requests[6][1, 2] = np.nan
    for rows in requests:
        prober.observe("client", rows, 0.0)
    expected = [
        row
        for rows in requests
        for row in (np.where(np.isnan(rows), mean, rows) - mean) / np.where(std > 0, std, 1.0)
    ]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected, strict=True):
        assert got.tobytes() == want.tobytes()
