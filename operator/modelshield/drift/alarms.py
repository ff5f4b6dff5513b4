"""Drift alarms: a threshold with hysteresis, so that a score hovering near it does not flap.

An alarm is raised when the score exceeds ``threshold`` for ``raise_after`` consecutive
windows, and cleared when it stays below ``threshold * clear_ratio`` for ``clear_after``
consecutive windows. Between the two levels nothing changes. A NaN score (a statistic that
does not apply) is no evidence either way and breaks a streak.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Transition(enum.Enum):
    """What a window did to an alarm."""

    NONE = "None"
    RAISED = "Raised"
    CLEARED = "Cleared"


@dataclass(frozen=True)
class Rule:
    """When to raise and when to clear."""

    threshold: float
    clear_ratio: float = 0.8
    raise_after: int = 1
    clear_after: int = 1

    def __post_init__(self) -> None:
        """Refuse rules that would flap or never fire."""
        if not self.threshold > 0:
            raise ValueError("threshold must be positive")
        if not 0 < self.clear_ratio <= 1:
            raise ValueError("clear_ratio must be in (0, 1]")
        if self.raise_after < 1 or self.clear_after < 1:
            raise ValueError("raise_after and clear_after count at least one window")

    @property
    def clear_below(self) -> float:
        """The level a raised alarm's score must fall under."""
        return self.threshold * self.clear_ratio


@dataclass(frozen=True)
class State:
    """One feature's alarm: raised or not, and the streak of windows pointing the other way."""

    active: bool = False
    streak: int = 0


def step(rule: Rule, state: State, score: float) -> tuple[State, Transition]:
    """The alarm after one more window's score."""
    if not state.active:
        if score > rule.threshold:
            if state.streak + 1 >= rule.raise_after:
                return State(active=True), Transition.RAISED
            return State(active=False, streak=state.streak + 1), Transition.NONE
        return State(), Transition.NONE
    if score < rule.clear_below:
        if state.streak + 1 >= rule.clear_after:
            return State(), Transition.CLEARED
        return State(active=True, streak=state.streak + 1), Transition.NONE
    return State(active=True), Transition.NONE
