"""Per-client detection of extraction and inversion probing. Pure (numpy, scipy).

Each client's recent queries are kept in a bounded summary (``ClientStream``; at most
``memory`` queries, and at most ``max_clients`` clients, the least recently seen
forgotten first). Queries are compared in the reference profile's standard units (each
feature divided by its reference standard deviation). Three detectors:

- **DistanceDistribution** (PRADA, Juuti et al. 2019): each new query's minimum distance
  to the client's growing set of earlier queries joins a set D; a query further than the
  set's threshold (the largest mean − std of D seen) joins the growing set. Once D holds
  ``min_queries`` distances, a Shapiro–Wilk W of log D (values beyond 3 standard
  deviations removed; PRADA tests D itself, whose right skew made benign tabular streams
  fail it here) below ``normality_threshold`` is an alarm: natural queries give roughly
  normal distances, synthetic ones (random, or small steps around seeds) do not. As in
  PRADA, the growing set and its threshold are kept per predicted class when the model's
  answer names one (``Prober.observe_answer``; at most ``MAX_CLASSES`` classes per client,
  answers without a class share one set): a query is compared with the earlier queries
  the model put in the same class. Exact repeats are skipped (they tell an attacker
  nothing new).
- **Sweep**: a query that differs from one of the client's last ``SWEEP_LOOKBACK``
  queries in at most ``SWEEP_FEATURES`` features; an alarm when at least half of the
  last ``SWEEP_WINDOW`` queries are such.
- **OutlierShare**: the share of the client's last ``OUTLIER_WINDOW`` queries that the
  outlier check flags; an alarm when it is so high that a client sending in-distribution
  queries (flagged at the calibrated ``outlier_rate``) would reach it with probability
  below ``OUTLIER_ALARM_P`` (a binomial tail): random points in the feature box, the
  simplest extraction queries, are nearly all out of distribution.
- **Volume**: queries per minute; an alarm when the current minute holds more than
  ``volume_factor`` times the client's usual rate (an exponential average of its past
  minutes, at least ``VOLUME_FLOOR``) after ``VOLUME_HISTORY_MINUTES`` minutes of history.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from modelshield.guard.outliermodel import FloatArray

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


class Detector(enum.StrEnum):
    """The detectors (as the policy names them)."""

    DISTANCE_DISTRIBUTION = "DistanceDistribution"
    SWEEP = "Sweep"
    OUTLIER_SHARE = "OutlierShare"
    VOLUME = "Volume"


SWEEP_LOOKBACK = 32
SWEEP_WINDOW = 50
SWEEP_FEATURES = 2
#: How often (in distinct queries) the Shapiro–Wilk test is run once D is full enough.
TEST_EVERY = 10
#: Added to distances (standard units) before their logarithm: exact repeats are skipped,
#: near ones must not become minus infinity.
LOG_OFFSET = 1e-6
OUTLIER_WINDOW = 100
OUTLIER_ALARM_P = 1e-6
VOLUME_HISTORY_MINUTES = 5
VOLUME_FLOOR = 10.0
VOLUME_SMOOTHING = 0.1
#: Distinct predicted classes with their own growing set per client; later ones (and
#: answers without a class) share the set of code 0.
MAX_CLASSES = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """A policy's probing settings, as the detectors use them."""

    detectors: frozenset[Detector] = frozenset(Detector)
    normality_threshold: float = 0.8
    min_queries: int = 100
    memory: int = 1000
    max_clients: int = 10_000
    volume_factor: float = 10.0
    #: The outlier check's calibrated false-flag rate (OutlierShare's benign rate).
    outlier_rate: float = 0.01
    #: A detector that alarmed on a client stays quiet about it this long (seconds): one
    #: alarm per episode, not one per query.
    quiet_after_alarm: float = 600.0

    @property
    def outlier_alarm_count(self) -> int:
        """Flagged queries among the last OUTLIER_WINDOW that raise the alarm."""
        count = 1 + np.arange(OUTLIER_WINDOW)
        tails = stats.binom.sf(count - 1, OUTLIER_WINDOW, self.outlier_rate)
        return int(count[np.argmax(tails < OUTLIER_ALARM_P)])


@dataclasses.dataclass(frozen=True, slots=True)
class Alarm:
    """A client's stream looked like probing."""

    client: str
    detector: Detector
    reason: str


class ClientStream:
    """The bounded summary of one client's recent queries."""

    def __init__(self, width: int, settings: Settings) -> None:
        self.settings = settings
        memory = settings.memory
        self.growing = np.empty((memory, width))
        #: Each growing row's class code and its distance when it joined (NaN: the first).
        self.growing_classes = np.zeros(memory, dtype=np.int64)
        self.growing_nearest = np.full(memory, np.nan)
        self.growing_count = 0
        self.growing_next = 0
        self.classes: dict[str, int] = {}
        self.thresholds: dict[int, float] = {}
        self.distances: collections.deque[float] = collections.deque(maxlen=memory)
        self.since_test = 0
        self.seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.recent = np.empty((SWEEP_LOOKBACK, width))
        self.recent_count = 0
        self.recent_next = 0
        self.sweeps: collections.deque[bool] = collections.deque(maxlen=SWEEP_WINDOW)
        self.outliers: collections.deque[bool] = collections.deque(maxlen=OUTLIER_WINDOW)
        self.outlier_alarm_count = settings.outlier_alarm_count
        self.alarmed: dict[Detector, float] = {}
        self.minute = -1
        self.minute_count = 0
        self.usual_rate = 0.0
        self.minutes_seen = 0

    def _repeat(self, query: FloatArray) -> bool:
        key = hashlib.blake2b(query.tobytes(), digest_size=16).digest()
        if key in self.seen:
            self.seen.move_to_end(key)
            return True
        self.seen[key] = None
        if len(self.seen) > self.settings.memory:
            self.seen.popitem(last=False)
        return False

    def class_code(self, label: str | None) -> int:
        """The growing set a predicted class uses (0: no class, or past MAX_CLASSES)."""
        if label is None:
            return 0
        code = self.classes.get(label)
        if code is None:
            if len(self.classes) >= MAX_CLASSES:
                return 0
            code = self.classes[label] = len(self.classes) + 1
        return code

    def distance(self, query: FloatArray, code: int = 0) -> Alarm | None:
        """PRADA's step for a fresh query the model put in class ``code``."""
        same = self.growing_classes[: self.growing_count] == code
        if not same.any():
            self._grow(query, None, code)
            return None
        kept = self.growing[: self.growing_count][same]
        nearest = float(np.sqrt(((kept - query) ** 2).sum(axis=1).min()))
        self.distances.append(nearest)
        if nearest > self.thresholds.get(code, 0.0):
            self._grow(query, nearest, code)
        self.since_test += 1
        if len(self.distances) < self.settings.min_queries or self.since_test < TEST_EVERY:
            return None
        self.since_test = 0
        # Natural minimum distances are right-skewed (roughly log-normal): the test reads
        # their logarithms, where benign streams look normal and synthetic ones, whose
        # distances pile up at a few step sizes, still do not.
        values = np.log(np.fromiter(self.distances, dtype=np.float64) + LOG_OFFSET)
        mean, std = values.mean(), values.std()
        trimmed = values[np.abs(values - mean) <= 3 * std] if std > 0 else values
        if trimmed.size < 3 or np.ptp(trimmed) == 0:
            w = 0.0
        else:
            w = float(stats.shapiro(trimmed).statistic)
        if w < self.settings.normality_threshold:
            return Alarm(
                "",
                Detector.DISTANCE_DISTRIBUTION,
                f"the distances between its last {values.size} queries are not normally "
                f"distributed (Shapiro-Wilk W {w:.3f} < {self.settings.normality_threshold})",
            )
        return None

    def _grow(self, query: FloatArray, nearest: float | None, code: int) -> None:
        slot = self.growing_next
        self.growing[slot] = query
        self.growing_classes[slot] = code
        self.growing_nearest[slot] = np.nan if nearest is None else nearest
        self.growing_next = (slot + 1) % self.settings.memory
        self.growing_count = min(self.growing_count + 1, self.settings.memory)
        if nearest is not None:
            count = self.growing_count
            joined = self.growing_nearest[:count][self.growing_classes[:count] == code]
            kept = joined[~np.isnan(joined)]
            threshold = float(kept.mean() - kept.std())
            self.thresholds[code] = max(self.thresholds.get(code, 0.0), threshold)

    def _sweep(self, query: FloatArray) -> Alarm | None:
        if self.recent_count:
            recent = self.recent[: self.recent_count]
            differing = (np.abs(recent - query) > 1e-9).sum(axis=1)
            self.sweeps.append(bool(differing.min() <= SWEEP_FEATURES))
        self.recent[self.recent_next] = query
        self.recent_next = (self.recent_next + 1) % SWEEP_LOOKBACK
        self.recent_count = min(self.recent_count + 1, SWEEP_LOOKBACK)
        if len(self.sweeps) == SWEEP_WINDOW and sum(self.sweeps) >= SWEEP_WINDOW / 2:
            return Alarm(
                "",
                Detector.SWEEP,
                f"{sum(self.sweeps)} of its last {SWEEP_WINDOW} queries differ from an earlier "
                f"one in at most {SWEEP_FEATURES} features (a sweep)",
            )
        return None

    def volume(self, now: float, count: int) -> Alarm | None:
        """Count ``count`` queries at ``now`` (seconds); an alarm on a surge."""
        minute = int(now // 60)
        if minute != self.minute:
            if self.minute >= 0:
                # Minutes with no query at all count as zero.
                for _ in range(min(minute - self.minute - 1, 60)):
                    self.usual_rate *= 1 - VOLUME_SMOOTHING
                self.usual_rate += VOLUME_SMOOTHING * (self.minute_count - self.usual_rate)
                if self.minutes_seen == 0:
                    self.usual_rate = float(self.minute_count)
                self.minutes_seen += minute - self.minute
            self.minute, self.minute_count = minute, 0
        self.minute_count += count
        if self.minutes_seen < VOLUME_HISTORY_MINUTES:
            return None
        limit = self.settings.volume_factor * max(self.usual_rate, VOLUME_FLOOR)
        if self.minute_count > limit:
            return Alarm(
                "",
                Detector.VOLUME,
                f"{self.minute_count} queries this minute, over {self.settings.volume_factor:g} "
                f"times its usual {self.usual_rate:.1f} per minute",
            )
        return None

    def _outlier_share(self, flagged: bool) -> Alarm | None:
        self.outliers.append(flagged)
        count = sum(self.outliers)
        if count >= self.outlier_alarm_count:
            return Alarm(
                "",
                Detector.OUTLIER_SHARE,
                f"{count} of its last {len(self.outliers)} queries are out of distribution "
                f"(in-distribution traffic: {self.settings.outlier_rate:g} of them)",
            )
        return None

    def observe(self, query: FloatArray, flagged: bool = False) -> list[Alarm] | None:
        """Add one query (standardised, NaN-free; ``flagged`` by the outlier check) to
        every detector but the distance test, which waits for the answer's class; None
        for an exact repeat (skipped)."""
        if self._repeat(query):
            return None
        found: list[Alarm] = []
        detectors = self.settings.detectors
        if Detector.OUTLIER_SHARE in detectors:
            alarm = self._outlier_share(flagged)
            if alarm is not None:
                found.append(alarm)
        if Detector.SWEEP in detectors:
            alarm = self._sweep(query)
            if alarm is not None:
                found.append(alarm)
        return found


class Prober:
    """Every client's stream, bounded in number (least recently seen forgotten)."""

    def __init__(self, mean: FloatArray, std: FloatArray, settings: Settings) -> None:
        self.settings = settings
        self.mean = mean
        # A constant feature has no scale; any change in it counts as one standard unit.
        self.scale = np.where(std > 0, std, 1.0)
        self.clients: collections.OrderedDict[str, ClientStream] = collections.OrderedDict()

    def stream(self, client: str) -> ClientStream:
        """The client's stream, created (and the oldest evicted) as needed."""
        found = self.clients.get(client)
        if found is None:
            found = ClientStream(self.mean.size, self.settings)
            self.clients[client] = found
            if len(self.clients) > self.settings.max_clients:
                self.clients.popitem(last=False)
        else:
            self.clients.move_to_end(client)
        return found

    def _standard(self, rows: FloatArray) -> FloatArray:
        return np.asarray((np.where(np.isnan(rows), self.mean, rows) - self.mean) / self.scale)

    def observe(
        self,
        client: str,
        rows: FloatArray,
        now: float,
        flagged: FloatArray | None = None,
        labels: Sequence[str | None] | None = None,
    ) -> list[Alarm]:
        """Both steps at once: ``observe_request`` then ``observe_answer``."""
        alarms, fresh = self.observe_request(client, rows, now, flagged)
        return alarms + self.observe_answer(client, rows, fresh, labels, now)

    def observe_request(
        self, client: str, rows: FloatArray, now: float, flagged: FloatArray | None = None
    ) -> tuple[list[Alarm], BoolArray]:
        """Add a request's rows (rows x numeric features, NaN for missing), with which of
        them the outlier check flagged, to every detector but the distance test; with
        which rows are not exact repeats (for ``observe_answer``)."""
        stream = self.stream(client)
        alarms: list[Alarm] = []
        if Detector.VOLUME in self.settings.detectors:
            alarm = stream.volume(now, max(1, rows.shape[0]))
            if alarm is not None:
                alarms.append(alarm)
        marks = flagged if flagged is not None else np.zeros(rows.shape[0], dtype=bool)
        fresh = np.zeros(rows.shape[0], dtype=bool)
        for index, (query, mark) in enumerate(zip(self._standard(rows), marks, strict=True)):
            found = stream.observe(np.ascontiguousarray(query), bool(mark))
            if found is not None:
                fresh[index] = True
                alarms.extend(found)
        return self._quieted(client, stream, alarms, now), fresh

    def observe_answer(
        self,
        client: str,
        rows: FloatArray,
        fresh: BoolArray,
        labels: Sequence[str | None] | None,
        now: float,
    ) -> list[Alarm]:
        """The distance test on the ``fresh`` rows, each in the growing set of the class
        the model predicted for it (``labels``, one per row; None: no class read)."""
        if Detector.DISTANCE_DISTRIBUTION not in self.settings.detectors:
            return []
        stream = self.stream(client)
        named = list(labels) if labels is not None and len(labels) == len(rows) else None
        alarms: list[Alarm] = []
        for index, query in enumerate(self._standard(rows)):
            if not fresh[index]:
                continue
            code = stream.class_code(named[index] if named is not None else None)
            alarm = stream.distance(np.ascontiguousarray(query), code)
            if alarm is not None:
                alarms.append(alarm)
        return self._quieted(client, stream, alarms, now)

    def _quieted(
        self, client: str, stream: ClientStream, alarms: list[Alarm], now: float
    ) -> list[Alarm]:
        fresh = []
        for alarm in _first_per_detector(alarms):
            last = stream.alarmed.get(alarm.detector)
            if last is None or now - last >= self.settings.quiet_after_alarm:
                stream.alarmed[alarm.detector] = now
                fresh.append(alarm)
        return _named(client, fresh)


def _first_per_detector(alarms: Iterable[Alarm]) -> list[Alarm]:
    seen: set[Detector] = set()
    kept = []
    for alarm in alarms:
        if alarm.detector not in seen:
            seen.add(alarm.detector)
            kept.append(alarm)
    return kept


def _named(client: str, alarms: list[Alarm]) -> list[Alarm]:
    return [dataclasses.replace(alarm, client=client) for alarm in alarms]


def memory_bytes(settings: Settings, width: int) -> int:
    """An upper bound of one client's summary (the two matrices dominate)."""
    return (
        8 * width * (settings.memory + SWEEP_LOOKBACK)
        + 80 * settings.memory
        + 1024
        + 8 * 64 * MAX_CLASSES
    )
