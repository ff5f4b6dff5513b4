"""The range check's scale: how far past a feature's reference [min, max] a value lies, in
units of that side's own tail. Pure (numpy).

Version 1 outlier models measured every excursion in reference standard deviations, so one
shared margin had to cover the feature whose held-out rows go furthest: on breast cancer a
few skewed features (a value 1.6 spans past the range in cross-fitting) set the margin
for all 30, and on digits a handful of rare pixels (a 2 where training saw 0s and one 1)
set it for 64 pixels that cannot leave [0, 16] at all.

Version 2 measures each side of each feature in its own **tail scale**: the distance from
the bound to the ``TAIL_ORDER``-th value inside it (the spacing of the top order
statistics, the scale extreme-value theory normalises excursions by, so that a long tail
earns a wide tolerance and a short one a tight one). Where that spacing is zero (more
than ``TAIL_ORDER`` rows sit on the bound) the scale is the gap to the next value inside
(a whole-number feature's step), unless the bound is **hard**: the reference piles up on
it *and* no cross-fitted held-out row ever went past it (``harden``); then any value past
it is infinitely far, as for a constant feature.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from modelshield.guard.outliertypes import Fitted, FloatArray

BoolArray = NDArray[np.bool_]

#: Which order statistic sets a side's tail scale (the 8th value in from the bound).
TAIL_ORDER = 8


def _side(ordered: FloatArray) -> tuple[float, bool]:
    """Tail scale and saturation of the top side of sorted values (largest last)."""
    if ordered.size < 2:
        return 0.0, True
    order = min(TAIL_ORDER, ordered.size - 1)
    spacing = float(ordered[-1] - ordered[-1 - order])
    if spacing > 0:
        return spacing, False
    inside = ordered[ordered < ordered[-1]]
    return (float(ordered[-1] - inside[-1]) if inside.size else 0.0), True


def tail_scales(numeric: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Per numeric column (NaN missing): low and high tail scales, and per side (rows: low,
    high) whether the bound is saturated (more than ``TAIL_ORDER`` rows on it)."""
    columns = numeric.shape[1]
    low, high = np.zeros(columns), np.zeros(columns)
    saturated = np.zeros((2, columns), dtype=bool)
    for column in range(columns):
        values = numeric[:, column]
        ordered = np.sort(values[~np.isnan(values)])
        low[column], saturated[0, column] = _side(-ordered[::-1])
        high[column], saturated[1, column] = _side(ordered)
    return low, high, saturated


def past_bounds(fitted: Fitted, numeric: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row and numeric feature, how far below the minimum and above the maximum a value
    lies (0 inside; NaN for a missing value)."""
    return fitted.minimum - numeric, numeric - fitted.maximum


def scaled_excess(fitted: Fitted, numeric: FloatArray) -> FloatArray:
    """Per row and numeric feature: the excursion past the range in the side's tail scale
    (version 2) or in standard deviations (version 1); 0 inside, inf past a hard bound or
    a constant feature, 0 for a missing value (judged separately)."""
    below, above = past_bounds(fitted, numeric)
    with np.errstate(divide="ignore", invalid="ignore"):
        if fitted.low_scale is None or fitted.high_scale is None:
            beyond = np.maximum(below, above)
            return np.asarray(np.where(beyond > 0, beyond / fitted.std, 0.0), dtype=np.float64)
        low = np.where(below > 0, below / fitted.low_scale, 0.0)
        high = np.where(above > 0, above / fitted.high_scale, 0.0)
    return np.asarray(np.maximum(low, high), dtype=np.float64)


def harden(
    low: FloatArray, high: FloatArray, saturated: BoolArray, left: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """The scales with hard bounds set to 0: saturated sides (``saturated``, rows low and
    high) that no cross-fitted held-out row went past (``left``, the same shape)."""
    hard = saturated & ~left
    return np.where(hard[0], 0.0, low), np.where(hard[1], 0.0, high)
