"""The profile's JSON document: writing, reading (with the path of what is wrong) and its digest.

The document (``version`` 2; version 1, the same without ``calibrations``, is read too)::

    {"kind": "DriftProfile", "version": 1, "rows": 10000, "source": "train.csv",
     "features": [
       {"name": "age", "type": "numeric", "edges": [18.0, 25.0, ..., 90.0],
        "counts": [1000, ...], "missing": 3, "min": 18.0, "max": 90.0,
        "mean": 41.2, "std": 12.9, "centres": [21.4, ...]},
       {"name": "pixel", "type": "numeric", "edges": [...], "counts": [...], ...,
        "support": {"values": [0.0, 1.0, ..., 16.0], "counts": [601, 40, ..., 12]}},
       {"name": "country", "type": "categorical",
        "categories": {"DE": 5200, "FR": 3100}, "other": 1690, "missing": 10}],
     "calibrations": [...]}

``edges`` has one more element than ``counts`` (``modelshield.drift.profiles`` says what a
bin holds); ``centres`` (optional) is the mean reference value in each bin. ``support`` (optional; only for a feature whose values sit on a small discrete set)
lists the distinct reference values with their counts: live values off it are unseen
values. A profile without it (every profile written before it existed) has none. The list order
of ``features`` is the column order of list-shaped inputs (``{"instances": [[...], ...]}``).
``calibrations`` (optional) holds the null tables of the features for declared false-alarm
rates (``modelshield.drift.storedcalibration``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any

from modelshield.drift import storedcalibration
from modelshield.drift.profiles import (
    CategoricalFeature,
    Feature,
    NumericFeature,
    Profile,
    ProfileError,
)

PROFILE_KIND = "DriftProfile"
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)


def to_document(profile: Profile) -> dict[str, Any]:
    """The profile as its JSON document."""
    features: list[dict[str, Any]] = []
    for feature in profile.features:
        if isinstance(feature, NumericFeature):
            numeric: dict[str, Any] = {
                "name": feature.name,
                "type": "numeric",
                "edges": list(feature.edges),
                "counts": list(feature.counts),
                "missing": feature.missing,
                "min": feature.minimum,
                "max": feature.maximum,
                "mean": feature.mean,
                "std": feature.std,
                "centres": list(feature.positions),
            }
            if feature.support:
                numeric["support"] = {
                    "values": list(feature.support),
                    "counts": list(feature.support_counts),
                }
            features.append(numeric)
        else:
            features.append(
                {
                    "name": feature.name,
                    "type": "categorical",
                    "categories": dict(zip(feature.categories, feature.counts, strict=True)),
                    "other": feature.other,
                    "missing": feature.missing,
                }
            )
    document: dict[str, Any] = {
        "kind": PROFILE_KIND,
        "version": PROFILE_VERSION,
        "rows": profile.rows,
        "source": profile.source,
        "features": features,
    }
    if profile.calibrations:
        document["calibrations"] = [
            storedcalibration.to_document(stored) for stored in profile.calibrations
        ]
    return document


def fingerprint(profile: Profile) -> str:
    """A digest of what a calibration depends on: the rows and every feature's histogram."""
    document = to_document(profile)
    content = json.dumps([document["rows"], document["features"]], sort_keys=True)
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProfileError(f"{where}: expected a count (a non-negative integer), got {value!r}")
    return value


def _number(value: object, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ProfileError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _centres(value: object, edges: list[float], where: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) != len(edges) - 1:
        raise ProfileError(f"{where}: expected a list of one number per bin")
    centres = tuple(_number(centre, f"{where}[{i}]") for i, centre in enumerate(value))
    for i, centre in enumerate(centres):
        if not edges[i] <= centre <= edges[i + 1]:
            raise ProfileError(
                f"{where}[{i}]: {centre} is outside its bin [{edges[i]}, {edges[i + 1]}]"
            )
    return centres


def _support(
    value: object, edges: list[float], counts: list[int], where: str
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The support's values (strictly rising, within the edges) and counts (one per value)."""
    if value is None:
        return (), ()
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected an object with lists 'values' and 'counts'")
    values_item, counts_item = value.get("values"), value.get("counts")
    if not isinstance(values_item, list) or not isinstance(counts_item, list) or not values_item:
        raise ProfileError(f"{where}: expected non-empty lists 'values' and 'counts'")
    if len(values_item) != len(counts_item):
        raise ProfileError(f"{where}: 'values' and 'counts' must have one count per value")
    values = tuple(_number(item, f"{where}.values[{i}]") for i, item in enumerate(values_item))
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ProfileError(f"{where}.values: must strictly rise")
    if values[0] != edges[0] or values[-1] != edges[-1]:
        raise ProfileError(
            f"{where}.values: must run from the minimum {edges[0]} to the maximum {edges[-1]}"
        )
    support_counts = tuple(
        _count(item, f"{where}.counts[{i}]") for i, item in enumerate(counts_item)
    )
    if sum(support_counts) != sum(counts):
        raise ProfileError(
            f"{where}.counts: must add up to the bins' counts ({sum(counts)} present values)"
        )
    return values, support_counts


def _feature_from(item: object, where: str) -> Feature:
    if not isinstance(item, dict):
        raise ProfileError(f"{where}: expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.name: expected a non-empty string")
    kind = item.get("type")
    missing = _count(item.get("missing", 0), f"{where}.missing")
    if kind == "numeric":
        edges = item.get("edges")
        counts = item.get("counts")
        if not isinstance(edges, list) or not isinstance(counts, list):
            raise ProfileError(f"{where}: a numeric feature needs lists 'edges' and 'counts'")
        edge_values = [_number(edge, f"{where}.edges[{i}]") for i, edge in enumerate(edges)]
        if len(edge_values) != len(counts) + 1 or not counts:
            raise ProfileError(f"{where}: 'edges' must have one more element than 'counts'")
        if any(b < a for a, b in itertools.pairwise(edge_values)):
            raise ProfileError(f"{where}.edges: must not decrease")
        bin_counts = [_count(count, f"{where}.counts[{i}]") for i, count in enumerate(counts)]
        support, support_counts = _support(
            item.get("support"), edge_values, bin_counts, f"{where}.support"
        )
        return NumericFeature(
            name=name,
            edges=tuple(edge_values),
            counts=tuple(bin_counts),
            missing=missing,
            mean=_number(item.get("mean", 0.0), f"{where}.mean"),
            std=_number(item.get("std", 0.0), f"{where}.std"),
            centres=_centres(item.get("centres"), edge_values, f"{where}.centres"),
            support=support,
            support_counts=support_counts,
        )
    if kind == "categorical":
        categories = item.get("categories")
        if not isinstance(categories, dict) or not categories:
            raise ProfileError(f"{where}.categories: expected a non-empty object of counts")
        return CategoricalFeature(
            name=name,
            categories=tuple(str(key) for key in categories),
            counts=tuple(_count(v, f"{where}.categories.{k}") for k, v in categories.items()),
            other=_count(item.get("other", 0), f"{where}.other"),
            missing=missing,
        )
    raise ProfileError(f"{where}.type: expected 'numeric' or 'categorical', got {kind!r}")


def from_document(document: object) -> Profile:
    """Read a profile document, with the JSON path of whatever is wrong in it."""
    if not isinstance(document, dict):
        raise ProfileError("a profile is a JSON object")
    if document.get("kind", PROFILE_KIND) != PROFILE_KIND:
        raise ProfileError(f"kind: expected {PROFILE_KIND!r}, got {document.get('kind')!r}")
    version = document.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ProfileError(
            f"version: this monitor reads profile versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}, got {version!r}"
        )
    items = document.get("features")
    if not isinstance(items, list) or not items:
        raise ProfileError("features: expected a non-empty list")
    features = tuple(_feature_from(item, f"features[{i}]") for i, item in enumerate(items))
    names = [feature.name for feature in features]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ProfileError(f"features: duplicate names {', '.join(duplicates)}")
    rows = _count(document.get("rows", 0), "rows")
    source = document.get("source", "")
    items = document.get("calibrations", [])
    if not isinstance(items, list):
        raise ProfileError("calibrations: expected a list")
    try:
        calibrations = tuple(
            storedcalibration.from_document(item, f"calibrations[{i}]")
            for i, item in enumerate(items)
        )
    except storedcalibration.CalibrationDocumentError as error:
        raise ProfileError(str(error)) from None
    return Profile(features=features, rows=rows, source=str(source), calibrations=calibrations)
