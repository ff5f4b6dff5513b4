"""The reference profile: per-feature histograms of the data a model was trained on.

A profile is what ``modelshield drift profile`` writes and what the monitor compares live
traffic with. Numeric features keep quantile bin edges and the count in each bin (so the
reference bins are equally filled, which keeps PSI and chi-square well conditioned);
categorical features keep the most frequent categories with their counts and lump the long
tail into ``other``. Both keep the number of missing values.

The JSON document (``version`` 2; version 1, the same without ``calibrations``, is read
too)::

    {"kind": "DriftProfile", "version": 1, "rows": 10000, "source": "train.csv",
     "features": [
       {"name": "age", "type": "numeric", "edges": [18.0, 25.0, ..., 90.0],
        "counts": [1000, ...], "missing": 3, "min": 18.0, "max": 90.0,
        "mean": 41.2, "std": 12.9, "centres": [21.4, ...]},
       {"name": "country", "type": "categorical",
        "categories": {"DE": 5200, "FR": 3100}, "other": 1690, "missing": 10}],
     "calibrations": [...]}

``edges`` has one more element than ``counts``; bin ``i`` is ``[edges[i], edges[i+1])`` and
the last bin also holds ``edges[-1]`` (the maximum); ``centres`` (optional) is the mean
reference value in each bin. A numeric column with at most ``bins`` distinct values has
one bin per value. The list order of ``features`` is the
column order of list-shaped inputs (``{"instances": [[...], ...]}``). ``calibrations``
(optional) holds the null tables of the features for declared false-alarm rates
(``modelshield.drift.storedcalibration``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import storedcalibration

PROFILE_KIND = "DriftProfile"
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 50

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


class ProfileError(ValueError):
    """A profile that cannot be built, read, or does not match what it is used for."""


@dataclass(frozen=True)
class NumericFeature:
    """A numeric feature: quantile bins and their counts."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    missing: int
    mean: float
    std: float
    centres: tuple[float, ...] = ()
    """The mean reference value in each bin (where Wasserstein puts the bin's mass);
    empty in profiles written before it existed: the bins' midpoints are used."""

    @property
    def positions(self) -> tuple[float, ...]:
        """Where each bin's mass sits: its reference mean, or its midpoint if unknown."""
        if len(self.centres) == len(self.counts):
            return self.centres
        return tuple((a + b) / 2 for a, b in itertools.pairwise(self.edges))

    @property
    def minimum(self) -> float:
        """The smallest reference value."""
        return self.edges[0]

    @property
    def maximum(self) -> float:
        """The largest reference value."""
        return self.edges[-1]


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical feature: the frequent categories, the long tail, the missing."""

    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other: int
    missing: int


Feature = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class Profile:
    """The reference profile of one model's inputs (and, optionally, outputs)."""

    features: tuple[Feature, ...]
    rows: int
    source: str = ""
    calibrations: tuple[storedcalibration.StoredCalibration, ...] = ()
    """Null tables computed when the profile was built, one per window size."""

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in column order."""
        return tuple(feature.name for feature in self.features)

    def feature(self, name: str) -> Feature:
        """The feature called name, or a ProfileError naming the ones there are."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise ProfileError(
            f"feature {name!r} is not in the profile (it has: {', '.join(self.names)})"
        )


def upper_edges(edges: Sequence[float] | FloatArray) -> FloatArray:
    """The edges searched by bin_numeric: the maximum nudged up so that it falls in the last bin."""
    upper = np.array(edges, dtype=np.float64)
    upper[-1] = np.nextafter(upper[-1], np.inf)
    return upper


def bin_numeric(upper: FloatArray, values: FloatArray) -> IndexArray:
    """Slot of each value: 0 below the minimum, 1..k the bins, k+1 above the maximum or NaN.

    ``upper`` comes from upper_edges(). The profile builder and the live windows both bin
    through this function, so reference and live counts can never disagree about an edge.
    """
    return np.searchsorted(upper, values, side="right")


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOLEANS = {"true": True, "false": False}


def _number_key(number: float) -> str:
    if number.is_integer():
        return str(int(number))
    return repr(number)


def category_key(value: object) -> str | None:
    """The category a JSON or CSV value stands for; None when the value is missing.

    The profile builder and the live path both name categories through this function, so
    one value spelled by CSV (always a string, ``2.0`` for a float column written by
    pandas, ``True`` for a boolean) and by JSON (``2.0``, ``2``, ``true``) is one category:
    numbers and plain decimal strings become the shortest spelling of their value (``2``,
    ``2.5``), booleans and their spellings in any case ``true``/``false``; other strings
    are kept as they are, and ``""`` (or only spaces) is missing.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return _number_key(value) if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if text.lower() in _BOOLEANS:
            return text.lower()
        if _DECIMAL.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return _number_key(number)
        return value
    return str(value)


def _bin_means(edges: FloatArray, finite: FloatArray, slots: IndexArray) -> FloatArray:
    """The mean reference value in each bin (the midpoint for an empty bin)."""
    bins = edges.size - 1
    counts = np.bincount(slots, minlength=bins + 2)[1 : bins + 1]
    sums = np.bincount(slots, weights=finite, minlength=bins + 2)[1 : bins + 1]
    midpoints = (edges[:-1] + edges[1:]) / 2
    means: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), midpoints)
    return np.clip(means, edges[:-1], edges[1:])


def _edges(finite: FloatArray, distinct: FloatArray, bins: int) -> FloatArray:
    """Bin edges: one bin per value, or quantiles with every atom in a bin of its own.

    Quantiles that repeat mark an atom (a value holding at least a bin's share, like the
    zeros of a sparse feature); deduplicated, they used to merge it with its neighbours
    (a pixel that is 0 nine times in ten got one bin for all its values, and no shift
    could move mass between bins), so the atom's bin ends at the next distinct value.

    Interior edges then sit halfway between the distinct reference values on either side:
    which reference value falls in which bin does not change, but a live value that moved
    by half a step now leaves its bin in either direction. With edges on the values
    themselves (bins ``[v, w)``), integer data sat at the bottom of each bin: a shift of
    0.5 downwards changed bins, 0.5 upwards never did.
    """
    lowest, highest = distinct[0], distinct[-1]
    if distinct.size <= bins:
        cuts = distinct[1:]
    else:
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1))
        values, repeats = np.unique(quantiles, return_counts=True)
        atoms = values[repeats > 1]
        after = distinct[np.searchsorted(distinct, atoms[atoms < highest], side="right")]
        top = atoms[atoms == highest]  # an atom at the maximum: the last bin holds only it
        cuts = np.concatenate([values[(values > lowest) & (values < highest)], after, top])
    # A cut c separates the values below c from those at or above it: its edge is halfway.
    position = np.searchsorted(distinct, cuts, side="left")
    middles = np.unique((distinct[position - 1] + distinct[position]) / 2)
    return np.concatenate([[lowest], middles, [highest]])


def build_numeric(name: str, values: FloatArray, bins: int = DEFAULT_BINS) -> NumericFeature:
    """Profile a numeric column (NaN and infinities count as missing).

    A column with at most ``bins`` distinct values gets one bin per value (the last bin
    closed: ``[v1, m12), [m12, m23), ..., [m(k-1)k, vk]`` with ``m`` halfway between
    values), so that a 0/1 feature has two bins; otherwise the bins are quantiles, each
    atom in a bin of its own (``_edges``).
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ProfileError(f"numeric feature {name!r} has no finite values")
    distinct = np.unique(finite)
    edges = _edges(finite, distinct, bins)
    slots = bin_numeric(upper_edges(edges), finite)
    counts = np.bincount(slots, minlength=edges.size + 1)[1 : edges.size]
    return NumericFeature(
        name=name,
        edges=tuple(float(edge) for edge in edges),
        counts=tuple(int(count) for count in counts),
        missing=int(values.size - finite.size),
        mean=float(finite.mean()),
        std=float(finite.std()),
        centres=tuple(float(centre) for centre in _bin_means(edges, finite, slots)),
    )


def build_categorical(
    name: str, values: Iterable[object], max_categories: int = DEFAULT_MAX_CATEGORIES
) -> CategoricalFeature:
    """Profile a categorical column, keeping the max_categories most frequent categories."""
    counter: Counter[str] = Counter()
    missing = 0
    for value in values:
        key = category_key(value)
        if key is None:
            missing += 1
        else:
            counter[key] += 1
    if not counter:
        raise ProfileError(f"categorical feature {name!r} has no values")
    kept = counter.most_common(max_categories)
    return CategoricalFeature(
        name=name,
        categories=tuple(category for category, _ in kept),
        counts=tuple(count for _, count in kept),
        other=sum(counter.values()) - sum(count for _, count in kept),
        missing=missing,
    )


def _as_number(value: object) -> float | None:
    """The float a value stands for, None when missing; ValueError when it is not a number.

    Booleans are 0 and 1 (JSON ``true``, CSV ``True`` or ``true``), as the live path
    counts them; numeric strings (CSV cells) are their number.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        flag = _BOOLEANS.get(value.strip().lower())
        return float(flag) if flag is not None else float(value)
    raise ValueError(value)


def numeric_column(values: Sequence[object]) -> FloatArray | None:
    """The column as floats (missing as NaN), or None when some value is not a number."""
    try:
        numbers = [_as_number(value) for value in values]
    except ValueError:
        return None
    return np.array(
        [math.nan if number is None else number for number in numbers], dtype=np.float64
    )


def build(
    columns: Mapping[str, Sequence[object]],
    features: Sequence[str] = (),
    *,
    categorical: Iterable[str] = (),
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    source: str = "",
) -> Profile:
    """Build a profile from columns of raw values (CSV strings, JSON values, Arrow values).

    A column is numeric when every present value is a number (or a string that parses as
    one), unless it is named in ``categorical``. ``features`` picks and orders the columns;
    empty takes them all in the order given.
    """
    names = list(features) or list(columns)
    absent = [name for name in names if name not in columns]
    if absent:
        raise ProfileError(
            f"features not in the data: {', '.join(absent)} (columns: {', '.join(columns)})"
        )
    forced = set(categorical)
    unknown = forced - set(names)
    if unknown:
        raise ProfileError(
            f"--categorical names features not profiled: {', '.join(sorted(unknown))}"
        )
    if bins < 1 or max_categories < 1:
        raise ProfileError("bins and max_categories must be at least 1")
    lengths = {len(columns[name]) for name in names}
    if len(lengths) != 1:
        raise ProfileError("columns have different lengths")
    built: list[Feature] = []
    for name in names:
        numbers = None if name in forced else numeric_column(columns[name])
        if numbers is not None:
            built.append(build_numeric(name, numbers, bins))
        else:
            built.append(build_categorical(name, columns[name], max_categories))
    return Profile(features=tuple(built), rows=lengths.pop(), source=source)


def to_document(profile: Profile) -> dict[str, Any]:
    """The profile as its JSON document."""
    features: list[dict[str, Any]] = []
    for feature in profile.features:
        if isinstance(feature, NumericFeature):
            features.append(
                {
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
            )
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
        return NumericFeature(
            name=name,
            edges=tuple(edge_values),
            counts=tuple(_count(count, f"{where}.counts[{i}]") for i, count in enumerate(counts)),
            missing=missing,
            mean=_number(item.get("mean", 0.0), f"{where}.mean"),
            std=_number(item.get("std", 0.0), f"{where}.std"),
            centres=_centres(item.get("centres"), edge_values, f"{where}.centres"),
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
