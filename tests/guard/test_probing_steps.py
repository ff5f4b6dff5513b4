"""FixedSteps on planted streams: Jacobian-style augmentation (every new query an earlier one
moved by one step per feature), in the guard's units and in the attacker's own, against
replays of real rows."""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.guard import probing, probing_steps
from tests.guard import probing_reference

DATA = load_breast_cancer().data
TRAIN, HELD = DATA[:400], DATA[400:]
MEAN, STD = TRAIN.mean(0), TRAIN.std(0)
STEPS = probing.Detector.FIXED_STEPS


def first_alarm(
    queries: np.ndarray, detectors: frozenset[probing.Detector] = frozenset({STEPS})
) -> tuple[int | None, probing.Alarm | None]:
    prober = probing.Prober(MEAN, STD, probing.Settings(detectors=detectors))
    for index, query in enumerate(queries):
        alarms = prober.observe("apikey:c", query[None, :], float(index))
        if alarms:
            return index + 1, alarms[0]
    return None, None


def augmentation(scale: np.ndarray, count: int, noise: float = 0.0, seed: int = 2) -> np.ndarray:
    """Papernot et al.'s rounds from five real seeds: each round moves every point so far by
    0.1 ``scale`` along a sign vector (one per round, as a refitted linear surrogate's)."""
    rng = np.random.default_rng(seed)
    points = [*HELD[:5]]
    while len(points) < count:
        direction = np.sign(rng.normal(size=DATA.shape[1]))
        points.extend([point + 0.1 * scale * direction for point in points])
    sent = np.asarray(points[:count])
    return np.asarray(sent + rng.uniform(-noise, noise, sent.shape) * 0.1 * scale)


def test_steps_in_the_guards_units_alarm_within_twenty_queries() -> None:
    count, alarm = first_alarm(augmentation(STD, 400))
    assert alarm is not None
    assert count is not None
    assert count <= 20
    assert alarm.detector is STEPS
    assert alarm.client == "apikey:c"
    assert "fixed step" in alarm.reason


def test_the_other_detectors_alone_miss_the_same_stream() -> None:
    # Why FixedSteps exists: on this stream the distance test, the sweep and the outlier
    # share stay quiet (the evaluation measured the same on its attackers).
    others = frozenset(set(probing.Detector) - {STEPS, probing.Detector.VOLUME})
    assert first_alarm(augmentation(STD, 400), others) == (None, None)


def test_steps_in_the_attackers_own_scale_alarm_through_repetition() -> None:
    # Raw units per feature scaled by the attacker's guess of the spread (here its five
    # seeds'), not the guard's: the sizes differ between features but repeat between steps.
    own = HELD[:5].std(0)
    count, alarm = first_alarm(augmentation(own, 400))
    assert alarm is not None
    assert count is not None
    assert count <= 40


def test_noise_of_a_tenth_of_the_step_is_still_caught() -> None:
    count, alarm = first_alarm(augmentation(STD, 400, noise=0.1))
    assert alarm is not None
    assert count is not None
    assert count <= 40


def test_noise_of_half_the_step_evades_it() -> None:
    # The documented limit (query blinding): the differences spread like natural ones.
    assert first_alarm(augmentation(STD, 400, noise=0.5)) == (None, None)


def test_replays_of_real_rows_raise_no_alarm() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert first_alarm(HELD[rng.integers(0, len(HELD), 2000)]) == (None, None)


def test_jittered_real_rows_raise_no_alarm() -> None:
    # Every query distinct and near an earlier one (the same row, a little noise): the
    # differences are natural noise, not one step.
    rng = np.random.default_rng(3)
    rows = HELD[rng.integers(0, len(HELD), 2000)]
    assert first_alarm(rows + rng.normal(0, 0.05, rows.shape) * STD) == (None, None)


def test_a_single_step_among_natural_rows_is_not_enough() -> None:
    rng = np.random.default_rng(4)
    rows = HELD[rng.integers(0, len(HELD), 300)].copy()
    rows[150] = rows[149] + 0.1 * STD * np.sign(rng.normal(size=DATA.shape[1]))
    assert first_alarm(rows) == (None, None)


def test_memory_is_bounded() -> None:
    steps = probing_steps.FixedSteps(DATA.shape[1])
    for query in (augmentation(STD, 1000) - MEAN) / STD:
        steps.observe(np.ascontiguousarray(query))
    assert steps.rows.shape == (probing_steps.LOOKBACK, DATA.shape[1])
    assert steps.steps.shape == (probing_steps.RECENT_STEPS, DATA.shape[1])
    assert len(steps.marks) <= probing_steps.WINDOW
    settings = probing.Settings()
    assert probing.memory_bytes(settings, 30) > probing.memory_bytes(
        probing.Settings(detectors=frozenset(set(probing.Detector) - {STEPS})), 30
    )


def _distance_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows and a query: random at several scales, exact and one-ulp ties, the query among
    the rows, huge, tiny and non-finite values."""
    rng = np.random.default_rng(15)
    cases = []
    for width in (1, 5, 20, 30, 64):
        for scale in (1e-160, 1e-3, 1.0, 1e3, 1e150):
            rows = rng.normal(size=(int(rng.integers(1, 300)), width)) * scale
            cases.append((rows, rng.normal(size=width) * scale))
            cases.append((rows, rows[len(rows) // 2].copy()))
        base = rng.normal(size=width)
        step = np.sign(rng.normal(size=width)) * 0.1
        # The query sits between two rows one step either side: an exact tie, then rows
        # one ulp nearer or further.
        tie = np.stack([base - step, base + step, base + 3 * step])
        cases.append((tie, base.copy()))
        nudged = tie.copy()
        nudged[1] = np.nextafter(nudged[1], base)
        cases.append((nudged, base.copy()))
        cases.append((np.concatenate([tie, tie]), base.copy()))
        huge = rng.normal(size=(50, width))
        huge[7] = 1e200
        cases.append((huge, rng.normal(size=width)))
        cases.append((huge, np.full(width, 1e200)))
        with_inf = rng.normal(size=(50, width))
        with_inf[3, 0] = np.inf
        cases.append((with_inf, rng.normal(size=width)))
        cases.append((rng.normal(size=(50, width)), np.full(width, -np.inf)))
        cases.append((np.zeros((40, width)), np.zeros(width)))
    return cases


def test_nearest_gives_the_whole_expressions_index_and_distance() -> None:
    cases = []
    for rows, query in _distance_cases():
        # Small matrices are searched whole: screened, each case is repeated (ties with
        # every row's copy) or padded with far rows.
        copies = probing_steps.SCREEN_FROM // rows.size + 1
        cases.append((np.tile(rows, (copies, 1)), query))
        far = np.full(((copies - 1) * rows.shape[0], rows.shape[1]), 1e140)
        cases.append((np.concatenate([rows, far]), query))
    for rows, query in cases:
        assert rows.size >= probing_steps.SCREEN_FROM
        with np.errstate(over="ignore", invalid="ignore"):
            half_norms = np.einsum("ij,ij->i", rows, rows) / 2
            whole = ((rows - query) ** 2).sum(axis=1)
            index, distance = probing_steps.nearest(rows, half_norms, query)
        expected = int(whole.argmin())
        assert index == expected, (rows.shape, query[:3])
        assert distance == whole[expected] or (np.isnan(distance) and np.isnan(whole[expected]))


def _streams(width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    natural = rng.normal(size=(700, width))
    points = [*rng.normal(size=(5, width))]
    while len(points) < 700:
        direction = np.sign(rng.normal(size=width))
        points.extend([point + 0.1 * direction for point in points])
    steps = np.asarray(points[:700])
    own_scale = steps * rng.uniform(0.1, 10, width)
    noisy = steps + rng.uniform(-0.02, 0.02, steps.shape)
    whole = np.round(rng.normal(size=(700, width)) * 2)
    return [natural, steps, own_scale, noisy, whole]


def test_fixed_steps_decides_as_the_first_formula_on_random_streams() -> None:
    """Every query's step mark and every answer as the first formula's (tests/guard/
    probing_reference.py): the speed-ups change no decision."""
    for width in (5, 20, 30, 64):
        for stream in _streams(width, seed=width):
            fast, first = probing_steps.FixedSteps(width), probing_reference.FirstFixedSteps(width)
            for query in stream:
                query = np.ascontiguousarray(query)
                assert fast.observe(query) == first.observe(query)
                assert list(fast.marks) == list(first.marks)


def test_nearest_with_the_callers_norms_gives_the_same_answer() -> None:
    """A caller's ``query @ query`` and any upper bound of the rows' largest half norm (a
    wider screen) give the index and distance ``nearest`` finds alone."""
    rng = np.random.default_rng(16)
    for rows, query in _distance_cases():
        copies = probing_steps.SCREEN_FROM // rows.size + 1
        rows = np.tile(rows, (copies, 1))
        with np.errstate(over="ignore", invalid="ignore"):
            half_norms = np.einsum("ij,ij->i", rows, rows) / 2
            alone = probing_steps.nearest(rows, half_norms, query)
            largest = float(half_norms.max())
            for bound in (largest, largest * (1 + rng.uniform(0, 4)), math.inf):
                given = probing_steps.nearest(
                    rows,
                    half_norms,
                    query,
                    query_norm=float(query @ query),
                    largest_half_norm=bound,
                )
                assert given[0] == alone[0], (rows.shape, bound)
                assert given[1] == alone[1] or (np.isnan(given[1]) and np.isnan(alone[1]))


def test_fixed_steps_keeps_its_rows_largest_half_norm() -> None:
    """The bound FixedSteps hands ``nearest`` is its kept rows' largest half norm after
    every query, through rows overwritten in the ring and non-finite norms."""
    rng = np.random.default_rng(17)
    steps = probing_steps.FixedSteps(20)
    queries = rng.normal(size=(1200, 20)) * rng.uniform(0.1, 10, (1200, 1))
    queries[300, 4] = 1e200
    queries[700, 2] = np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        for query in queries:
            steps.observe(np.ascontiguousarray(query))
            kept = steps.half_norms[: steps.count]
            assert steps.largest_half_norm == kept.max() or (
                np.isnan(steps.largest_half_norm) and np.isnan(kept.max())
            )
