"""The reference profile: per-feature histograms of the data a model was trained on.

A profile is what ``modelshield drift profile`` writes and what the monitor compares live
traffic with. Numeric features keep quantile bin edges and the count in each bin (so the
reference bins are equally filled, which keeps PSI and chi-square well conditioned);
categorical features keep the most frequent categories with their counts and lump the long
tail into ``other``. Both keep the number of missing values.

Bin ``i`` of a numeric feature is ``[edges[i], edges[i+1])`` and the last bin also holds
``edges[-1]`` (the maximum); ``centres`` (optional) is the mean reference value in each
bin. A numeric column with at most ``bins`` distinct values has one bin per value. A
numeric column whose values sit on a small discrete set (``discrete_support``: whole-number
pixel counts, codes, ratings) also keeps that set, its ``support``: live values not on it
count as unseen values, as a category the profile lacks does. The
JSON document is ``modelshield.drift.profiledocuments``; how raw values read as numbers
and categories is ``modelshield.drift.rawvalues``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import storedcalibration
from modelshield.drift.rawvalues import category_key, numeric_column

DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 50
MAX_SUPPORT = 64
"""Most distinct values a numeric feature may have for its support to be kept."""
MAX_SEEN_ONCE_SHARE = 0.1
"""Most reference values seen only once (as a share of the present values) for a support:
beyond it the reference says little about which values the population holds (Good and
Turing: the share of values seen once estimates the share of values never seen)."""
SUPPORT_TOLERANCE = 1e-6
"""Relative distance within which a live value is a support value: a float32 tensor's
0.1 (0.10000000149...) is the reference's 0.1."""

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
    support: tuple[float, ...] = ()
    """The distinct reference values, ascending, when they are few (``discrete_support``);
    empty for a continuous feature and in profiles written before it existed."""
    support_counts: tuple[int, ...] = ()
    """How many reference rows hold each support value."""

    @property
    def seen_once(self) -> int:
        """Support values the reference holds once (Good and Turing's estimate of the unseen)."""
        return sum(1 for count in self.support_counts if count == 1)

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


WHOLE_NUMBER_SPAN = 4096
"""Whole-number supports spanning at most this many values are tested with a lookup table."""
WHOLE_NUMBER_LIMIT = 1e5
"""...and no larger than this: their tolerance (1e-6 of the value) then stays under a third
of the gap between whole numbers, as the interval search has it."""


@dataclass(frozen=True)
class SupportTest:
    """Which live values are off a feature's support: the per-value test of the live path.

    Whole numbers (pixel counts, codes, ratings) spanning at most WHOLE_NUMBER_SPAN values
    are looked up in a table (the nearest whole number, then its distance against the
    tolerance); other supports search the values' tolerance intervals (``bounds``: one
    search per value, about as dear as binning it).
    """

    bounds: FloatArray
    """Each support value's interval, flat: ``[low0, high0, low1, high1, ...]``."""
    start: float = 0.0
    members: NDArray[np.bool_] | None = None
    """Whole numbers only: ``members[v - start]`` says whether v is on the support."""

    @classmethod
    def of(cls, support: Sequence[float]) -> SupportTest:
        """The test of a (strictly rising, non-empty) support."""
        values = np.array(support, dtype=np.float64)
        half = SUPPORT_TOLERANCE * np.abs(values)
        if values.size > 1:  # never more than a third of a gap: the intervals stay apart
            gaps = np.diff(values) / 3
            half[:-1] = np.minimum(half[:-1], gaps)
            half[1:] = np.minimum(half[1:], gaps)
        bounds = np.empty(2 * values.size)
        bounds[0::2] = values - half
        bounds[1::2] = np.nextafter(values + half, np.inf)  # 0's interval holds 0
        span = values[-1] - values[0] + 1
        whole = np.all(values == np.rint(values)) and np.abs(values).max() <= WHOLE_NUMBER_LIMIT
        if whole and span <= WHOLE_NUMBER_SPAN:
            members = np.zeros(int(span), dtype=np.bool_)
            members[(values - values[0]).astype(np.intp)] = True
            return cls(bounds, float(values[0]), members)
        return cls(bounds)

    def off(self, values: FloatArray, finite: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Which values are finite and not on the support (missing values are not off it)."""
        if self.members is None:
            # A value inside [low, high) lands after an odd number of bounds.
            inside = np.searchsorted(self.bounds, values, side="right") & 1
            result: NDArray[np.bool_] = finite & (inside == 0)
            return result
        rounded = np.rint(values)
        index = rounded - self.start
        with np.errstate(invalid="ignore"):
            near = np.abs(values - rounded) <= SUPPORT_TOLERANCE * np.abs(rounded)
            whole = near & (index >= 0) & (index < self.members.size)
        member = self.members[np.where(whole, index, 0).astype(np.intp)]
        off: NDArray[np.bool_] = finite & ~(whole & member)
        return off


def discrete_support(distinct: FloatArray, repeats: IndexArray) -> bool:
    """Whether a feature's reference values (distinct, each repeated) sit on a discrete set.

    (Kept only where bins hold several values: ``build_numeric``.) At most MAX_SUPPORT
    distinct values, of which at most MAX_SEEN_ONCE_SHARE of the
    present values are seen once: the digits pixels (17 values in 797 rows, at most 6
    seen once) are; breast cancer's measurements (about 220 values in 285 rows, most
    seen once) are not.
    """
    seen_once = int(np.count_nonzero(repeats == 1))
    return distinct.size <= MAX_SUPPORT and seen_once <= MAX_SEEN_ONCE_SHARE * repeats.sum()


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
    distinct, repeats = np.unique(finite, return_counts=True)
    # With one bin per value the bins already tell the values apart (a value off them
    # lands in a neighbour's bin); an unseen bin there only made the null heavier (PSI
    # found 91.9 % of breast cancer's binary +30 points at 250 rows, 100 % without).
    discrete = distinct.size > bins and discrete_support(distinct, repeats)
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
        support=tuple(float(value) for value in distinct) if discrete else (),
        support_counts=tuple(int(count) for count in repeats) if discrete else (),
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
