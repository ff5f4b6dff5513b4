"""Per-client detection of extraction and inversion probing. Pure (numpy, scipy).

Each client's recent queries are kept in a bounded summary (``ClientStream``; at most
``memory`` queries, and at most ``max_clients`` clients, the least recently seen
forgotten first). Queries are compared in the reference profile's standard units (each
feature divided by its reference standard deviation). The detectors:

- **DistanceDistribution** (PRADA, Juuti et al. 2019): each new query's minimum distance
  to the client's growing set of earlier queries joins a set D; a query further than the
  set's threshold (the largest mean − std of D seen) joins the growing set. Once D holds
  ``min_queries`` distances, a Shapiro–Wilk W of log D (values beyond 3 standard
  deviations removed; PRADA tests D itself, whose right skew made benign tabular streams
  fail it here) below ``normality_threshold`` is an alarm: natural queries give roughly
  normal distances, synthetic ones (random, or small steps around seeds) do not. PRADA
  keeps a growing set per predicted class; the guard does not read the class from the
  answer and keeps one. Exact repeats are skipped (they tell an attacker nothing new), and
  so are near-duplicates (nearer than the profile's radius to a growing-set row), at most
  ``NEAR_DUPLICATES_PER_ROW`` of each row among the last ``memory`` queries.
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
- **FixedSteps** (``probing_steps``): queries that move an earlier one by one fixed step per
  feature, as Jacobian-based augmentation does.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import enum
import hashlib
import math
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from modelshield.guard import probing_steps
from modelshield.guard.outliertypes import FloatArray


class Detector(enum.StrEnum):
    """The detectors (as the policy names them)."""

    DISTANCE_DISTRIBUTION = "DistanceDistribution"
    SWEEP = "Sweep"
    OUTLIER_SHARE = "OutlierShare"
    VOLUME = "Volume"
    FIXED_STEPS = "FixedSteps"


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
#: PRADA leaves out at most this many near-duplicates of one growing-set row among the
#: client's last ``memory`` distinct queries; the rest are tested like any query. Without a
#: bound, an attacker probing around a few seeds within the radius was never tested (the
#: security review of issue 15: steps of 0.1 std with noise around 10 seeds). A benign
#: client re-sending its real rows with noise spreads its copies over its rows (breast
#: cancer's 171 held-out rows in random order: ~6 per row per 1,000 queries).
NEAR_DUPLICATES_PER_ROW = 20


#: Shapiro-Wilk's W as ``stats.shapiro`` computes it, without the wrapper that checks its
#: argument's axes, NaNs and masks (~150 us of each ~170 us call; the distances below are
#: one finite axis, and anything else goes to ``stats.shapiro`` itself).
_shapiro_w = getattr(stats.shapiro, "__wrapped__", stats.shapiro)


def _shapiro(values: FloatArray) -> float:
    if np.logical_and.reduce(np.isfinite(values)):
        return float(_shapiro_w(values)[0])
    return float(stats.shapiro(values).statistic)


class Recent:
    """The last ``capacity`` floats in arrival order, readable as one numpy array without
    a copy: each is stored twice, ``capacity`` apart, so the window is always contiguous
    (a deque had to be copied into an array for each test)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values = np.empty(2 * capacity)
        self.size = 0
        self.next = 0

    def append(self, value: float) -> None:
        """Add one value, forgetting the oldest past ``capacity``."""
        self.values[self.next] = value
        self.values[self.next + self.capacity] = value
        self.next = (self.next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def __len__(self) -> int:
        return self.size

    def array(self) -> FloatArray:
        """The values, oldest first (a view: valid until the next ``append``)."""
        start = (self.next - self.size) % self.capacity
        return self.values[start : start + self.size]


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
    #: DistanceDistribution leaves out a query whose nearest distance to the growing set is
    #: below this (standard units; the outlier model's ``near_duplicate``): 0 tests all.
    near_duplicate: float = 0.0
    #: ... and leaves out at most this many of them per growing-set row among the last
    #: ``memory`` distinct queries (``NEAR_DUPLICATES_PER_ROW``).
    near_duplicates_per_row: int = NEAR_DUPLICATES_PER_ROW

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
        #: Each growing row's squared norm halved (``probing_steps.nearest``).
        self.growing_half_norms = np.empty(memory)
        self.growing_count = 0
        self.growing_next = 0
        self.growing_distances = Recent(memory)
        #: Rows ever added to the growing set; each growing row's serial (which of them it
        #: was) and how many near-duplicates of it the last ``memory`` queries left out.
        self.grown = 0
        self.growing_serials = array.array("q", [-1]) * memory
        self.absorbed = array.array("l", [0]) * memory
        #: The last ``memory`` queries tested for distance: the serial of the growing row
        #: each was left out as a near-duplicate of, or -1 (a ring).
        self.exempted = array.array("q", [-1]) * memory
        self.exempted_next = 0
        self.threshold = 0.0
        self.distances = Recent(memory)
        self.since_test = 0
        self.seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.recent = np.empty((SWEEP_LOOKBACK, width))
        self.recent_count = 0
        self.recent_next = 0
        self.sweeps: collections.deque[bool] = collections.deque(maxlen=SWEEP_WINDOW)
        #: How many of ``sweeps`` and of ``outliers`` are True (kept as they come and go).
        self.sweep_count = 0
        self.outliers: collections.deque[bool] = collections.deque(maxlen=OUTLIER_WINDOW)
        self.outlier_count = 0
        self.outlier_alarm_count = settings.outlier_alarm_count
        self.alarmed: dict[Detector, float] = {}
        self.minute = -1
        self.minute_count = 0
        self.usual_rate = 0.0
        self.minutes_seen = 0
        self.fixed_steps = (
            probing_steps.FixedSteps(width) if Detector.FIXED_STEPS in settings.detectors else None
        )
        self.outlier_share_on = Detector.OUTLIER_SHARE in settings.detectors
        self.distance_on = Detector.DISTANCE_DISTRIBUTION in settings.detectors
        self.sweep_on = Detector.SWEEP in settings.detectors

    def _repeat(self, query: FloatArray) -> bool:
        key = hashlib.blake2b(query.tobytes(), digest_size=16).digest()
        if key in self.seen:
            self.seen.move_to_end(key)
            return True
        self.seen[key] = None
        if len(self.seen) > self.settings.memory:
            self.seen.popitem(last=False)
        return False

    def _distance(self, query: FloatArray) -> Alarm | None:
        if self.growing_count == 0:
            self._grow(query, None)
            return None
        count = self.growing_count
        row, squared = probing_steps.nearest(
            self.growing[:count], self.growing_half_norms[:count], query
        )
        # math.sqrt: the same correctly rounded root as np.sqrt, without a numpy call.
        nearest = math.sqrt(squared)
        if self.settings.near_duplicate > 0 and self._left_out(row, nearest):
            return None
        self.distances.append(nearest)
        if nearest > self.threshold:
            self._grow(query, nearest)
        self.since_test += 1
        if len(self.distances) < self.settings.min_queries or self.since_test < TEST_EVERY:
            return None
        self.since_test = 0
        # Natural minimum distances are right-skewed (roughly log-normal): the test reads
        # their logarithms, where benign streams look normal and synthetic ones, whose
        # distances pile up at a few step sizes, still do not.
        values = np.log(self.distances.array() + LOG_OFFSET)
        mean, std = values.mean(), values.std()
        trimmed = values[np.abs(values - mean) <= 3 * std] if std > 0 else values
        w = 0.0 if trimmed.size < 3 or np.ptp(trimmed) == 0 else _shapiro(trimmed)
        if w < self.settings.normality_threshold:
            return Alarm(
                "",
                Detector.DISTANCE_DISTRIBUTION,
                f"the distances between its last {values.size} queries are not normally "
                f"distributed (Shapiro-Wilk W {w:.3f} < {self.settings.normality_threshold})",
            )
        return None

    def _left_out(self, row: int, nearest: float) -> bool:
        """Whether a query at ``nearest`` from growing row ``row`` is left out of D as a
        near-duplicate; counts it in the window of the last ``memory`` queries either way.

        A near-duplicate of a query already in the growing set (closer than nearly any two
        distinct reference rows) says little about how the client explores: benign clients
        sending real rows with a little noise gave D two modes (near copies, new rows) that
        the normality test rejected. But only ``near_duplicates_per_row`` of them per row in
        the window: dense probing around a few seeds is tested again (the old code's
        catch)."""
        memory = self.settings.memory
        position = self.exempted_next
        oldest = self.exempted[position]
        if oldest >= 0 and self.growing_serials[oldest % memory] == oldest:
            # Still in the growing set (its slot not overwritten since): one fewer.
            self.absorbed[oldest % memory] -= 1
        self.exempted_next = (position + 1) % memory
        left_out = (
            nearest < self.settings.near_duplicate
            and self.absorbed[row] < self.settings.near_duplicates_per_row
        )
        if left_out:
            self.absorbed[row] += 1
            self.exempted[position] = self.growing_serials[row]
        else:
            self.exempted[position] = -1
        return left_out

    def _grow(self, query: FloatArray, nearest: float | None) -> None:
        slot = self.growing_next
        self.growing_serials[slot] = self.grown
        self.absorbed[slot] = 0
        self.grown += 1
        self.growing[self.growing_next] = query
        self.growing_half_norms[self.growing_next] = (query @ query) / 2
        self.growing_next = (self.growing_next + 1) % self.settings.memory
        self.growing_count = min(self.growing_count + 1, self.settings.memory)
        if nearest is not None:
            self.growing_distances.append(nearest)
            kept = self.growing_distances.array()
            self.threshold = max(self.threshold, float(kept.mean() - kept.std()))

    def _sweep(self, query: FloatArray) -> Alarm | None:
        if self.recent_count:
            recent = self.recent[: self.recent_count]
            # The reductions as ufuncs: ndarray.sum and .min are those same calls behind a
            # Python wrapper (~0.5 us each on arrays this small).
            differing = np.add.reduce(np.abs(recent - query) > 1e-9, axis=1)
            swept = bool(np.minimum.reduce(differing) <= SWEEP_FEATURES)
            if len(self.sweeps) == SWEEP_WINDOW and self.sweeps[0]:
                self.sweep_count -= 1
            self.sweeps.append(swept)
            self.sweep_count += swept
        self.recent[self.recent_next] = query
        self.recent_next = (self.recent_next + 1) % SWEEP_LOOKBACK
        self.recent_count = min(self.recent_count + 1, SWEEP_LOOKBACK)
        if len(self.sweeps) == SWEEP_WINDOW and self.sweep_count >= SWEEP_WINDOW / 2:
            return Alarm(
                "",
                Detector.SWEEP,
                f"{self.sweep_count} of its last {SWEEP_WINDOW} queries differ from an earlier "
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
        if len(self.outliers) == OUTLIER_WINDOW and self.outliers[0]:
            self.outlier_count -= 1
        self.outliers.append(flagged)
        self.outlier_count += flagged
        count = self.outlier_count
        if count >= self.outlier_alarm_count:
            return Alarm(
                "",
                Detector.OUTLIER_SHARE,
                f"{count} of its last {len(self.outliers)} queries are out of distribution "
                f"(in-distribution traffic: {self.settings.outlier_rate:g} of them)",
            )
        return None

    def observe(self, query: FloatArray, flagged: bool = False) -> list[Alarm]:
        """Add one query (standardised, NaN-free; ``flagged`` by the outlier check)."""
        if self._repeat(query):
            return []
        found: list[Alarm] = []
        if self.outlier_share_on:
            alarm = self._outlier_share(flagged)
            if alarm is not None:
                found.append(alarm)
        if self.distance_on:
            alarm = self._distance(query)
            if alarm is not None:
                found.append(alarm)
        if self.sweep_on:
            alarm = self._sweep(query)
            if alarm is not None:
                found.append(alarm)
        if self.fixed_steps is not None:
            reason = self.fixed_steps.observe(query)
            if reason is not None:
                found.append(Alarm("", Detector.FIXED_STEPS, reason))
        return found


class Prober:
    """Every client's stream, bounded in number (least recently seen forgotten)."""

    def __init__(self, mean: FloatArray, std: FloatArray, settings: Settings) -> None:
        self.settings = settings
        self.mean = mean
        # A constant feature has no scale; any change in it counts as one standard unit.
        self.scale = np.where(std > 0, std, 1.0)
        #: Whether the outlier score's standard units of a row (``(x - mean) / std`` of
        #: every feature, when every one varies and all are finite) are this prober's:
        #: its scale is the std itself (no constant feature).
        self.takes_scores_units = bool(np.array_equal(self.scale, std))
        self.count_volume = Detector.VOLUME in settings.detectors
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

    def observe(
        self,
        client: str,
        rows: FloatArray,
        now: float,
        flagged: Sequence[bool] | NDArray[np.bool_] | None = None,
        standard: FloatArray | None = None,
    ) -> list[Alarm]:
        """Add a request's rows (rows x numeric features, NaN for missing), with which of
        them the outlier check flagged; ``standard``: the same rows in this prober's
        standard units when the caller has them already (``outlierscoring.Scores.standard``
        when ``takes_scores_units``)."""
        stream = self.stream(client)
        if standard is None:
            standard = (np.where(np.isnan(rows), self.mean, rows) - self.mean) / self.scale
        alarms: list[Alarm] = []
        if self.count_volume:
            alarm = stream.volume(now, max(1, rows.shape[0]))
            if alarm is not None:
                alarms.append(alarm)
        marks = flagged if flagged is not None else [False] * rows.shape[0]
        for query, mark in zip(standard, marks, strict=True):
            alarms.extend(stream.observe(np.ascontiguousarray(query), bool(mark)))
        if not alarms:
            return alarms
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
    steps = probing_steps.memory_bytes(width) if Detector.FIXED_STEPS in settings.detectors else 0
    # 64 bytes a query for D, the growing distances and the repeats' keys; 24 for the
    # near-duplicate window (serials, counts, ring).
    return 8 * width * (settings.memory + SWEEP_LOOKBACK) + 88 * settings.memory + 1024 + steps
