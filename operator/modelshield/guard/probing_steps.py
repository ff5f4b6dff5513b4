"""The FixedSteps probing detector: queries a fixed step away from earlier ones. Pure (numpy).

Jacobian-based dataset augmentation (Papernot et al. 2017, "Practical Black-Box Attacks
against Machine Learning"), the substitute-training attack PRADA was built against, grows
its query set as S' = S ∪ {x + λ·sign(∂F/∂x) : x ∈ S}: every new query is an earlier one
moved by the same amount λ in every feature it moves, up or down. Natural rows are not:
the per-feature differences between a row and its nearest earlier one are spread out (in
standard units, roughly half-normal). Stateful defences against query-based attacks
(Chen, Carlini and Wagner 2019; Park et al. 2025 on the differences between successive
queries) keep the same kind of per-client history; this one reads the differences.

For each distinct query, the detector takes its nearest neighbour (Euclidean, standard
units) among the client's last ``LOOKBACK`` distinct queries and the absolute per-feature
differences ``a``. The features it *moved* are those with ``a`` above ``MOVED_OF_LARGEST``
of the largest; with at least ``MIN_MOVED`` of them the query is a **step** when either

- at least ``SHARE`` of the moved features lie within ``TOLERANCE`` (relative) of their
  median: one step size in the guard's standard units (an attacker scaling features by the
  training data's spread, as a standardising pipeline does), or
- at least ``SHARE`` of them equal, within ``TOLERANCE``, the same features' differences
  of one of the last ``RECENT_STEPS`` queries: the attacker's own per-feature step sizes,
  whatever its scale (raw units, or its own estimate of the spread), repeating.

An alarm when ``ALARM_COUNT`` of the last ``WINDOW`` distinct queries are steps. Memory per
client: ``(LOOKBACK + RECENT_STEPS)`` rows of floats and one float per kept row.

``TOLERANCE`` is wide enough for noise of up to about a tenth of the step added to each
query; with noise of half the step ("query blinding", Chen et al.) the differences spread
like natural ones and the detector misses it (measured in bench/runtime_defences_evaluation).
Queries
whose parent is more than ``LOOKBACK`` distinct queries back are compared with the wrong
neighbour.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from modelshield.guard.outliertypes import FloatArray

LOOKBACK = 256
RECENT_STEPS = 16
MOVED_OF_LARGEST = 0.1
MIN_MOVED = 5
TOLERANCE = 0.25
SHARE = 0.8
WINDOW = 50
ALARM_COUNT = 5


#: A bound of the rounding error of the screened half squared distances below and of the
#: exact squared distances, per feature, relative to the largest squared norm plus the
#: query's: an n-term sum or dot product errs by at most about ``n * eps`` of the sum of
#: its terms' magnitudes; the screen's and the exact computation's errors add up to three
#: such terms, and this is eight.
_ERROR_PER_FEATURE = 8 * float(np.finfo(np.float64).eps)
#: Absolute slack for values near zero (subnormal squares lose relative precision).
_ERROR_FLOOR = 1e-300
#: Matrices of fewer values are searched whole: the screen's ten numpy calls cost more
#: (measured per search: 256 x 20 whole 22.5 us, screened 11.2; 64 x 30 9.3 and 10.2;
#: 32 x 20 6.9 and 9.0).
SCREEN_FROM = 2048


def nearest(
    rows: FloatArray,
    half_norms: FloatArray,
    query: FloatArray,
    *,
    distance: bool = True,
    query_norm: float | None = None,
    largest_half_norm: float | None = None,
) -> tuple[int, float]:
    """The index of the row nearest to ``query`` and its squared distance, exactly as
    ``((rows - query) ** 2).sum(axis=1)`` and its ``argmin`` give them (the first of ties).

    That expression costs a subtraction, a square and a short-row reduction over the whole
    matrix per query. Here one matrix-vector product screens the rows: ``|r|^2 / 2 - r.q``
    (``half_norms``: the rows' squared norms halved, kept as they are added) orders the
    rows as their distances do, and only the rows within the rounding errors of the
    smallest are computed exactly, by the expression (each row's sum is its own, so the
    subset, or the one row, gives the same values). Non-finite values fall back to the
    whole expression, and small matrices (below ``SCREEN_FROM`` values) are searched
    whole. Without ``distance`` the squared distance of a lone screened candidate is not
    computed (NaN): a caller that needs the row only saves three numpy calls. A caller that
    has them may pass ``float(query @ query)`` and an upper bound of ``half_norms.max()``
    (a larger bound widens the screen's slack: more candidates, the same answer), a numpy
    call each."""
    if rows.size >= SCREEN_FROM:
        screened = half_norms - rows @ query
        best = int(screened.argmin())
        lowest = float(screened[best])
        if query_norm is None:
            query_norm = float(query @ query)
        if largest_half_norm is None:
            largest_half_norm = float(half_norms.max())
        largest = 2 * largest_half_norm
        slack = _ERROR_PER_FEATURE * (query.size + 2) * (largest + query_norm) + _ERROR_FLOOR
        if math.isfinite(lowest) and math.isfinite(slack):
            close = screened <= lowest + slack
            if np.count_nonzero(close) == 1:  # the usual case: that row alone
                if not distance:
                    return best, math.nan
                return best, float(np.add.reduce((rows[best] - query) ** 2))
            candidates = np.flatnonzero(close)
            exact = np.add.reduce((rows[candidates] - query) ** 2, axis=1)
            chosen = int(exact.argmin())
            return int(candidates[chosen]), float(exact[chosen])
    # np.add.reduce is what ndarray.sum calls, without its Python wrapper (~1 us here).
    exact = np.add.reduce((rows - query) ** 2, axis=1)
    best = int(exact.argmin())
    return best, float(exact[best])


def _needed(count: int) -> int:
    """The fewest of ``count`` values whose share reaches ``SHARE`` (the share computed as
    ``k / count``, exactly as a mean of booleans is)."""
    return next(k for k in range(count + 1) if k / count >= SHARE)


class FixedSteps:
    """One client's fixed-step summary (bounded: ``LOOKBACK + RECENT_STEPS`` rows)."""

    def __init__(self, width: int) -> None:
        self.rows = np.empty((LOOKBACK, width))
        #: Each row's squared norm halved (for ``nearest``).
        self.half_norms = np.empty(LOOKBACK)
        #: The largest of the kept ``half_norms`` (``nearest``'s screen).
        self.largest_half_norm = -math.inf
        self.count = 0
        self.next = 0
        self.steps = np.empty((RECENT_STEPS, width))
        self.steps_count = 0
        self.steps_next = 0
        self.marks: collections.deque[bool] = collections.deque(maxlen=WINDOW)
        #: How many of ``marks`` are True (kept as they come and go: no sum per query).
        self.marked = 0
        self._needed = [0, *(_needed(count) for count in range(1, width + 1))]

    def observe(self, query: FloatArray) -> str | None:
        """Add one distinct query (standard units); the alarm's reason, if it raises one."""
        norm = float(query @ query)
        if self.count:
            count = self.count
            index, _ = nearest(
                self.rows[:count],
                self.half_norms[:count],
                query,
                distance=False,
                query_norm=norm,
                largest_half_norm=self.largest_half_norm,
            )
            mark = self._is_step(np.abs(query - self.rows[index]))
            marks = self.marks
            if len(marks) == WINDOW and marks[0]:
                self.marked -= 1
            marks.append(mark)
            self.marked += mark
        half = norm / 2
        slot = self.next
        replaced = float(self.half_norms[slot]) if self.count == LOOKBACK else -math.inf
        self.rows[slot] = query
        self.half_norms[slot] = half
        self.next = (slot + 1) % LOOKBACK
        self.count = min(self.count + 1, LOOKBACK)
        # The kept rows' largest, exactly: computed again only when the new norm is above
        # it or the overwritten one was it (either NaN too), about 1 query in LOOKBACK.
        if not half <= self.largest_half_norm or not replaced < self.largest_half_norm:
            self.largest_half_norm = float(self.half_norms[: self.count].max())
        steps = self.marked
        if steps >= ALARM_COUNT:
            return (
                f"{steps} of its last {len(self.marks)} queries each move an earlier query "
                f"by one fixed step per feature (Jacobian-based augmentation)"
            )
        return None

    def _is_step(self, differences: FloatArray) -> bool:
        # Plain floats: on a row this short, each numpy call costs more than its arithmetic.
        values = differences.tolist()
        largest = max(values)
        if largest <= 0:
            return False
        cut = MOVED_OF_LARGEST * largest
        size = [value for value in values if value > cut]
        count = len(size)
        if count < MIN_MOVED:
            return False
        ordered = sorted(size)
        # The upper median (either middle value serves as the step size here).
        middle = count // 2
        median = ordered[middle]
        margin = TOLERANCE * median
        needed = self._needed[count]
        # The values within the margin of the median are one run of the sorted values
        # around it (|v - median| falls towards the median and rises past it, rounding
        # included): walk out from the median instead of testing every value.
        low, high = middle, middle + 1
        while low > 0 and abs(ordered[low - 1] - median) <= margin:
            low -= 1
        while high < count and abs(ordered[high] - median) <= margin:
            high += 1
        equal = high - low >= needed
        repeated = False
        # Either makes a step: the comparison with earlier steps only when the first is not.
        if not equal and self.steps_count:
            earlier = self.steps[: self.steps_count]
            close = np.abs(earlier - differences) <= TOLERANCE * differences
            # The moved features' close ones, counted by a product with their 0/1 weights
            # (exact: small whole numbers) instead of selecting those columns first.
            weights = (differences > cut).astype(np.float64)
            repeated = bool(np.logical_or.reduce(close @ weights >= needed))
        self.steps[self.steps_next] = differences
        self.steps_next = (self.steps_next + 1) % RECENT_STEPS
        self.steps_count = min(self.steps_count + 1, RECENT_STEPS)
        return equal or repeated


def memory_bytes(width: int) -> int:
    """An upper bound of one client's fixed-step summary."""
    return 8 * width * (LOOKBACK + RECENT_STEPS) + 8 * LOOKBACK + 8 * WINDOW + 512
