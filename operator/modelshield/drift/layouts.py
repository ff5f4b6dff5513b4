"""The slot layout: where each feature's histogram lives in one flat counts array.

Every window (and the reference) is a single ``int64`` array of slots, so that a batch of
rows becomes one ``np.bincount`` whatever the number of features. Per feature:

- numeric, ``k`` bins: ``[missing, below-min, bin 0 .. bin k-1, above-max]`` (k + 3 slots);
- categorical, ``c`` categories: ``[missing, other, category 0 .. category c-1]`` (c + 2).

A numeric feature with a discrete support (``profiles.NumericFeature.support``) has one more
slot, after every feature's slots: its *unseen* count, the window's values that are not
one of the reference's values (each also counted in its bin); values on the support add
to one spare slot at the very end, which nothing reads. The reference's unseen counts
are 0 (every reference value is on its support).

Features with the same kind, slot count and support (or none) form a *group*; the
statistics run once per group on a 2-D array (features x slots) rather than once per
feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import profiles

CountArray = NDArray[np.int64]

MISSING_SLOT = 0
BELOW_SLOT = 1
OTHER_SLOT = 1
FIRST_CATEGORY_SLOT = 2


@dataclass(frozen=True)
class Group:
    """Features of one kind and slot count, for statistics on a 2-D array."""

    numeric: bool
    features: NDArray[np.intp]
    """Positions of the group's features in Layout.names."""
    slots: NDArray[np.intp]
    """features x slots: where each feature's slots are in the flat counts array."""
    positions: NDArray[np.float64]
    """Numeric only: a representative value per present-value slot (below, bins, above)."""
    scales: NDArray[np.float64]
    """Numeric only: the reference standard deviation, to make Wasserstein unit-free."""
    unseen: NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    """Numeric with a support only: each member's unseen slot (empty: no support)."""
    seen_once: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    """Numeric with a support only: each member's support values seen once."""


@dataclass(frozen=True)
class Layout:
    """The slots of a set of watched features, in the order of the incoming columns."""

    columns: tuple[str, ...]
    """Every column a list-shaped row holds, in order (watched or not)."""
    names: tuple[str, ...]
    """The watched features: numeric ones first, then categorical ones."""
    numeric_columns: tuple[int, ...]
    """For each numeric watched feature, its position in columns."""
    categorical_columns: tuple[int, ...]
    """For each categorical watched feature, its position in columns."""
    uppers: tuple[NDArray[np.float64], ...]
    codes: tuple[dict[str, int], ...]
    """For each categorical watched feature: category -> slot within the feature."""
    offsets: NDArray[np.intp]
    """Start of each watched feature's slots (numeric then categorical)."""
    reference: CountArray
    groups: tuple[Group, ...]
    discrete: tuple[int, ...] = ()
    """Positions (among the numeric watched features) of those with a support."""
    supports: tuple[profiles.SupportTest, ...] = ()
    """Their supports' per-value tests."""
    unseen_slots: NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    """Their unseen slots."""
    spare_slot: int = 0
    """Where values on a support are counted (unread); only with a support."""

    @property
    def total_slots(self) -> int:
        """Length of a counts array."""
        return int(self.reference.size)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        """Names of the numeric watched features."""
        return self.names[: len(self.numeric_columns)]

    @property
    def categorical_names(self) -> tuple[str, ...]:
        """Names of the categorical watched features."""
        return self.names[len(self.numeric_columns) :]


def _slots_of(feature: profiles.Feature) -> list[int]:
    if isinstance(feature, profiles.NumericFeature):
        return [feature.missing, 0, *feature.counts, 0]
    return [feature.missing, feature.other, *feature.counts]


def _positions(feature: profiles.NumericFeature) -> list[float]:
    """Where the mass of each present-value slot sits: below, the bins, above.

    A bin's mass sits at its reference mean (not its midpoint, which on a skewed feature is
    far from where the values are); out-of-range mass at min and max until a window says
    where its out-of-range values are (statistics.score puts it at their mean).
    """
    return [feature.minimum, *feature.positions, feature.maximum]


def build(profile: profiles.Profile, columns: Sequence[str], watched: Sequence[str] = ()) -> Layout:
    """The layout of the watched features (default: every column) of a profile."""
    watched = list(watched) or list(columns)
    for name in [*columns, *watched]:
        profile.feature(name)
    stray = [name for name in watched if name not in columns]
    if stray:
        raise profiles.ProfileError(f"watched features that are not columns: {', '.join(stray)}")
    features = [profile.feature(name) for name in watched]
    numeric = [f for f in features if isinstance(f, profiles.NumericFeature)]
    categorical = [f for f in features if isinstance(f, profiles.CategoricalFeature)]
    ordered: list[profiles.Feature] = [*numeric, *categorical]
    sizes = [len(_slots_of(feature)) for feature in ordered]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    discrete = [i for i, feature in enumerate(numeric) if feature.support]
    feature_slots = int(sum(sizes))
    unseen_of = {i: feature_slots + n for n, i in enumerate(discrete)}
    extra = [0] * (len(discrete) + 1) if discrete else []  # unseen slots, then the spare
    reference = np.array(
        [count for feature in ordered for count in _slots_of(feature)] + extra, dtype=np.int64
    )
    by_shape: dict[tuple[bool, int, bool], list[int]] = {}
    for index, (feature, size) in enumerate(zip(ordered, sizes, strict=True)):
        is_numeric = isinstance(feature, profiles.NumericFeature)
        key = (is_numeric, size, index in unseen_of)
        by_shape.setdefault(key, []).append(index)
    groups = []
    for (is_numeric, size, has_support), members in by_shape.items():
        member_array = np.array(members, dtype=np.intp)
        slots = offsets[member_array][:, None] + np.arange(size, dtype=np.intp)[None, :]
        if is_numeric:
            numeric_members = [ordered[i] for i in members]
            positions = np.array(
                [_positions(f) for f in numeric_members if isinstance(f, profiles.NumericFeature)]
            )
            scales = np.array(
                [
                    f.std if isinstance(f, profiles.NumericFeature) and f.std > 0 else 1.0
                    for f in numeric_members
                ]
            )
        else:
            positions = np.empty((len(members), 0))
            scales = np.ones(len(members))
        group = Group(is_numeric, member_array, slots, positions, scales)
        if has_support:
            supported = [ordered[i] for i in members]
            group = Group(
                is_numeric,
                member_array,
                slots,
                positions,
                scales,
                unseen=np.array([unseen_of[i] for i in members], dtype=np.intp),
                seen_once=np.array(
                    [f.seen_once for f in supported if isinstance(f, profiles.NumericFeature)],
                    dtype=np.float64,
                ),
            )
        groups.append(group)
    return Layout(
        columns=tuple(columns),
        names=tuple(feature.name for feature in ordered),
        numeric_columns=tuple(columns.index(f.name) for f in numeric),
        categorical_columns=tuple(columns.index(f.name) for f in categorical),
        uppers=tuple(profiles.upper_edges(f.edges) for f in numeric),
        codes=tuple(
            {category: FIRST_CATEGORY_SLOT + i for i, category in enumerate(f.categories)}
            for f in categorical
        ),
        offsets=offsets,
        reference=reference,
        groups=tuple(groups),
        discrete=tuple(discrete),
        supports=tuple(profiles.SupportTest.of(numeric[i].support) for i in discrete),
        unseen_slots=np.array([unseen_of[i] for i in discrete], dtype=np.intp),
        spare_slot=feature_slots + len(discrete),
    )
