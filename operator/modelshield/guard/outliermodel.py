"""The outlier model: what the guard needs to tell an out-of-distribution row. Pure (numpy).

``modelshield drift profile`` fits it on the reference rows and stores it in the profile
(key ``outliers``, in the JSON form of ``modelshield.guard.outlierdocuments``); the
operator copies it into the guard's configuration. A row is judged by three numbers:

- its **range excess**: how far its furthest numeric feature lies outside that feature's
  reference [min, max], in the tail scale of that side (``modelshield.guard.outlierranges``;
  version 1 models: in reference standard deviations); infinite for an unseen category, a
  missing value where the reference had none, any other value of a feature that was
  constant, or a value past a hard bound;
- its **Mahalanobis distance** to the reference mean over the numeric features that vary,
  with a Ledoit-Wolf shrinkage covariance of the standardised features (well conditioned
  even with more features than rows, or collinear ones);
- its **conditional residual**: how far its most out-of-line feature lies from what the
  other features predict under that covariance (``modelshield.guard.outlierscoring``).

The thresholds are calibrated on **held-out** rows: the reference is split into ``FOLDS``
folds, each fold scored by a model fitted on the others (cross-fitting), so every
reference row has held-out scores without setting rows aside. For a declared false-flag
rate ``a``, ``thresholds`` picks the range margin that flags at most half of ``a`` of these
rows, then the residual limit that takes half of what is left, and the distance that
brings the union to at most ``a`` (``modelshield.guard.outlierscoring``). Models stored
before the residual (version 1, and version 2 without ``heldOut.residual``) split ``a``
between range and distance as they did.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from modelshield.guard import (
    outlierdocuments,
    outlierranges,
    outlierscoring,
    outlierwholenumbers,
)

# Re-exported: the JSON form lived here first, and callers name outliermodel.to_document,
# outliermodel.from_document and outliermodel.OutlierModelError.
from modelshield.guard.outlierdocuments import from_document as from_document
from modelshield.guard.outlierdocuments import to_document as to_document
from modelshield.guard.outliertypes import Fitted, FloatArray, OutlierModel
from modelshield.guard.outliertypes import OutlierModelError as OutlierModelError

FOLDS = 5
#: Categories kept per categorical feature; above it the feature's category check is off.
MAX_CATEGORIES = 1000
#: Numeric features the Mahalanobis score covers at most (the matrix goes into a ConfigMap).
MAX_MULTIVARIATE_FEATURES = 100
#: Held-out pairs stored at most (an even subsample beyond).
MAX_HELD_OUT = 5000
#: Rows the model is fitted on at most (a seeded subsample beyond).
MAX_FIT_ROWS = 50_000
MIN_ROWS = 2 * FOLDS


def ledoit_wolf(standardised: FloatArray) -> tuple[FloatArray, float]:
    """The Ledoit-Wolf shrinkage covariance of centred data, and the shrinkage used."""
    rows, columns = standardised.shape
    empirical = standardised.T @ standardised / rows
    squared = standardised**2
    variances = squared.sum(axis=0) / rows
    mu = float(variances.sum()) / columns
    beta_sum = float((squared.T @ squared).sum())
    delta_sum = float((empirical**2).sum())
    beta = (beta_sum / rows - delta_sum) / (columns * rows)
    delta = (delta_sum - 2 * mu * float(variances.sum()) + columns * mu**2) / columns
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    covariance = (1 - shrinkage) * empirical
    covariance.flat[:: columns + 1] += shrinkage * mu
    return covariance, shrinkage


def category_text(value: object) -> str | None:
    """A categorical value as the model compares it; None for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _numeric(values: Sequence[object], name: str) -> FloatArray:
    out = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values):
        if value is None or value == "":
            out[index] = math.nan
        elif isinstance(value, bool) or not isinstance(value, int | float | str):
            raise OutlierModelError(f"{name}[{index}]: {value!r} is not a number")
        else:
            try:
                out[index] = float(value)
            except ValueError:
                raise OutlierModelError(f"{name}[{index}]: {value!r} is not a number") from None
    if not np.all(np.isfinite(out) | np.isnan(out)):
        raise OutlierModelError(f"{name}: infinite values")
    return out


def fit(
    numeric: FloatArray,
    categorical: Sequence[Sequence[str | None]],
    names: Sequence[str],
    is_numeric: Sequence[bool],
) -> Fitted:
    """Fit on a numeric matrix (rows x numeric features, NaN missing) and categorical columns."""
    rows = numeric.shape[0]
    missing_numeric = np.isnan(numeric)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # A column with no value at all has no mean: NaN, replaced below.
        warnings.simplefilter("ignore", RuntimeWarning)
        present = np.where(missing_numeric, np.nan, numeric)
        mean = np.nan_to_num(np.nanmean(present, axis=0)) if rows else np.zeros(numeric.shape[1])
        std = np.nan_to_num(np.nanstd(present, axis=0))
        minimum = np.nan_to_num(np.nanmin(present, axis=0), nan=math.inf)
        maximum = np.nan_to_num(np.nanmax(present, axis=0), nan=-math.inf)
    varying = tuple(int(i) for i in np.flatnonzero(std > 0)[:MAX_MULTIVARIATE_FEATURES])
    if varying:
        columns = list(varying)
        z = (
            np.where(missing_numeric[:, columns], mean[columns], numeric[:, columns])
            - mean[columns]
        ) / std[columns]
        covariance, _ = ledoit_wolf(z)
        precision = np.asarray(np.linalg.pinv(covariance, hermitian=True), dtype=np.float64)
    else:
        precision = np.zeros((0, 0))
    low_scale, high_scale, _ = outlierranges.tail_scales(numeric)
    categories: list[frozenset[str] | None] = []
    missing_seen: list[bool] = []
    numeric_index = categorical_index = 0
    for flag in is_numeric:
        if flag:
            missing_seen.append(bool(missing_numeric[:, numeric_index].any()))
            numeric_index += 1
        else:
            column = categorical[categorical_index]
            seen = {value for value in column if value is not None}
            missing_seen.append(any(value is None for value in column))
            categories.append(frozenset(seen) if len(seen) <= MAX_CATEGORIES else None)
            categorical_index += 1
    return Fitted(
        names=tuple(names),
        numeric=tuple(is_numeric),
        mean=mean,
        std=std,
        minimum=minimum,
        maximum=maximum,
        missing_seen=tuple(missing_seen),
        categories=tuple(categories),
        varying=varying,
        precision=precision,
        low_scale=low_scale,
        high_scale=high_scale,
    )


#: PRADA's near-duplicate radius: this quantile of the reference rows' distances to their
#: nearest other distinct row, over at most NEAR_DUPLICATE_ROWS rows (the search is
#: quadratic in them).
NEAR_DUPLICATE_QUANTILE = 0.01
NEAR_DUPLICATE_ROWS = 2000


def near_duplicate_radius(
    numeric: FloatArray, mean: FloatArray, std: FloatArray, generator: np.random.Generator
) -> float:
    """How close two distinct reference rows hardly ever are, in the standard units probing
    compares queries in (each numeric feature less its mean, over its standard deviation or
    1 where it is constant; a missing value at the mean): NEAR_DUPLICATE_QUANTILE of each
    row's distance to its nearest other row, exact copies aside. 0 when fewer than two
    distinct rows."""
    if numeric.shape[1] == 0 or numeric.shape[0] < 2:
        return 0.0
    rows = numeric
    if rows.shape[0] > NEAR_DUPLICATE_ROWS:
        rows = rows[generator.choice(rows.shape[0], NEAR_DUPLICATE_ROWS, replace=False)]
    scale = np.where(std > 0, std, 1.0)
    # Exact copies are not near-duplicates of each other: one of each.
    standard = np.unique(np.nan_to_num((rows - mean) / scale, nan=0.0), axis=0)
    if standard.shape[0] < 2:
        return 0.0
    squared = (standard**2).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2 * standard @ standard.T
    np.fill_diagonal(distances, np.inf)
    nearest = np.sqrt(np.maximum(distances.min(axis=1), 0.0))
    return float(np.quantile(nearest, NEAR_DUPLICATE_QUANTILE))


def build(
    columns: Mapping[str, Sequence[object]],
    names: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    seed: int = 0,
    near_duplicates: bool = False,
) -> OutlierModel:
    """Fit on the reference columns and score every row held out by cross-fitting.

    With ``near_duplicates`` the model carries PRADA's near-duplicate radius. Off by
    default: leaving near copies out of the distance test spares benign clients that
    resend real rows with noise, but an attacker probing many seeds with small steps is
    then missed more often (docs/runtime-defences.md), so the profile's owner chooses it.
    """
    if not names:
        raise OutlierModelError("no features")
    unknown = [name for name in [*names, *categorical] if name not in columns]
    if unknown:
        raise OutlierModelError(f"features not in the data: {', '.join(unknown[:5])}")
    is_numeric = [name not in set(categorical) for name in names]
    total = len(columns[names[0]])
    if total < MIN_ROWS:
        raise OutlierModelError(f"{total} rows; the outlier model needs at least {MIN_ROWS}")
    generator = np.random.default_rng(seed)
    order = generator.permutation(total)[:MAX_FIT_ROWS]
    numeric = np.column_stack(
        [_numeric(columns[n], n) for n, flag in zip(names, is_numeric, strict=True) if flag]
        or [np.empty((total, 0))]
    )[order]
    cats = [
        [category_text(v) for v in (columns[n][i] for i in order)]
        for n, flag in zip(names, is_numeric, strict=True)
        if not flag
    ]
    count = len(order)
    excess = np.empty(count)
    distance = np.empty(count)
    residual = np.empty(count)
    folds = np.arange(count) % FOLDS
    # Per side (low, high) and numeric feature: did a held-out row go past its fold's bound?
    left = np.zeros((2, numeric.shape[1]), dtype=bool)
    for fold in range(FOLDS):
        held, kept = folds == fold, folds != fold
        model = fit(
            numeric[kept], [[c[i] for i in np.flatnonzero(kept)] for c in cats], names, is_numeric
        )
        scored = outlierscoring.score(
            model, numeric[held], [[c[i] for i in np.flatnonzero(held)] for c in cats]
        )
        excess[held], distance[held] = scored.excess, scored.distance
        residual[held] = scored.residual
        below, above = outlierranges.past_bounds(model, numeric[held])
        left |= np.stack([(below > 0).any(axis=0), (above > 0).any(axis=0)])
    if count > MAX_HELD_OUT:
        keep = np.linspace(0, count - 1, MAX_HELD_OUT).astype(int)
        excess, distance, residual = excess[keep], distance[keep], residual[keep]
    final = fit(numeric, cats, names, is_numeric)
    low, high, saturated = outlierranges.tail_scales(numeric)
    low, high = outlierranges.harden(low, high, saturated, left)
    whole = outlierwholenumbers.whole_number_features(numeric)
    final = dataclasses.replace(final, low_scale=low, high_scale=high, whole=whole)
    # At most the ceiling a guard reads (reached only by references of a handful of
    # distinct rows, whose nearest rows are as far apart as any two).
    radius = (
        min(
            near_duplicate_radius(numeric, final.mean, final.std, generator),
            outlierdocuments.near_duplicate_ceiling(final.std),
        )
        if near_duplicates
        else 0.0
    )
    return OutlierModel(final, excess, distance, count, residual, radius)
