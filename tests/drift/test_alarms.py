"""Thresholds with hysteresis."""

from __future__ import annotations

import pytest

from modelshield.drift import alarms

T = alarms.Transition


def _run(rule: alarms.Rule, scores: list[float]) -> list[T]:
    state = alarms.State()
    out = []
    for score in scores:
        state, transition = alarms.step(rule, state, score)
        out.append(transition)
    return out


def test_raises_above_and_clears_only_below_the_clear_level() -> None:
    rule = alarms.Rule(threshold=0.2, clear_ratio=0.5)
    transitions = _run(rule, [0.1, 0.25, 0.19, 0.21, 0.11, 0.09, 0.3])
    assert transitions == [T.NONE, T.RAISED, T.NONE, T.NONE, T.NONE, T.CLEARED, T.RAISED]


def test_a_score_hovering_at_the_threshold_does_not_flap() -> None:
    rule = alarms.Rule(threshold=0.2, clear_ratio=0.8)
    transitions = _run(rule, [0.21, 0.19, 0.205, 0.195, 0.21, 0.17, 0.15])
    assert transitions.count(T.RAISED) == 1
    assert transitions.count(T.CLEARED) == 1


def test_consecutive_windows_are_required_when_asked() -> None:
    rule = alarms.Rule(threshold=0.2, raise_after=2, clear_after=3)
    transitions = _run(rule, [0.3, 0.1, 0.3, 0.3, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1])
    assert transitions == [T.NONE] * 3 + [T.RAISED] + [T.NONE] * 5 + [T.CLEARED]


def test_nan_is_no_evidence() -> None:
    rule = alarms.Rule(threshold=0.2, raise_after=2)
    assert _run(rule, [0.3, float("nan"), 0.3]) == [T.NONE, T.NONE, T.NONE]


@pytest.mark.parametrize(
    "arguments",
    [{"threshold": 0}, {"threshold": 1, "clear_ratio": 0}, {"threshold": 1, "raise_after": 0}],
)
def test_rules_that_cannot_work_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|count"):
        alarms.Rule(**arguments)  # type: ignore[arg-type]
