"""Scoring rows against an outlier model, and its thresholds for a false-flag rate. Pure.

``score`` gives every row its range excess and Mahalanobis distance
(``modelshield.guard.outliermodel``); ``thresholds`` turns the model's held-out pairs and
a declared false-flag rate into the two limits; ``flagged`` names the rows over them,
each with a reason a client can act on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from modelshield.guard import outlierranges
from modelshield.guard.outliertypes import Fitted, FloatArray, OutlierModel


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per row: range excess (tail scales, or standard deviations in version 1 models; inf:
    unseen, constant or past a hard bound) and Mahalanobis distance."""

    excess: FloatArray
    distance: FloatArray


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    """A row is flagged when its excess or its distance is above these."""

    excess: float
    distance: float
    #: What the thresholds flag of the held-out rows (at most the declared rate).
    held_out_rate: float


class CalibrationError(ValueError):
    """A false-flag rate the stored held-out rows cannot honour."""


def _excess(fitted: Fitted, numeric: FloatArray) -> FloatArray:
    if numeric.shape[1] == 0:
        return np.zeros(numeric.shape[0])
    # A constant feature or a hard bound has no scale: any value past it is infinitely far.
    excess = outlierranges.scaled_excess(fitted, numeric).max(axis=1)
    missing = np.isnan(numeric)
    if missing.any():
        never_missing = ~np.asarray(
            [m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if n], dtype=bool
        )
        excess = np.where((missing & never_missing).any(axis=1), math.inf, excess)
    return np.asarray(excess, dtype=np.float64)


def _categorical_excess(
    fitted: Fitted, categorical: Sequence[Sequence[str | None]], rows: int
) -> FloatArray:
    excess = np.zeros(rows)
    columns = [i for i, n in enumerate(fitted.numeric) if not n]
    for column, values, seen in zip(columns, categorical, fitted.categories, strict=True):
        missing_ok = fitted.missing_seen[column]
        for row, value in enumerate(values):
            if value is None:
                if not missing_ok:
                    excess[row] = math.inf
            elif seen is not None and value not in seen:
                excess[row] = math.inf
    return excess


def score(
    fitted: Fitted, numeric: FloatArray, categorical: Sequence[Sequence[str | None]]
) -> Scores:
    """Excess and distance of each row (numeric: rows x numeric features, NaN missing)."""
    rows = numeric.shape[0]
    excess = _excess(fitted, numeric)
    if categorical:
        excess = np.maximum(excess, _categorical_excess(fitted, categorical, rows))
    if fitted.varying:
        values = numeric[:, fitted.varying_index]
        z = (values - fitted.varying_mean) / fitted.varying_std
        # A missing value sits at the reference mean (its range check is separate).
        z = np.nan_to_num(z, nan=0.0)
        squared = ((z @ fitted.precision) * z).sum(axis=1)
        distance = np.sqrt(np.maximum(squared, 0.0))
    else:
        distance = np.zeros(rows)
    return Scores(np.asarray(excess, dtype=np.float64), np.asarray(distance, dtype=np.float64))


def thresholds(model: OutlierModel, rate: float) -> Thresholds:
    """The limits that flag at most ``rate`` of the held-out rows: the range margin takes
    up to half of the allowance, the distance the rest."""
    excess, distance = model.held_out_excess, model.held_out_distance
    count = excess.size
    allowed = math.floor(rate * count + 1e-9)
    if allowed < 1:
        raise CalibrationError(
            f"falseFlagRate {rate:g} is below 1/{count}: the profile holds {count} held-out "
            "rows; declare a larger rate or profile more rows"
        )
    ordered = np.sort(excess)[::-1]
    range_budget = allowed // 2
    excess_limit = float(ordered[range_budget]) if range_budget < count else 0.0
    if math.isinf(excess_limit):
        unseen = int(np.isinf(excess).sum())
        raise CalibrationError(
            f"{unseen} of {count} held-out rows have an unseen category, a missing value or "
            "a value of a feature their fold saw constant: more than falseFlagRate "
            f"{rate:g} allows; declare a larger rate"
        )
    over_range = excess > excess_limit
    left = allowed - int(over_range.sum())
    inside = np.sort(distance[~over_range])[::-1]
    distance_limit = float(inside[left]) if left < inside.size else 0.0
    flagged = over_range | (distance > distance_limit)
    return Thresholds(excess_limit, distance_limit, float(flagged.mean()))


def _range_reason(
    fitted: Fitted, numeric: FloatArray, categorical: Sequence[Sequence[str | None]], row: int
) -> str:
    numeric_names = [n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if flag]
    categorical_names = [
        n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if not flag
    ]
    missing_seen = [m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if n]
    worst, worst_reason = -1.0, ""
    sizes = outlierranges.scaled_excess(fitted, numeric[row : row + 1])[0]
    for column, name in enumerate(numeric_names):
        value = float(numeric[row, column])
        low, high = fitted.minimum[column], fitted.maximum[column]
        if math.isnan(value):
            if not missing_seen[column]:
                return f"feature {name!r} is missing; the reference never was"
            continue
        size = float(sizes[column])
        if size > worst:
            worst = size
            worst_reason = (
                f"feature {name!r} = {value:.6g} is outside the reference range "
                f"[{low:.6g}, {high:.6g}]"
            )
    categorical_missing = [
        m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if not n
    ]
    for name, values, seen, missing_ok in zip(
        categorical_names, categorical, fitted.categories, categorical_missing, strict=True
    ):
        category = values[row]
        if category is None and not missing_ok:
            return f"feature {name!r} is missing; the reference never was"
        if category is not None and seen is not None and category not in seen:
            return f"feature {name!r} has category {category[:60]!r}, unseen in the reference"
    return worst_reason


def flagged(
    fitted: Fitted,
    limits: Thresholds,
    numeric: FloatArray,
    categorical: Sequence[Sequence[str | None]],
    scores: Scores | None = None,
) -> list[tuple[int, str]]:
    """The rows over the limits, each with the reason (range reasons first)."""
    scored = scores if scores is not None else score(fitted, numeric, categorical)
    found: list[tuple[int, str]] = []
    over_range = scored.excess > limits.excess
    over_distance = scored.distance > limits.distance
    for row in np.flatnonzero(over_range | over_distance):
        if over_range[row]:
            reason = _range_reason(fitted, numeric, categorical, int(row))
        else:
            reason = (
                f"Mahalanobis distance {scored.distance[row]:.3g} to the reference is above "
                f"{limits.distance:.3g}"
            )
        found.append((int(row), reason))
    return found
