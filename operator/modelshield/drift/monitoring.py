"""The monitor's state machine: batches in, window scores and alarm crossings out. No I/O.

Two streams are watched independently, each with its own tumbling window: request
features (input drift) and, when ``outputs`` are configured, response features
(prediction drift). State is only the current windows and alarms; after a restart the
first scores come from the first full window, never from a partial one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import (
    alarms,
    binmerging,
    calibration,
    config,
    layouts,
    missingshare,
    payloads,
    profiles,
    statistics,
    windows,
)

Statistic = statistics.Statistic

ENCODE_VALUES = 1 << 18
"""Values (rows x features) encoded at a time."""


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
    missing_share: bool = False
    """The alarm of the feature's missing-share test (score and threshold are shares of
    the window's rows), not of its statistic."""

    @property
    def measure(self) -> str:
        """What crossed: the statistic's name, or ``MissingShare``."""
        return missingshare.NAME if self.missing_share else self.statistic.value


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
    p_values: dict[Statistic, NDArray[np.float64]]
    """Per statistic and feature: the score's upper-tail probability under the calibrated
    null (NaN where the statistic does not apply)."""
    alarm_p_values: NDArray[np.float64]
    """Each feature's p-value in the model's family: its alarm statistic's, or with the
    missing-share test ``missingshare.combined_p_values`` of both."""
    dataset_p_value: float
    """Bonferroni over every watched feature of the model: min(1, features x min p)."""
    drifted: int
    """Features whose alarm score (or missing share) is over its threshold in this window."""
    missing_p_values: NDArray[np.float64] | None = None
    """Per feature: the missing-share test's p-value (NaN: not tested; None: no test)."""


@dataclass
class _Watch:
    layout: layouts.Layout
    window: windows.TumblingWindow
    statistics: tuple[Statistic, ...]
    rules: tuple[alarms.Rule, ...]
    states: list[alarms.State]
    nulls: dict[Statistic, calibration.NullTable]
    missing: missingshare.MissingShareTest | None = None
    """With a declared rate: the features whose statistic cannot see missing values."""
    missing_rules: dict[int, alarms.Rule] = field(default_factory=dict)
    missing_states: dict[int, alarms.State] = field(default_factory=dict)
    unsettled: set[int] = field(default_factory=set)
    """The features whose missing-share alarm is raised or counting a streak."""


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
        # Thin bins are merged where thresholds are calibrated on them; fixed thresholds
        # (PSI 0.2, ...) were chosen for the profile's bins and keep them.
        least = settings.least_expected if settings.false_alarm_rate is not None else 0.0
        self.least_expected = least
        """The rows of a window each scored bin expects at least (0: the profile's bins)."""
        self.scored = binmerging.for_window(profile, settings.window, least)
        """The profile with thin bins merged for the window: what windows are counted in,
        scored on and calibrated on (the profile itself where nothing merges)."""
        self.merged = binmerging.merged_names(profile, self.scored)
        """The features whose bins were merged."""
        self._watches: dict[payloads.Stream, _Watch] = {}
        self.calibrated_at_start: dict[payloads.Stream, bool] = {}
        """Per stream: True when its null tables were simulated at start
        rather than read from the profile's stored calibration."""
        self.null_tables: dict[payloads.Stream, str] = {}
        """Per stream: where its null tables come from, and why (for the start-up log)."""
        columns = request_columns(settings, profile)
        overlap = set(settings.features) & set(settings.outputs)
        if overlap:
            raise profiles.ProfileError(
                f"features and outputs overlap: {', '.join(sorted(overlap))}"
            )
        watched: dict[payloads.Stream, layouts.Layout] = {
            "request": layouts.build(self.scored, columns, settings.features)
        }
        if settings.outputs:
            watched["response"] = layouts.build(self.scored, settings.outputs)
        # One family of tests for the whole model: every watched feature of both streams.
        self.features_watched = sum(len(layout.names) for layout in watched.values())
        for stream, layout in watched.items():
            self._watches[stream] = self._watch(stream, layout)

    def _watch(self, stream: payloads.Stream, layout: layouts.Layout) -> _Watch:
        settings = self.settings
        numeric_only = settings.statistic in statistics.NUMERIC_ONLY
        rate = settings.false_alarm_rate
        # The smallest tail read off the null tables: the feature's share of the rate, or
        # nine tenths of it where KS or Wasserstein leave a tenth to the missing count.
        if rate is None:
            wanted = calibration.DEFAULT_TAIL
        else:
            blind = settings.statistic in missingshare.BLIND and bool(layout.numeric_columns)
            wanted = (
                missingshare.smallest_tail(rate, self.features_watched)
                if blind
                else rate / self.features_watched
            )
        least = self.least_expected
        nulls = calibration.stored(
            self.profile, layout, settings.window, wanted, least_expected=least
        )
        self.calibrated_at_start[stream] = nulls is None
        self.null_tables[stream] = "from the profile's calibration"
        if nulls is None:
            reasons = sorted(
                {
                    calibration.misfit(self.profile, c, layout, settings.window, wanted, least)
                    for c in self.profile.calibrations
                    if c.window == settings.window
                }
                - {""}
            )
            self.null_tables[stream] = "simulated at start" + (
                f": the profile's calibration for this window was {'; '.join(reasons)}"
                if reasons
                else ""
            )
            nulls = calibration.calibrate(layout, settings.window, tail=wanted)
        chosen: list[Statistic] = []
        rules: list[alarms.Rule] = []
        tested = np.zeros(len(layout.names), dtype=bool)
        missing_tail = 0.0
        for position in range(len(layout.names)):
            categorical = position >= len(layout.numeric_columns)
            use_fallback = categorical and numeric_only
            statistic = settings.categorical_statistic if use_fallback else settings.statistic
            chosen.append(statistic)
            if rate is not None:
                statistic_tail, tested_tail = missingshare.tails(
                    statistic, rate, self.features_watched
                )
                threshold = float(nulls[statistic].thresholds(statistic_tail)[position])
                if tested_tail is not None:
                    tested[position] = True
                    missing_tail = tested_tail
            elif use_fallback:
                threshold = settings.categorical_threshold
            else:
                threshold = settings.threshold
            rules.append(self._rule(threshold))
        missing = None
        missing_rules: dict[int, alarms.Rule] = {}
        if np.any(tested):
            missing = missingshare.build(layout, settings.window, tested, missing_tail)
            shares = missing.thresholds
            missing_rules = {int(i): self._rule(float(shares[i])) for i in np.flatnonzero(tested)}
        return _Watch(
            layout=layout,
            window=windows.TumblingWindow(layout, settings.window),
            statistics=tuple(chosen),
            rules=tuple(rules),
            states=[alarms.State() for _ in layout.names],
            nulls=nulls,
            missing=missing,
            missing_rules=missing_rules,
            missing_states={i: alarms.State() for i in missing_rules},
        )

    def _rule(self, threshold: float) -> alarms.Rule:
        settings = self.settings
        return alarms.Rule(
            threshold=threshold,
            clear_ratio=settings.clear_ratio,
            raise_after=settings.raise_after,
            clear_after=settings.clear_after,
        )

    @property
    def layouts_by_stream(self) -> dict[payloads.Stream, layouts.Layout]:
        """The layout of each watched stream (what payloads.parse needs)."""
        return {stream: watch.layout for stream, watch in self._watches.items()}

    def missing_thresholds(self, stream: payloads.Stream) -> list[tuple[str, float]]:
        """(feature, threshold on its missing share) of each missing-share alarm."""
        watch = self._watches[stream]
        return [(watch.layout.names[i], rule.threshold) for i, rule in watch.missing_rules.items()]

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
            pending: list[payloads.Batch] = []
            pending_values = 0
            for batch in batches:
                if batch.stream != stream or not batch.rows:
                    continue
                pending.append(batch)
                pending_values += batch.values
                # Small batches are counted together (one vectorised update for many events);
                # a large one is never copied into a larger array.
                if pending_values >= ENCODE_VALUES:
                    results += self._count(stream, watch, pending)
                    pending, pending_values = [], 0
            if pending:
                results += self._count(stream, watch, pending)
        return results

    def _count(
        self, stream: payloads.Stream, watch: _Watch, batches: list[payloads.Batch]
    ) -> list[WindowResult]:
        if len(batches) == 1:
            numeric, categorical = batches[0].numeric, batches[0].categorical
        else:
            numeric = np.concatenate([batch.numeric for batch in batches])
            categorical = np.concatenate([batch.categorical for batch in batches])
        results = []
        # Encoded in slices: the slot indices of a whole large batch would double its memory.
        step = max(1, ENCODE_VALUES // max(1, len(watch.layout.names)))
        for start in range(0, numeric.shape[0], step):
            rows = slice(start, start + step)
            slots = windows.encode(watch.layout, numeric[rows], categorical[rows])
            completed = watch.window.add_rows(slots, numeric[rows])
            first = watch.window.completed - len(completed) + 1
            for offset, (counts, sums) in enumerate(completed):
                results.append(self._evaluate(stream, watch, first + offset, counts, sums))
        return results

    def _evaluate(
        self,
        stream: payloads.Stream,
        watch: _Watch,
        index: int,
        counts: layouts.CountArray,
        sums: NDArray[np.float64],
    ) -> WindowResult:
        calibrated = self.settings.false_alarm_rate is not None
        scores = statistics.score(watch.layout, counts, sums, bounded=calibrated)
        alarm_scores = np.array(
            [scores.scores[statistic][i] for i, statistic in enumerate(watch.statistics)]
        )
        p_values = {
            statistic: watch.nulls[statistic].p_values(values)
            for statistic, values in scores.scores.items()
        }
        alarm_p_values = np.array(
            [p_values[statistic][i] for i, statistic in enumerate(watch.statistics)]
        )
        thresholds = np.array([rule.threshold for rule in watch.rules])
        over = alarm_scores > thresholds
        missing_p_values = None
        crossings = []
        if watch.missing is not None:
            missing_p_values = watch.missing.p_values(scores.missing_rate)
            alarm_p_values = missingshare.combined_p_values(
                alarm_p_values, missing_p_values, watch.missing.tested
            )
            over_missing = scores.missing_rate > watch.missing.thresholds
            over |= over_missing
            # Only alarms over their threshold or not at rest can change (most windows: none).
            for i in sorted(watch.unsettled.union(np.flatnonzero(over_missing).tolist())):
                rule = watch.missing_rules[i]
                share = float(scores.missing_rate[i])
                state, transition = alarms.step(rule, watch.missing_states[i], share)
                watch.missing_states[i] = state
                if state.active or state.streak:
                    watch.unsettled.add(i)
                else:
                    watch.unsettled.discard(i)
                if transition is not alarms.Transition.NONE:
                    crossings.append(
                        Crossing(
                            stream=stream,
                            window=index,
                            feature=watch.layout.names[i],
                            statistic=watch.statistics[i],
                            score=share,
                            threshold=rule.threshold,
                            transition=transition,
                            missing_share=True,
                        )
                    )
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
            active=tuple(
                state.active or (i in watch.missing_states and watch.missing_states[i].active)
                for i, state in enumerate(watch.states)
            ),
            crossings=tuple(crossings),
            p_values=p_values,
            alarm_p_values=alarm_p_values,
            dataset_p_value=calibration.dataset_p_value(alarm_p_values, self.features_watched),
            drifted=int(np.sum(over)),
            missing_p_values=missing_p_values,
        )
