"""The monitor's state machine: batches in, window scores and alarm crossings out. No I/O.

Two streams are watched independently, each with its own tumbling window: request
features (input drift) and, when ``outputs`` are configured, response features
(prediction drift). State is only the current windows and alarms; after a restart the
first scores come from the first full window, never from a partial one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import alarms, config, layouts, payloads, profiles, statistics, windows

Statistic = statistics.Statistic


@dataclass(frozen=True)
class Crossing:
    """An alarm raised or cleared on one feature at the end of a window."""

    stream: payloads.Stream
    window: int
    feature: str
    statistic: Statistic
    score: float
    threshold: float
    transition: alarms.Transition


@dataclass(frozen=True)
class WindowResult:
    """One completed window of one stream."""

    stream: payloads.Stream
    window: int
    """1 for the first window since the monitor started."""
    scores: statistics.WindowScores
    statistics: tuple[Statistic, ...]
    """The statistic each feature's alarm watches."""
    thresholds: tuple[float, ...]
    alarm_scores: NDArray[np.float64]
    active: tuple[bool, ...]
    crossings: tuple[Crossing, ...]


@dataclass
class _Watch:
    layout: layouts.Layout
    window: windows.TumblingWindow
    statistics: tuple[Statistic, ...]
    rules: tuple[alarms.Rule, ...]
    states: list[alarms.State]


def request_columns(settings: config.MonitorConfig, profile: profiles.Profile) -> list[str]:
    """The columns of a request row: configured, or every profile feature but the outputs."""
    return list(settings.columns) or [
        name for name in profile.names if name not in settings.outputs
    ]


class Monitor:
    """Windows and alarms of the request and response streams."""

    def __init__(self, settings: config.MonitorConfig, profile: profiles.Profile) -> None:
        """Lay the profile out for the configured features; ProfileError when they do not fit."""
        self.settings = settings
        self.profile = profile
        self._watches: dict[payloads.Stream, _Watch] = {}
        columns = request_columns(settings, profile)
        overlap = set(settings.features) & set(settings.outputs)
        if overlap:
            raise profiles.ProfileError(
                f"features and outputs overlap: {', '.join(sorted(overlap))}"
            )
        self._watches["request"] = self._watch(layouts.build(profile, columns, settings.features))
        if settings.outputs:
            self._watches["response"] = self._watch(layouts.build(profile, settings.outputs))

    def _watch(self, layout: layouts.Layout) -> _Watch:
        settings = self.settings
        numeric_only = settings.statistic in statistics.NUMERIC_ONLY
        chosen: list[Statistic] = []
        rules: list[alarms.Rule] = []
        for position in range(len(layout.names)):
            categorical = position >= len(layout.numeric_columns)
            use_fallback = categorical and numeric_only
            chosen.append(settings.categorical_statistic if use_fallback else settings.statistic)
            rules.append(
                alarms.Rule(
                    threshold=settings.categorical_threshold
                    if use_fallback
                    else settings.threshold,
                    clear_ratio=settings.clear_ratio,
                    raise_after=settings.raise_after,
                    clear_after=settings.clear_after,
                )
            )
        return _Watch(
            layout=layout,
            window=windows.TumblingWindow(layout, settings.window),
            statistics=tuple(chosen),
            rules=tuple(rules),
            states=[alarms.State() for _ in layout.names],
        )

    @property
    def layouts_by_stream(self) -> dict[payloads.Stream, layouts.Layout]:
        """The layout of each watched stream (what payloads.parse needs)."""
        return {stream: watch.layout for stream, watch in self._watches.items()}

    def fill(self, stream: payloads.Stream) -> float:
        """How full the stream's current window is."""
        return self._watches[stream].window.fill

    def thresholds(self, stream: payloads.Stream) -> list[tuple[str, Statistic, float]]:
        """(feature, statistic, threshold) of each alarm of the stream."""
        watch = self._watches[stream]
        return [
            (name, statistic, rule.threshold)
            for name, statistic, rule in zip(
                watch.layout.names, watch.statistics, watch.rules, strict=True
            )
        ]

    def add(self, batches: Sequence[payloads.Batch]) -> list[WindowResult]:
        """Count the batches (any streams, in order); score every window they complete."""
        results: list[WindowResult] = []
        for stream, watch in self._watches.items():
            mine = [batch for batch in batches if batch.stream == stream and batch.rows]
            if not mine:
                continue
            if len(mine) == 1:
                numeric, categorical = mine[0].numeric, mine[0].categorical
            else:
                numeric = np.concatenate([batch.numeric for batch in mine])
                categorical = np.concatenate([batch.categorical for batch in mine])
            completed = watch.window.add_slots(windows.encode(watch.layout, numeric, categorical))
            first = watch.window.completed - len(completed) + 1
            for offset, counts in enumerate(completed):
                results.append(self._evaluate(stream, watch, first + offset, counts))
        return results

    def _evaluate(
        self, stream: payloads.Stream, watch: _Watch, index: int, counts: layouts.CountArray
    ) -> WindowResult:
        scores = statistics.score(watch.layout, counts)
        alarm_scores = np.array(
            [scores.scores[statistic][i] for i, statistic in enumerate(watch.statistics)]
        )
        crossings = []
        for i, name in enumerate(watch.layout.names):
            value = float(alarm_scores[i])
            state, transition = alarms.step(watch.rules[i], watch.states[i], value)
            watch.states[i] = state
            if transition is not alarms.Transition.NONE:
                crossings.append(
                    Crossing(
                        stream=stream,
                        window=index,
                        feature=name,
                        statistic=watch.statistics[i],
                        score=value if math.isfinite(value) else math.nan,
                        threshold=watch.rules[i].threshold,
                        transition=transition,
                    )
                )
        return WindowResult(
            stream=stream,
            window=index,
            scores=scores,
            statistics=watch.statistics,
            thresholds=tuple(rule.threshold for rule in watch.rules),
            alarm_scores=alarm_scores,
            active=tuple(state.active for state in watch.states),
            crossings=tuple(crossings),
        )
