"""How the drift evaluation draws references and windows: the data, the designs, the scenarios.

A *split* gives one reference (the profile is built from it) and the windows scored
against it. Three designs:

- ``overlapping`` (the first evaluation's): the reference is the first part of a random
  permutation, each window drawn without replacement from the held-out rest, afresh for
  every window. Windows of one split overlap (20 windows of 250 from breast cancer's 284
  held-out rows share 88 % of their rows), so they are far from independent.
- ``disjoint``: the same reference, the held-out rows cut into disjoint windows (as many
  as fit: breast cancer at 250 rows, one). Reference and window are then a random
  partition of exchangeable rows: the clean null exactly (a permutation test's).
- ``resampled``: the data set's rows are the population; the reference and every window
  are drawn from all of them with replacement (independent and identically distributed
  given the population), so a split gives any number of independent windows.

Windows of one split still share the reference in every design: the split, not the
window, is the independent unit (``proportions.interval`` accounts for that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn import datasets as sklearn_datasets  # type: ignore[import-untyped]

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
DESIGNS = ("disjoint", "resampled", "overlapping")
SCENARIOS = ("clean", "mean 0.25σ", "mean 0.5σ", "10% missing", "label subpop.", "binary +30pt")


@dataclass(frozen=True)
class Data:
    """A data set with one binarised feature."""

    name: str
    values: FloatArray
    labels: NDArray[np.int64]
    binary: int
    reference_rows: int
    window_sizes: tuple[int, ...]
    subpopulation: Callable[[NDArray[np.int64]], NDArray[np.bool_]]


def load() -> list[Data]:
    """Breast cancer and digits, each with one feature binarised at its median."""
    result = []
    cancer = sklearn_datasets.load_breast_cancer()
    values = np.array(cancer.data, dtype=np.float64)
    values[:, 0] = (values[:, 0] > np.median(values[:, 0])).astype(np.float64)
    result.append(
        Data("breast_cancer", values, cancer.target, 0, 285, (100, 250), lambda y: y == 1)
    )
    digits = sklearn_datasets.load_digits()
    values = np.array(digits.data, dtype=np.float64)
    nonzero = (values > 0).mean(axis=0)
    binary = int(np.argmin(np.abs(nonzero - 0.5)))
    values[:, binary] = (values[:, binary] > 0).astype(np.float64)
    result.append(
        Data("digits", values, digits.target, binary, 797, (100, 250, 1000), lambda y: y < 5)
    )
    return result


@dataclass(frozen=True)
class Split:
    """One reference and where its windows come from."""

    design: str
    data: Data
    reference: FloatArray
    pool: IndexArray
    """Rows windows are drawn from: the held-out rows, or every row (resampled)."""

    def windows_per_cell(self, size: int, wanted: int) -> int:
        """How many windows of one cell this split gives (disjoint: as many as fit)."""
        if self.design == "disjoint":
            return min(wanted, self.pool.size // size)
        return wanted

    def rows(self, chosen: IndexArray, size: int, rng: np.random.Generator) -> Iterator[IndexArray]:
        """Row indexes of successive windows drawn from chosen (a subset of the pool)."""
        if self.design == "resampled":
            while True:
                yield rng.choice(chosen, size, replace=True)
        elif self.design == "disjoint" and chosen.size >= size:
            order = rng.permutation(chosen)
            for start in range(0, order.size - size + 1, size):
                yield order[start : start + size]
        else:
            # Overlapping windows; and a subpopulation smaller than a window (drawn with
            # replacement, as a small population would be sampled).
            while True:
                yield rng.choice(chosen, size, replace=chosen.size < size)


def split(design: str, data: Data, rng: np.random.Generator) -> Split:
    """A reference and its window pool, drawn as the design says."""
    rows = data.values.shape[0]
    if design == "resampled":
        reference = data.values[rng.integers(0, rows, data.reference_rows)]
        return Split(design, data, reference, np.arange(rows))
    order = rng.permutation(rows)
    return Split(
        design, data, data.values[order[: data.reference_rows]], order[data.reference_rows :]
    )


def windows(
    scenario: str, split: Split, size: int, count: int, rng: np.random.Generator
) -> Iterator[tuple[FloatArray, int | None]]:
    """count windows of the scenario and the feature each changed (None: the subpopulation)."""
    data, reference = split.data, split.reference
    if scenario == "label subpop.":
        chosen = split.pool[data.subpopulation(data.labels[split.pool])]
        for _, rows in zip(range(count), split.rows(chosen, size, rng), strict=False):
            yield data.values[rows].copy(), None
        return
    continuous = [
        j
        for j in range(data.values.shape[1])
        if j != data.binary and np.unique(reference[:, j]).size > 10
    ]
    for _, rows in zip(range(count), split.rows(split.pool, size, rng), strict=False):
        window: FloatArray = data.values[rows].copy()
        feature: int | None = None
        if scenario.startswith("mean"):
            feature = int(rng.choice(continuous))
            sigma = 0.25 if "0.25" in scenario else 0.5
            window[:, feature] += sigma * reference[:, feature].std()
        elif scenario == "10% missing":
            feature = int(rng.integers(0, window.shape[1]))
            window[rng.choice(size, size // 10, replace=False), feature] = np.nan
        elif scenario == "binary +30pt":
            zeros = np.flatnonzero(window[:, data.binary] == 0)
            flip = min(zeros.size, round(0.3 * size))
            window[rng.choice(zeros, flip, replace=False), data.binary] = 1.0
            feature = data.binary
        elif scenario == "clean":
            feature = int(rng.choice(continuous))  # the oracle rows' feature
        yield window, feature
