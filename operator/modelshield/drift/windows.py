"""Tumbling windows of fixed-size histograms keyed to the reference's bins.

A window is one ``int64`` counts array (see ``layouts``) and a row count: memory does not
grow with traffic, and adding a batch is one ``np.searchsorted`` per numeric feature
column plus one ``np.bincount`` for the whole batch, with no Python in the per-value path.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import layouts, payloads, profiles


def encode(
    layout: layouts.Layout, numeric: NDArray[np.float64], categorical: NDArray[np.intp]
) -> NDArray[np.intp]:
    """Features x rows of flat slot indices into the layout's counts array.

    Then one more row per feature with a support: its unseen slot where the value is off
    the support, the spare slot where it is on it (or missing).
    """
    rows = numeric.shape[0]
    numeric_count = numeric.shape[1]
    watched = numeric_count + categorical.shape[1]
    slots = np.empty((watched + len(layout.discrete), rows), dtype=np.intp)
    columns = np.ascontiguousarray(numeric.T)
    for j, upper in enumerate(layout.uppers):
        slots[j] = profiles.bin_numeric(upper, columns[j])
    numeric_slots = slots[:numeric_count]
    # Bins start after the missing slot; NaN (and infinities, missing in the profile too)
    # went past the ends and are moved back to 0.
    numeric_slots += 1
    finite = np.isfinite(columns)
    numeric_slots[~finite] = layouts.MISSING_SLOT
    slots[numeric_count:watched] = categorical.T
    slots[:watched] += layout.offsets[:, None]
    for n, (j, support) in enumerate(zip(layout.discrete, layout.supports, strict=True)):
        off = support.off(columns[j], finite[j])
        slots[watched + n] = np.where(off, layout.unseen_slots[n], layout.spare_slot)
    return slots


class TumblingWindow:
    """Counts rows into consecutive windows of `size` rows; hands back each full one."""

    def __init__(self, layout: layouts.Layout, size: int) -> None:
        """Start empty."""
        if size < 1:
            raise ValueError("a window holds at least one row")
        self.layout = layout
        self.size = size
        self.rows = 0
        self.completed = 0
        self._counts = np.zeros(layout.total_slots, dtype=np.int64)
        self._sums = np.zeros(layout.total_slots, dtype=np.float64)
        outside = np.zeros(layout.total_slots, dtype=np.bool_)
        for group in layout.groups:
            if group.numeric:
                outside[group.slots[:, layouts.BELOW_SLOT]] = True
                outside[group.slots[:, -1]] = True
        self._outside = outside

    @property
    def fill(self) -> float:
        """How full the current window is, from 0 to 1."""
        return self.rows / self.size

    def add(self, batch: payloads.Batch) -> list[layouts.CountArray]:
        """Count a batch; return the counts of every window it completed, oldest first."""
        slots = encode(self.layout, batch.numeric, batch.categorical)
        return self.add_slots(slots)

    def add_slots(self, slots: NDArray[np.intp]) -> list[layouts.CountArray]:
        """Count encoded rows (features x rows); return the completed windows' counts."""
        return [counts for counts, _ in self.add_rows(slots, None)]

    def add_rows(
        self, slots: NDArray[np.intp], numeric: NDArray[np.float64] | None
    ) -> list[tuple[layouts.CountArray, NDArray[np.float64]]]:
        """Count encoded rows; return (counts, out-of-range sums) of each completed window.

        numeric (rows x numeric features, the values that were encoded) adds each
        out-of-range value to its slot's sum, so that a window knows how far out they are.
        """
        completed = []
        total = slots.shape[1]
        numeric_count = 0 if numeric is None else numeric.shape[1]
        start = 0
        while start < total:
            take = min(self.size - self.rows, total - start)
            chunk = slots[:, start : start + take]
            self._counts += np.bincount(chunk.ravel(), minlength=self.layout.total_slots)
            if numeric is not None and numeric_count:
                numeric_slots = chunk[:numeric_count]
                outside = self._outside[numeric_slots]
                if outside.any():
                    values = numeric[start : start + take].T
                    np.add.at(self._sums, numeric_slots[outside], values[outside])
            self.rows += take
            start += take
            if self.rows == self.size:
                completed.append((self._counts, self._sums))
                self._counts = np.zeros(self.layout.total_slots, dtype=np.int64)
                self._sums = np.zeros(self.layout.total_slots, dtype=np.float64)
                self.rows = 0
                self.completed += 1
        return completed
