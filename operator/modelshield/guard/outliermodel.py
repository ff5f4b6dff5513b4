"""The outlier model: what the guard needs to tell an out-of-distribution row. Pure (numpy).

``modelshield drift profile`` fits it on the reference rows and stores it in the profile
(key ``outliers``); the operator copies it into the guard's configuration. A row is judged
by three numbers:

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
from typing import Any

import numpy as np

from modelshield.guard import outlierranges, outlierscoring, outlierwholenumbers
from modelshield.guard.outliertypes import Fitted, FloatArray, OutlierModel

OUTLIER_KIND = "OutlierModel"
#: Version 2 stores each numeric feature's tail scales (lowScale, highScale) and measures
#: range excess in them; version 1 (no scales: standard deviations) is still read.
OUTLIER_VERSION = 2
OUTLIER_VERSIONS = (1, 2)
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
_SIGNIFICANT = 10


class OutlierModelError(ValueError):
    """An outlier model that cannot be fitted or read (the message names the field)."""


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


def build(
    columns: Mapping[str, Sequence[object]],
    names: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    seed: int = 0,
) -> OutlierModel:
    """Fit on the reference columns and score every row held out by cross-fitting."""
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
    return OutlierModel(final, excess, distance, count, residual)


def _rounded(values: FloatArray) -> list[float]:
    return [float(f"{v:.{_SIGNIFICANT}g}") for v in values.ravel()]


def _finite_or_none(values: FloatArray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(f"{v:.{_SIGNIFICANT}g}") for v in values]


def _exact_or_none(values: FloatArray) -> list[float | None]:
    # Whole-number features give excesses such as 1/3 in tail scales: a limit rounded to
    # 0.3333333333 would flag a live 1/3 that the unrounded held-out rows did not count.
    return [None if not math.isfinite(v) else float(v) for v in values]


def to_document(model: OutlierModel) -> dict[str, Any]:
    """The JSON form (infinite excesses, and empty ranges, as null)."""
    fitted = model.fitted
    # Version 2: a hard bound must hold the reference's own extreme (1/3 rounded to
    # 0.3333333333 would put the rows on it infinitely far past it).
    bound = _exact_or_none if fitted.low_scale is not None else _finite_or_none
    categorical = iter(fitted.categories)
    features: list[dict[str, Any]] = []
    numeric_index = 0
    for name, flag, missing in zip(fitted.names, fitted.numeric, fitted.missing_seen, strict=True):
        if flag:
            i = numeric_index
            numeric_index += 1
            feature: dict[str, Any] = {
                "name": name,
                "type": "numeric",
                "missingSeen": missing,
                "mean": _rounded(fitted.mean[i : i + 1])[0],
                "std": _rounded(fitted.std[i : i + 1])[0],
                "min": bound(fitted.minimum[i : i + 1])[0],
                "max": bound(fitted.maximum[i : i + 1])[0],
            }
            if fitted.low_scale is not None and fitted.high_scale is not None:
                feature["lowScale"] = float(fitted.low_scale[i])
                feature["highScale"] = float(fitted.high_scale[i])
            if fitted.whole is not None and fitted.whole[i]:
                feature["wholeNumbers"] = True
            features.append(feature)
        else:
            seen = next(categorical)
            features.append(
                {
                    "name": name,
                    "type": "categorical",
                    "missingSeen": missing,
                    "categories": sorted(seen) if seen is not None else None,
                }
            )
    return {
        "kind": OUTLIER_KIND,
        "version": OUTLIER_VERSION if fitted.low_scale is not None else 1,
        "rows": model.rows,
        "features": features,
        "varying": list(fitted.varying),
        "precision": _rounded(fitted.precision),
        "heldOut": {
            "excess": _exact_or_none(model.held_out_excess),
            "distance": _rounded(model.held_out_distance),
            **(
                {"residual": _rounded(model.held_out_residual)}
                if model.held_out_residual is not None and fitted.low_scale is not None
                else {}
            ),
        },
    }


def _field(document: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = document.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise OutlierModelError(
            f"{where}.{key}: missing or not a {getattr(kind, '__name__', kind)}"
        )
    return value


def _scale(value: object, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise OutlierModelError(f"{where}: not a number >= 0")
    return float(value)


def from_document(document: object, where: str = "outliers") -> OutlierModel:
    """Read the JSON form; OutlierModelError names the field that is wrong."""
    if not isinstance(document, Mapping) or document.get("kind") != OUTLIER_KIND:
        raise OutlierModelError(f"{where}: not an {OUTLIER_KIND} document")
    version = document.get("version")
    if isinstance(version, bool) or version not in OUTLIER_VERSIONS:
        raise OutlierModelError(f"{where}.version: {version!r} is not supported")
    items = _field(document, "features", list, where)
    names: list[str] = []
    numeric: list[bool] = []
    stats: list[list[float]] = [[], [], [], []]
    scales: list[list[float]] = [[], []]
    whole: list[bool] = []
    missing_seen: list[bool] = []
    categories: list[frozenset[str] | None] = []
    for index, item in enumerate(items):
        at = f"{where}.features[{index}]"
        if not isinstance(item, Mapping):
            raise OutlierModelError(f"{at}: not an object")
        names.append(str(_field(item, "name", str, at)))
        missing_seen.append(bool(_field(item, "missingSeen", bool, at)))
        if item.get("type") == "numeric":
            numeric.append(True)
            for slot, (key, absent) in enumerate(
                (("mean", None), ("std", None), ("min", math.inf), ("max", -math.inf))
            ):
                value = item.get(key)
                if value is None and absent is not None:
                    stats[slot].append(absent)
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    stats[slot].append(float(value))
                else:
                    raise OutlierModelError(f"{at}.{key}: not a number")
            if version == 2:
                for slot, key in enumerate(("lowScale", "highScale")):
                    scales[slot].append(_scale(item.get(key), f"{at}.{key}"))
                flag = item.get("wholeNumbers", False)
                if not isinstance(flag, bool):
                    raise OutlierModelError(f"{at}.wholeNumbers: true or false")
                whole.append(flag)
        elif item.get("type") == "categorical":
            numeric.append(False)
            seen = item.get("categories")
            if seen is not None and not (
                isinstance(seen, list) and all(isinstance(c, str) for c in seen)
            ):
                raise OutlierModelError(f"{at}.categories: not a list of strings")
            categories.append(frozenset(seen) if seen is not None else None)
        else:
            raise OutlierModelError(f"{at}.type: numeric or categorical")
    width = sum(numeric)
    varying = _field(document, "varying", list, where)
    if not all(isinstance(i, int) and 0 <= i < width for i in varying):
        raise OutlierModelError(f"{where}.varying: indices of numeric features")
    flat = np.asarray(_field(document, "precision", list, where), dtype=np.float64)
    if flat.size != len(varying) ** 2:
        raise OutlierModelError(f"{where}.precision: {len(varying)}x{len(varying)} numbers")
    held = _field(document, "heldOut", Mapping, where)
    excess = np.asarray(
        [math.inf if v is None else v for v in _field(held, "excess", list, f"{where}.heldOut")],
        dtype=np.float64,
    )
    distance = np.asarray(_field(held, "distance", list, f"{where}.heldOut"), dtype=np.float64)
    if excess.size != distance.size or excess.size == 0:
        raise OutlierModelError(f"{where}.heldOut: excess and distance of the same rows")
    residual = None
    if version == 2 and held.get("residual") is not None:
        residual = np.asarray(_field(held, "residual", list, f"{where}.heldOut"), dtype=float)
        if residual.size != excess.size or not np.all(np.isfinite(residual)):
            raise OutlierModelError(f"{where}.heldOut.residual: finite numbers, one per row")
    fitted = Fitted(
        names=tuple(names),
        numeric=tuple(numeric),
        mean=np.asarray(stats[0]),
        std=np.asarray(stats[1]),
        minimum=np.asarray(stats[2]),
        maximum=np.asarray(stats[3]),
        missing_seen=tuple(missing_seen),
        categories=tuple(categories),
        varying=tuple(varying),
        precision=flat.reshape(len(varying), len(varying)),
        low_scale=np.asarray(scales[0]) if version == 2 else None,
        high_scale=np.asarray(scales[1]) if version == 2 else None,
        whole=np.asarray(whole, dtype=bool) if version == 2 else None,
    )
    rows = document.get("rows")
    return OutlierModel(
        fitted, excess, distance, rows if isinstance(rows, int) else excess.size, residual
    )
