"""The data-set decision: one p-value per window from its features' p-values.

Each watched feature has a calibrated p-value (``calibration.NullTable.p_values``). The
monitor's per-feature alarms stay Bonferroni's (each feature's threshold is its null's
``1 - alpha / F`` quantile); the data-set p-value combines all of them with the
*harmonic mean p-value* (Wilson 2019, PNAS 116:1195), valid under the dependence real
features have (digits' neighbouring pixels, breast cancer's radius, perimeter and area)
for the small rates a monitor declares. One small p-value among uniform ones gives about
Bonferroni's ``F x min p`` (among p-values of 1, features that cannot move, somewhat
more: 0.096 rather than 0.064 for 1e-3 among 64); many moderately small ones, a
subpopulation that moves many features a little, give a smaller data-set p-value than
any one of them alone. So a feature may alarm while the data-set p-value is just over the
rate, and the data set drift while no single feature alarms.

Measured on the evaluation's windows (``bench/drift_evaluation.py``, digits at 100 rows,
the same 400 windows as the Bonferroni tables): the label subpopulation found with PSI
30.0 -> 34.8 %, Jensen-Shannon 43.8 -> 52.2 %, KS 69.8 -> 77.5 %, the other cells within a
point. Combinations that assume independent features are not valid here: Fisher's
combined test, its null chi-square with 2F degrees of freedom, alarmed on 8 % to 15 % of
clean breast cancer windows at a declared 1 %.

The harmonic mean ``H = F / sum(1 / p)`` of F independent uniform p-values is a little
smaller than a p-value (Wilson's raw test at ``H < alpha`` alarms on about 1.1 % at 1 %);
its p-value here is the share of simulated ``mean(1 / p)`` of F independent uniforms at or
over the window's (``NULL_SAMPLES`` of them, seeded, made once per F), and beyond the
simulated tail Landau's (``1 / (x - ln F - 0.874)``, the law of a mean of 1/p) anchored
to it. A missing p-value (a statistic that does not apply, a feature of the other stream)
counts as 1: no evidence. p-values of discrete statistics are at least uniform (a flat
null gives 1 more often), which keeps the decision conservative, not liberal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

NULL_SAMPLES = 20_000
"""Simulated harmonic means per feature count: a tail of 1 % read off 200 of them."""
NULL_SEED = 18
ANCHOR = 50
"""Simulated means over the window's needed to read its p-value off the simulation (a
tail of 0.25 %); smaller tails follow Landau's from there."""
LANDAU_LOCATION = 0.874
"""Wilson's location of the Landau law of sum(1 / p) / F, beyond ln F."""
SMALLEST_P = 1e-300
CHUNK_VALUES = 1_000_000


@functools.lru_cache(maxsize=16)
def null_means(features: int) -> FloatArray:
    """Sorted simulated means of 1/p over ``features`` independent uniform p-values."""
    rng = np.random.default_rng(NULL_SEED)
    means = np.empty(NULL_SAMPLES)
    chunk = max(1, CHUNK_VALUES // features)
    for start in range(0, NULL_SAMPLES, chunk):
        size = min(chunk, NULL_SAMPLES - start)
        uniform = 1.0 - rng.random((size, features))  # (0, 1]: no division by zero
        means[start : start + size] = (1.0 / uniform).mean(axis=1)
    means.sort()
    means.setflags(write=False)
    return means


def harmonic_p_value(p_values: FloatArray, features: int) -> float:
    """The data-set p-value of one window: its features' harmonic mean p-value.

    features counts every feature of the family (both streams of a model), which may be
    more than the p-values of one stream's window; the others count as p = 1.
    """
    finite = p_values[np.isfinite(p_values)]
    if finite.size == 0:
        return 1.0
    count = max(features, finite.size)
    inverse = 1.0 / np.clip(finite, SMALLEST_P, 1.0)
    mean = (float(inverse.sum()) + (count - finite.size)) / count
    null = null_means(count)
    over = null.size - int(np.searchsorted(null, mean, side="left"))
    if over >= ANCHOR:
        return over / null.size
    anchor = float(null[null.size - ANCHOR])
    location = math.log(count) + LANDAU_LOCATION
    # Landau's tail 1 / (x - location), through the anchor (the mean is past it here).
    scale = max(anchor - location, 1.0)
    tail = (ANCHOR / null.size) * scale / max(mean - location, scale)
    return float(min(tail, ANCHOR / null.size))
