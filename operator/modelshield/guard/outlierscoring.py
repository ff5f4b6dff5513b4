"""Scoring rows against an outlier model, and its thresholds for a false-flag rate. Pure.

``score`` gives every row its range excess, Mahalanobis distance and conditional residual
(``modelshield.guard.outliermodel``); ``thresholds`` turns the model's held-out scores and
a declared false-flag rate into the limits; ``flagged`` names the rows over them, each
with a reason a client can act on.

The **conditional residual** of a row is its largest standardised departure of one
feature from what the others predict under the shrinkage covariance: with ``z`` the
standardised row and ``P`` the precision matrix, ``max_j |(P z)_j| / sqrt(P_jj)`` (``(P
z)_j / P_jj`` is feature j's residual from its regression on the others, whose variance
is ``1 / P_jj``). It is the likelihood-ratio test for one feature shifted by an unknown
amount, so it sees a single moved feature that the full distance, spreading it over all
features' degrees of freedom, dilutes; it costs nothing beyond the distance (``P z`` is
computed for both).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from modelshield.guard import outlierranges, outlierwholenumbers
from modelshield.guard.outliertypes import Fitted, FloatArray, OutlierModel


@dataclasses.dataclass(frozen=True)
class Scores:
    """Per row: range excess (tail scales, or standard deviations in version 1 models; inf:
    unseen, constant or past a hard bound), Mahalanobis distance and conditional residual
    (in standard deviations of that residual)."""

    excess: FloatArray
    distance: FloatArray
    residual: FloatArray
    #: The rows in standard units, ``(x - mean) / std`` of every numeric feature, when
    #: every one varies and every value came out finite (else None): the units the probing
    #: detectors read, computed once for both.
    standard: FloatArray | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Thresholds:
    """A row is flagged when its excess or its distance is above these."""

    excess: float
    distance: float
    #: What the thresholds flag of the held-out rows (at most the declared rate).
    held_out_rate: float
    #: inf: no residual check (a model stored without held-out residuals).
    residual: float = math.inf


class CalibrationError(ValueError):
    """A false-flag rate the stored held-out rows cannot honour."""


def _excess(fitted: Fitted, numeric: FloatArray) -> FloatArray:
    if numeric.shape[1] == 0:
        return np.zeros(numeric.shape[0])
    # A constant feature or a hard bound has no scale: any value past it is infinitely far.
    excess = outlierranges.scaled_excess(fitted, numeric).max(axis=1)
    if fitted.whole is not None and fitted.whole.any():
        fractional = outlierwholenumbers.off_whole(fitted.whole, numeric).any(axis=1)
        excess = np.where(fractional, math.inf, excess)
    missing = np.isnan(numeric)
    if missing.any():
        never_missing = ~np.asarray(
            [m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if n], dtype=bool
        )
        excess = np.where((missing & never_missing).any(axis=1), math.inf, excess)
    return np.asarray(excess, dtype=np.float64)


#: Rows of at most this many numeric features are checked in plain floats when alone
#: (bench_defence_costs, one row: 20 features 28.9 -> 17.0 us, 30 28.7 -> 17.6, but 64
#: 38.8 -> 40.6: the per-value loop and its whole-number rounding outgrow numpy's calls).
PLAIN_FEATURES = 40


def _row_excess(fitted: Fitted, row: list[float]) -> float:
    """``_excess`` of one row in plain floats, where ``fitted.plain_bounds`` is known: the
    same value (each subtraction, division and comparison is the same IEEE operation as
    numpy's; numpy's ~15 calls on one short row cost ~12 us, this ~3)."""
    bounds = fitted.plain_bounds
    assert bounds is not None
    worst = 0.0
    for value, (low, high, low_scale, high_scale) in zip(row, bounds, strict=True):
        # NaN (missing) compares false both ways: 0, as numpy's ``where`` gives.
        below = low - value
        if below > 0:
            size = below / low_scale if low_scale > 0 else math.inf
        else:
            above = value - high
            if not above > 0:
                continue
            size = above / high_scale if high_scale > 0 else math.inf
        if size > worst:
            worst = size
    tolerance = outlierwholenumbers.TOLERANCE
    for index in fitted.plain_whole:
        value = row[index]
        if math.isfinite(value):
            # ``round`` halves to even, as ``np.round`` does.
            rounded = float(round(value))
            if abs(value - rounded) > tolerance * max(abs(rounded), 1.0):
                return math.inf
    # A sum that is a number holds no NaN (one C loop instead of a call per feature); a
    # NaN sum (a missing value, or +inf with -inf) is looked at value by value.
    if fitted.plain_never_missing and math.isnan(sum(row)):
        for index in fitted.plain_never_missing:
            if math.isnan(row[index]):
                return math.inf
    return worst


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


@functools.cache
def _every_column(count: int) -> tuple[int, ...]:
    return tuple(range(count))


def score(
    fitted: Fitted, numeric: FloatArray, categorical: Sequence[Sequence[str | None]]
) -> Scores:
    """Excess, distance and residual of each row (numeric: rows x numeric features, NaN
    missing)."""
    rows = numeric.shape[0]
    standard: FloatArray | None = None
    if rows == 1 and fitted.plain_bounds is not None and 0 < numeric.shape[1] <= PLAIN_FEATURES:
        excess = np.asarray([_row_excess(fitted, numeric[0].tolist())])
    else:
        excess = _excess(fitted, numeric)
    if categorical:
        excess = np.maximum(excess, _categorical_excess(fitted, categorical, rows))
    if fitted.varying:
        # Every column, in order (the usual case): no copy by an index array. The index
        # array's copy is column-major, and the matrix product below rounds differently
        # on a row-major matrix of many rows: the same layout keeps the same scores (one
        # row is both already, and not copied).
        every = fitted.varying == _every_column(numeric.shape[1])
        values = np.asfortranarray(numeric) if every else numeric[:, fitted.varying_index]
        z = (values - fitted.varying_mean) / fitted.varying_std
        # A missing value sits at the reference mean (its range check is separate); an
        # overflow at the largest float. nan_to_num costs ~8 us on one row even when there
        # is nothing to replace, two checks ~1.5.
        if np.logical_and.reduce(np.isfinite(z), axis=None):
            standard = z if every else None
        else:
            z = np.nan_to_num(z, nan=0.0)
        pulled = z @ fitted.precision
        # The reductions as ufuncs: ndarray.sum, .max and .all are these same calls behind
        # a Python wrapper (~0.5 us each on one row).
        squared = np.add.reduce(pulled * z, axis=1)
        distance = np.sqrt(np.maximum(squared, 0.0))
        residual = np.maximum.reduce(np.abs(pulled) * fitted.residual_unit, axis=1)
    else:
        distance = np.zeros(rows)
        residual = np.zeros(rows)
    return Scores(
        np.asarray(excess, dtype=np.float64),
        np.asarray(distance, dtype=np.float64),
        np.asarray(residual, dtype=np.float64),
        standard,
    )


def over(scores: Scores, limits: Thresholds) -> NDArray[np.bool_]:
    """Per row: over any limit."""
    return np.asarray(
        (scores.excess > limits.excess)
        | (scores.distance > limits.distance)
        | (scores.residual > limits.residual)
    )


def _limit(values: FloatArray, budget: int) -> float:
    """The value that ``budget`` of ``values`` are above (ties aside); 0 if all may be."""
    ordered = np.sort(values)[::-1]
    return float(ordered[budget]) if budget < ordered.size else 0.0


def thresholds(model: OutlierModel, rate: float) -> Thresholds:
    """The limits that flag at most ``rate`` of the held-out rows: the range margin takes
    up to half of the allowance (more when rows infinitely far need it: they are flagged
    whatever the margin, so they are refused only beyond the whole allowance); of what is left the residual takes up to half (when the
    model has held-out residuals) and the distance the rest."""
    excess, distance = model.held_out_excess, model.held_out_distance
    count = excess.size
    allowed = math.floor(rate * count + 1e-9)
    if allowed < 1:
        raise CalibrationError(
            f"falseFlagRate {rate:g} is below 1/{count}: the profile holds {count} held-out "
            "rows; declare a larger rate or profile more rows"
        )
    ordered = np.sort(excess)[::-1]
    # Rows infinitely far (a value of a feature their fold saw constant) are flagged
    # whatever the margin: they take what they need of the whole allowance.
    unseen = int(np.isinf(excess).sum())
    range_budget = max(allowed // 2, unseen)
    excess_limit = float(ordered[range_budget]) if range_budget < count else 0.0
    if unseen > allowed or math.isinf(excess_limit):
        raise CalibrationError(
            f"{unseen} of {count} held-out rows have an unseen category, a missing value or "
            "a value of a feature their fold saw constant: more than falseFlagRate "
            f"{rate:g} allows; declare a larger rate"
        )
    taken = excess > excess_limit
    residual_limit = math.inf
    if model.held_out_residual is not None:
        residual = model.held_out_residual
        residual_limit = _limit(residual[~taken], (allowed - int(taken.sum())) // 2)
        taken = taken | (residual > residual_limit)
    distance_limit = _limit(distance[~taken], allowed - int(taken.sum()))
    flagged = taken | (distance > distance_limit)
    return Thresholds(excess_limit, distance_limit, float(flagged.mean()), residual_limit)


def _range_reason(
    fitted: Fitted, numeric: FloatArray, categorical: Sequence[Sequence[str | None]], row: int
) -> str:
    numeric_names = [n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if flag]
    categorical_names = [
        n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if not flag
    ]
    missing_seen = [m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if n]
    worst, worst_reason = -1.0, ""
    # One row's values as plain floats, and the whole-number check of the whole row at
    # once: per column, numpy calls cost ~5 us each (a flagged row of 64 features took
    # ~0.3 ms; an attacker's random points are nearly all flagged).
    chosen = numeric[row : row + 1]
    row_values = chosen[0].tolist()
    lows, highs = fitted.minimum.tolist(), fitted.maximum.tolist()
    sizes = outlierranges.scaled_excess(fitted, chosen)[0].tolist()
    fractional = (
        outlierwholenumbers.off_whole(fitted.whole, chosen)[0].tolist()
        if fitted.whole is not None
        else None
    )
    for column, name in enumerate(numeric_names):
        value = row_values[column]
        if math.isnan(value):
            if not missing_seen[column]:
                return f"feature {name!r} is missing; the reference never was"
            continue
        if fractional is not None and fractional[column]:
            return (
                f"feature {name!r} = {value:.6g} is not a whole number; the reference's "
                "values all were"
            )
        size = sizes[column]
        if size > worst:
            worst = size
            worst_reason = (
                f"feature {name!r} = {value:.6g} is outside the reference range "
                f"[{lows[column]:.6g}, {highs[column]:.6g}]"
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


def _residual_reason(fitted: Fitted, numeric: FloatArray, row: int, limit: float) -> str:
    z = (numeric[row, fitted.varying_index] - fitted.varying_mean) / fitted.varying_std
    residual = np.abs(np.nan_to_num(z, nan=0.0) @ fitted.precision) * fitted.residual_unit
    worst = int(np.argmax(residual))
    column = int(fitted.varying_index[worst])
    name = [n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if flag][column]
    return (
        f"feature {name!r} = {numeric[row, column]:.6g} is out of line with the other "
        f"features: {residual[worst]:.3g} standard deviations from what they predict "
        f"(limit {limit:.3g})"
    )


def flagged(
    fitted: Fitted,
    limits: Thresholds,
    numeric: FloatArray,
    categorical: Sequence[Sequence[str | None]],
    scores: Scores | None = None,
) -> list[tuple[int, str]]:
    """The rows over the limits, each with the reason (range, then residual reasons)."""
    scored = scores if scores is not None else score(fitted, numeric, categorical)
    found: list[tuple[int, str]] = []
    if scored.excess.size == 1 and not (
        # One row (the usual request) under every limit: the same comparisons as ``over``
        # without its five numpy calls.
        float(scored.excess[0]) > limits.excess
        or float(scored.distance[0]) > limits.distance
        or float(scored.residual[0]) > limits.residual
    ):
        return found
    rows = np.flatnonzero(over(scored, limits))
    if rows.size == 0:
        return found
    over_range = scored.excess > limits.excess
    over_residual = scored.residual > limits.residual
    for row in rows:
        if over_range[row]:
            reason = _range_reason(fitted, numeric, categorical, int(row))
        elif over_residual[row]:
            reason = _residual_reason(fitted, numeric, int(row), limits.residual)
        else:
            reason = (
                f"Mahalanobis distance {scored.distance[row]:.3g} to the reference is above "
                f"{limits.distance:.3g}"
            )
        found.append((int(row), reason))
    return found
