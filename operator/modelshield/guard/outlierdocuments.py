"""The outlier model's JSON form, as ``modelshield drift profile`` stores it. Pure (numpy).

The profile's ``outliers`` key (and the guard's configuration, which the operator copies it
into) holds this document. Version 2 stores each numeric feature's tail scales
(``lowScale``, ``highScale``), ``wholeNumbers`` and the held-out residuals; version 1 (no
scales: range excess in standard deviations) is still read and written for version 1
models. ``from_document`` fails closed: an ``OutlierModelError`` names the wrong field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelshield.guard.outliertypes import Fitted, FloatArray, OutlierModel, OutlierModelError

OUTLIER_KIND = "OutlierModel"
#: Version 2 stores each numeric feature's tail scales (lowScale, highScale) and measures
#: range excess in them; version 1 (no scales: standard deviations) is still read.
OUTLIER_VERSION = 2
OUTLIER_VERSIONS = (1, 2)
_SIGNIFICANT = 10


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
        # Optional: a guard that does not know it reads the rest as before.
        **({"nearDuplicate": model.near_duplicate} if model.near_duplicate > 0 else {}),
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


def near_duplicate_ceiling(std: FloatArray) -> float:
    """The largest ``nearDuplicate`` a profile may declare: the root mean square distance
    between two reference rows in the standard units probing uses, which is exactly
    sqrt(2 x the numeric features that vary) for the rows the mean and standard deviation
    were taken from. The radius is a low quantile of each row's distance to its nearest
    other row, far below it (0.16 of it on breast cancer and digits)."""
    return math.sqrt(2 * int(np.count_nonzero(std > 0)))


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
    radius = document.get("nearDuplicate", 0.0)
    if (
        isinstance(radius, bool)
        or not isinstance(radius, int | float)
        or not 0 <= radius < math.inf
    ):
        raise OutlierModelError(f"{where}.nearDuplicate: a finite number, at least 0")
    ceiling = near_duplicate_ceiling(fitted.std)
    if radius > ceiling:
        # A radius this large would leave out most queries of every client from PRADA's
        # test: refused rather than read as "probing off".
        raise OutlierModelError(
            f"{where}.nearDuplicate: {radius:g} is above {ceiling:.3g}, the root mean square "
            "distance between two reference rows in standard units (sqrt of twice the "
            "varying numeric features); a near-duplicate radius is far below it"
        )
    return OutlierModel(
        fitted,
        excess,
        distance,
        rows if isinstance(rows, int) else excess.size,
        residual,
        float(radius),
    )
