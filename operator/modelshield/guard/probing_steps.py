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
client: ``(LOOKBACK + RECENT_STEPS)`` rows of floats.

``TOLERANCE`` is wide enough for noise of up to about a tenth of the step added to each
query; with noise of half the step ("query blinding", Chen et al.) the differences spread
like natural ones and the detector misses it (measured in bench/runtime_defences_evaluation).
Queries
whose parent is more than ``LOOKBACK`` distinct queries back are compared with the wrong
neighbour.
"""

from __future__ import annotations

import collections

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


class FixedSteps:
    """One client's fixed-step summary (bounded: ``LOOKBACK + RECENT_STEPS`` rows)."""

    def __init__(self, width: int) -> None:
        self.rows = np.empty((LOOKBACK, width))
        self.count = 0
        self.next = 0
        self.steps = np.empty((RECENT_STEPS, width))
        self.steps_count = 0
        self.steps_next = 0
        self.marks: collections.deque[bool] = collections.deque(maxlen=WINDOW)

    def observe(self, query: FloatArray) -> str | None:
        """Add one distinct query (standard units); the alarm's reason, if it raises one."""
        if self.count:
            kept = self.rows[: self.count]
            nearest = kept[int(((kept - query) ** 2).sum(axis=1).argmin())]
            self.marks.append(self._is_step(np.abs(query - nearest)))
        self.rows[self.next] = query
        self.next = (self.next + 1) % LOOKBACK
        self.count = min(self.count + 1, LOOKBACK)
        steps = sum(self.marks)
        if steps >= ALARM_COUNT:
            return (
                f"{steps} of its last {len(self.marks)} queries each move an earlier query "
                f"by one fixed step per feature (Jacobian-based augmentation)"
            )
        return None

    def _is_step(self, differences: FloatArray) -> bool:
        largest = float(differences.max())
        if largest <= 0:
            return False
        moved = differences > MOVED_OF_LARGEST * largest
        if int(moved.sum()) < MIN_MOVED:
            return False
        size = differences[moved]
        # The upper median: np.median costs ~10x more on a row this short, and either
        # middle value serves as the step size here.
        median = float(np.partition(size, size.size // 2)[size.size // 2])
        equal = float((np.abs(size - median) <= TOLERANCE * median).mean()) >= SHARE
        repeated = False
        if self.steps_count:
            earlier = self.steps[: self.steps_count][:, moved]
            close = np.abs(earlier - size) <= TOLERANCE * size
            repeated = bool((close.mean(axis=1) >= SHARE).any())
        self.steps[self.steps_next] = differences
        self.steps_next = (self.steps_next + 1) % RECENT_STEPS
        self.steps_count = min(self.steps_count + 1, RECENT_STEPS)
        return equal or repeated


def memory_bytes(width: int) -> int:
    """An upper bound of one client's fixed-step summary."""
    return 8 * width * (LOOKBACK + RECENT_STEPS) + 8 * WINDOW + 512
