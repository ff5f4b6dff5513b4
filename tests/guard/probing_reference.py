"""The probing detectors' formulas as first written, before they were made faster: the
equivalence tests feed the same streams to these and to the guard's and compare every
decision. Not used by the guard."""

from __future__ import annotations

import collections

import numpy as np

from modelshield.guard import probing_steps
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
