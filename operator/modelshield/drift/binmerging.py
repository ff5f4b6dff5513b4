"""Thin bins merged for a window size: the bins the monitor scores and calibrates on.

A profile's bins do not depend on the window, but their noise does: a bin holding 3 % of
the reference expects 3 rows of a 100-row window, so clean windows often leave it empty or
double it, and the calibrated null of PSI, chi-square and Jensen–Shannon puts its tail
above the small moves of many features at once (issue 18: on digits at 100 rows PSI found
30 % of a label subpopulation that a per-column KS test found 50 % of). Cochran's rule
for chi-square asks for an expected count of at least 5 per cell; the monitor merges
adjacent bins until each expects ``least`` rows of its window (``DEFAULT_LEAST_EXPECTED``,
10), measured in ``bench/drift_evaluation.py``. Only where thresholds are calibrated
(``falseAlarmRate``): fixed thresholds were chosen for the profile's bins.

Per numeric feature, from the lowest bin up, bins join a group until the group's
reference share times the window reaches ``least``; a short last group joins the one
before it. What is deliberately left as it is:

- a feature that would be left with one bin keeps its bins (the rare value of a 0/1
  feature stays visible: 95 zeros and 5 ones of a 100-row window would become one bin);
- the missing-values slot is never merged: it is not on the value axis, it has no
  neighbour, and merging it into a bin would hide a rise of missing values; its
  thinness is in the calibrated null as before;
- the out-of-range slots (below the minimum, above the maximum) stay, as they expect 0;
- a discrete support stays as it is: values off it still count as unseen, whichever
  bin they fall in;
- categorical features are not merged: their categories have no order, so no bin has a
  neighbour, and folding thin categories into ``other`` would change which live values
  count as unseen (their long tail is cut at profile time: ``--max-categories``).

The expected count of a bin is ``window * count / rows`` with ``rows`` the feature's
reference rows, missing ones included (the share of a window's rows the bin expects).
Pure functions: the profile command (stored calibrations), the monitor and the
evaluation harness all call ``for_window``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from modelshield.drift import profiles

DEFAULT_LEAST_EXPECTED = 10.0
"""Rows of a window each merged bin expects at least (the monitor's ``leastExpected``)."""


def group_ends(counts: tuple[int, ...], rows: int, window: int, least: float) -> list[int]:
    """The index of each merged group's last bin (every index: nothing merged)."""
    everything = list(range(len(counts)))
    if least <= 0 or rows <= 0 or len(counts) < 2:
        return everything
    expected = np.array(counts, dtype=np.float64) * window / rows
    ends: list[int] = []
    running = 0.0
    for index, value in enumerate(expected):
        running += float(value)
        if running >= least:
            ends.append(index)
            running = 0.0
    if not ends:
        return everything  # the whole feature expects fewer than least rows
    ends[-1] = len(counts) - 1  # a short last group joins the one before it
    if len(ends) < 2:
        return everything  # one bin would see nothing
    return ends


def merged_feature(
    feature: profiles.NumericFeature, window: int, least: float
) -> profiles.NumericFeature:
    """The feature with adjacent thin bins merged (the same object when none are)."""
    rows = sum(feature.counts) + feature.missing
    ends = group_ends(feature.counts, rows, window, least)
    if len(ends) == len(feature.counts):
        return feature
    starts = [0, *(end + 1 for end in ends[:-1])]
    edges = (feature.edges[0], *(feature.edges[end + 1] for end in ends))
    counts = np.array(feature.counts, dtype=np.float64)
    positions = np.array(feature.positions, dtype=np.float64)
    merged: list[int] = []
    centres: list[float] = []
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        total = int(sum(feature.counts[start : end + 1]))
        merged.append(total)
        if total:  # the group's reference mean: its bins' means weighted by their counts
            weights = counts[start : end + 1]
            centre = float(np.average(positions[start : end + 1], weights=weights))
        else:
            centre = (edges[i] + edges[i + 1]) / 2
        centres.append(min(max(centre, edges[i]), edges[i + 1]))
    return dataclasses.replace(feature, edges=edges, counts=tuple(merged), centres=tuple(centres))


def for_window(profile: profiles.Profile, window: int, least: float) -> profiles.Profile:
    """The profile with every numeric feature's thin bins merged for this window size.

    The same object when nothing merges (e.g. windows of 1,000 rows on 10 quantile bins),
    so that its fingerprint, and the stored tables made on it, are the profile's own.
    """
    features = tuple(
        merged_feature(feature, window, least)
        if isinstance(feature, profiles.NumericFeature)
        else feature
        for feature in profile.features
    )
    if all(a is b for a, b in zip(features, profile.features, strict=True)):
        return profile
    return dataclasses.replace(profile, features=features)


def merged_names(original: profiles.Profile, scored: profiles.Profile) -> tuple[str, ...]:
    """The features whose bins ``for_window`` merged."""
    return tuple(
        a.name for a, b in zip(original.features, scored.features, strict=True) if a is not b
    )
