"""Whole-number features: a value with a fraction where the reference never had one. Pure.

A numeric feature whose reference values are all whole numbers, taking at most
``MAX_DISTINCT`` distinct values (pixel intensities, counts, codes, ratings: the discrete
features issue 18's drift profiles keep a support for), gets no value between them in
the reference: a live 3.3 for a pixel that held 0..16 lies inside the range and near the
mean, so neither the range check nor the multivariate scores see it, yet no reference row
ever looked like it. Such a value is infinitely far, as past a hard bound. The held-out
rows cannot calibrate this (they are whole wherever the whole reference is): it is a
statement about the data's encoding, and ``modelshield drift profile`` stores it per
feature (``wholeNumbers``) only where it holds for every reference value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from modelshield.guard.outliertypes import FloatArray

BoolArray = NDArray[np.bool_]

#: Most distinct whole values a feature may take to count as a whole-number feature (as a
#: drift profile's discrete support, ``modelshield.drift.profiles.MAX_SUPPORT``).
MAX_DISTINCT = 64
#: Relative distance within which a value is whole (a float32 tensor's 16.0 is exact; its
#: 1e6 + 1 is too, within 1e-6 of itself).
TOLERANCE = 1e-6


def whole_number_features(numeric: FloatArray) -> BoolArray:
    """Per numeric column (NaN missing): all present values whole, at least 2 and at most
    ``MAX_DISTINCT`` distinct ones."""
    found = np.zeros(numeric.shape[1], dtype=bool)
    for column in range(numeric.shape[1]):
        values = numeric[:, column]
        present = values[~np.isnan(values)]
        if present.size == 0 or not np.all(present == np.round(present)):
            continue
        distinct = np.unique(present).size
        found[column] = 2 <= distinct <= MAX_DISTINCT
    return found


def off_whole(whole: BoolArray, numeric: FloatArray) -> BoolArray:
    """Per row and numeric feature: a present value with a fraction on a whole-number
    feature (missing values and the other features: False)."""
    rounded = np.round(numeric)
    with np.errstate(invalid="ignore"):
        fraction = np.abs(numeric - rounded) > TOLERANCE * np.maximum(np.abs(rounded), 1.0)
    return np.asarray(fraction & whole & ~np.isnan(numeric))
