"""The probing detectors' formulas as first written, before they were made faster: the
equivalence tests feed the same streams to these and to the guard's and compare every
decision. Not used by the guard."""

from __future__ import annotations

import collections
import hashlib

import numpy as np
from scipy import stats

from modelshield.guard import probing, probing_steps
from modelshield.guard.outliertypes import FloatArray


class FirstFixedSteps:
    """``probing_steps.FixedSteps`` as of 8b48203: the whole distance matrix per query and
    numpy for every per-feature step."""

    def __init__(self, width: int) -> None:
        self.rows = np.empty((probing_steps.LOOKBACK, width))
        self.count = 0
        self.next = 0
        self.steps = np.empty((probing_steps.RECENT_STEPS, width))
        self.steps_count = 0
        self.steps_next = 0
        self.marks: collections.deque[bool] = collections.deque(maxlen=probing_steps.WINDOW)

    def observe(self, query: FloatArray) -> str | None:
        if self.count:
            kept = self.rows[: self.count]
            nearest = kept[int(((kept - query) ** 2).sum(axis=1).argmin())]
            self.marks.append(self._is_step(np.abs(query - nearest)))
        self.rows[self.next] = query
        self.next = (self.next + 1) % probing_steps.LOOKBACK
        self.count = min(self.count + 1, probing_steps.LOOKBACK)
        steps = sum(self.marks)
        if steps >= probing_steps.ALARM_COUNT:
            return (
                f"{steps} of its last {len(self.marks)} queries each move an earlier query "
                f"by one fixed step per feature (Jacobian-based augmentation)"
            )
        return None

    def _is_step(self, differences: FloatArray) -> bool:
        largest = float(differences.max())
        if largest <= 0:
            return False
        moved = differences > probing_steps.MOVED_OF_LARGEST * largest
        if int(moved.sum()) < probing_steps.MIN_MOVED:
            return False
        size = differences[moved]
        median = float(np.partition(size, size.size // 2)[size.size // 2])
        tolerance, share = probing_steps.TOLERANCE, probing_steps.SHARE
        equal = float((np.abs(size - median) <= tolerance * median).mean()) >= share
        repeated = False
        if self.steps_count:
            earlier = self.steps[: self.steps_count][:, moved]
            close = np.abs(earlier - size) <= tolerance * size
            repeated = bool((close.mean(axis=1) >= share).any())
        self.steps[self.steps_next] = differences
        self.steps_next = (self.steps_next + 1) % probing_steps.RECENT_STEPS
        self.steps_count = min(self.steps_count + 1, probing_steps.RECENT_STEPS)
        return equal or repeated


class FirstClientStream:
    """``probing.ClientStream`` as of 8b48203 (its FixedSteps: the guard's, tested on its own
    above): deques copied into arrays, the whole distance matrix, ``stats.shapiro``."""

    def __init__(self, width: int, settings: probing.Settings) -> None:
        self.settings = settings
        memory = settings.memory
        self.growing = np.empty((memory, width))
        self.growing_count = 0
        self.growing_next = 0
        self.growing_distances: collections.deque[float] = collections.deque(maxlen=memory)
        self.threshold = 0.0
        self.distances: collections.deque[float] = collections.deque(maxlen=memory)
        self.since_test = 0
        self.seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.recent = np.empty((probing.SWEEP_LOOKBACK, width))
        self.recent_count = 0
        self.recent_next = 0
        self.sweeps: collections.deque[bool] = collections.deque(maxlen=probing.SWEEP_WINDOW)
        self.outliers: collections.deque[bool] = collections.deque(maxlen=probing.OUTLIER_WINDOW)
        self.outlier_alarm_count = settings.outlier_alarm_count
        self.alarmed: dict[probing.Detector, float] = {}
        self.minute = -1
        self.minute_count = 0
        self.usual_rate = 0.0
        self.minutes_seen = 0
        self.fixed_steps = (
            probing_steps.FixedSteps(width)
            if probing.Detector.FIXED_STEPS in settings.detectors
            else None
        )

    def _repeat(self, query: FloatArray) -> bool:
        key = hashlib.blake2b(query.tobytes(), digest_size=16).digest()
        if key in self.seen:
            self.seen.move_to_end(key)
            return True
        self.seen[key] = None
        if len(self.seen) > self.settings.memory:
            self.seen.popitem(last=False)
        return False

    def _distance(self, query: FloatArray) -> probing.Alarm | None:
        if self.growing_count == 0:
            self._grow(query, None)
            return None
        kept = self.growing[: self.growing_count]
        nearest = float(np.sqrt(((kept - query) ** 2).sum(axis=1).min()))
        self.distances.append(nearest)
        if nearest > self.threshold:
            self._grow(query, nearest)
        self.since_test += 1
        if len(self.distances) < self.settings.min_queries or self.since_test < probing.TEST_EVERY:
            return None
        self.since_test = 0
        # Natural minimum distances are right-skewed (roughly log-normal): the test reads
        # their logarithms, where benign streams look normal and synthetic ones, whose
        # distances pile up at a few step sizes, still do not.
        values = np.log(np.fromiter(self.distances, dtype=np.float64) + probing.LOG_OFFSET)
        mean, std = values.mean(), values.std()
        trimmed = values[np.abs(values - mean) <= 3 * std] if std > 0 else values
        if trimmed.size < 3 or np.ptp(trimmed) == 0:
            w = 0.0
        else:
            w = float(stats.shapiro(trimmed).statistic)
        if w < self.settings.normality_threshold:
            return probing.Alarm(
                "",
                probing.Detector.DISTANCE_DISTRIBUTION,
                f"the distances between its last {values.size} queries are not normally "
                f"distributed (Shapiro-Wilk W {w:.3f} < {self.settings.normality_threshold})",
            )
        return None

    def _grow(self, query: FloatArray, nearest: float | None) -> None:
        self.growing[self.growing_next] = query
        self.growing_next = (self.growing_next + 1) % self.settings.memory
        self.growing_count = min(self.growing_count + 1, self.settings.memory)
        if nearest is not None:
            self.growing_distances.append(nearest)
            kept = np.fromiter(self.growing_distances, dtype=np.float64)
            self.threshold = max(self.threshold, float(kept.mean() - kept.std()))

    def _sweep(self, query: FloatArray) -> probing.Alarm | None:
        if self.recent_count:
            recent = self.recent[: self.recent_count]
            differing = (np.abs(recent - query) > 1e-9).sum(axis=1)
            self.sweeps.append(bool(differing.min() <= probing.SWEEP_FEATURES))
        self.recent[self.recent_next] = query
        self.recent_next = (self.recent_next + 1) % probing.SWEEP_LOOKBACK
        self.recent_count = min(self.recent_count + 1, probing.SWEEP_LOOKBACK)
        if (
            len(self.sweeps) == probing.SWEEP_WINDOW
            and sum(self.sweeps) >= probing.SWEEP_WINDOW / 2
        ):
            return probing.Alarm(
                "",
                probing.Detector.SWEEP,
                f"{sum(self.sweeps)} of its last {probing.SWEEP_WINDOW} queries differ from an earlier "
                f"one in at most {probing.SWEEP_FEATURES} features (a sweep)",
            )
        return None

    def volume(self, now: float, count: int) -> probing.Alarm | None:
        """Count ``count`` queries at ``now`` (seconds); an alarm on a surge."""
        minute = int(now // 60)
        if minute != self.minute:
            if self.minute >= 0:
                # Minutes with no query at all count as zero.
                for _ in range(min(minute - self.minute - 1, 60)):
                    self.usual_rate *= 1 - probing.VOLUME_SMOOTHING
                self.usual_rate += probing.VOLUME_SMOOTHING * (self.minute_count - self.usual_rate)
                if self.minutes_seen == 0:
                    self.usual_rate = float(self.minute_count)
                self.minutes_seen += minute - self.minute
            self.minute, self.minute_count = minute, 0
        self.minute_count += count
        if self.minutes_seen < probing.VOLUME_HISTORY_MINUTES:
            return None
        limit = self.settings.volume_factor * max(self.usual_rate, probing.VOLUME_FLOOR)
        if self.minute_count > limit:
            return probing.Alarm(
                "",
                probing.Detector.VOLUME,
                f"{self.minute_count} queries this minute, over {self.settings.volume_factor:g} "
                f"times its usual {self.usual_rate:.1f} per minute",
            )
        return None

    def _outlier_share(self, flagged: bool) -> probing.Alarm | None:
        self.outliers.append(flagged)
        count = sum(self.outliers)
        if count >= self.outlier_alarm_count:
            return probing.Alarm(
                "",
                probing.Detector.OUTLIER_SHARE,
                f"{count} of its last {len(self.outliers)} queries are out of distribution "
                f"(in-distribution traffic: {self.settings.outlier_rate:g} of them)",
            )
        return None

    def observe(self, query: FloatArray, flagged: bool = False) -> list[probing.Alarm]:
        """Add one query (standardised, NaN-free; ``flagged`` by the outlier check)."""
        if self._repeat(query):
            return []
        found: list[probing.Alarm] = []
        detectors = self.settings.detectors
        if probing.Detector.OUTLIER_SHARE in detectors:
            alarm = self._outlier_share(flagged)
            if alarm is not None:
                found.append(alarm)
        if probing.Detector.DISTANCE_DISTRIBUTION in detectors:
            alarm = self._distance(query)
            if alarm is not None:
                found.append(alarm)
        if probing.Detector.SWEEP in detectors:
            alarm = self._sweep(query)
            if alarm is not None:
                found.append(alarm)
        if self.fixed_steps is not None:
            reason = self.fixed_steps.observe(query)
            if reason is not None:
                found.append(probing.Alarm("", probing.Detector.FIXED_STEPS, reason))
        return found
