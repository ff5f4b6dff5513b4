"""Calibrated null tables stored in a profile: what ``modelshield drift profile`` computes once.

Calibrating 64 features for a 1 % false-alarm rate simulates 32,000 windows per feature
(``modelshield.drift.calibration``): seconds of CPU that every monitor start would repeat.
The profile builder does it once and stores, per window size, each feature's null table
(the upper quantiles of each statistic's clean-window score) under ``calibrations``::

    "calibrations": [
      {"window": 1000, "samples": 32000, "seed": 18, "fingerprint": "sha256:...",
       "tails": [1.0, 0.9, ..., 0.000156],
       "features": {"age": {"PSI": [0.01, ...], "KolmogorovSmirnov": [...], ...}, ...}}]

``fingerprint`` is the digest of the histograms the tables were made on
(``profiledocuments.fingerprint``): from revision 3 on, the profile's bins merged for the
table's window (``binmerging.for_window`` with ``leastExpected``, stored too), which are
the profile's own bins where nothing merges. A profile edited after calibration no
longer matches and the monitor calibrates at start, as it does for profiles without
calibrations (version 1), for a window size or a false-alarm rate the stored tables do
not cover, and for tables made before the merge (revision 1 or 2) on a window where the
monitor merges bins. A statistic that does not apply to a
feature (KS on a categorical one) is left out of its object.

This module only reads and writes the document; it imports nothing of the drift package,
so that the profile can hold its calibrations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelshield.api.v1alpha1 import policies

STATISTICS = tuple(statistic.value for statistic in policies.DriftStatistic)
REVISION = 3
"""The revision the tables are made with. 1 (documents without ``revision``): before
chi-square's term for values off a discrete support, so their chi-square tables do not
fit a feature with a support; 2: with it, on the profile's bins as they are; 3: on the
bins merged for the window (``leastExpected``), fingerprinted on them."""
SIGNIFICANT = 7
"""Digits kept of each quantile: the document stays small and the thresholds move by less
than a millionth."""


class CalibrationDocumentError(ValueError):
    """A stored calibration that cannot be read (the message has the field path)."""


@dataclass(frozen=True)
class StoredCalibration:
    """The null tables of every profiled feature at one window size."""

    window: int
    samples: int
    seed: int
    fingerprint: str
    tails: tuple[float, ...]
    features: Mapping[str, Mapping[str, tuple[float, ...]]]
    """feature -> statistic name -> one quantile per tail."""
    revision: int = REVISION
    least_expected: float = 0.0
    """Revision 3: the rows of a window each merged bin expects at least (0: no merge;
    always 0 before revision 3)."""

    @property
    def resolved(self) -> float:
        """The smallest tail probability the tables read off the simulation."""
        return self.tails[-1]


def _rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def to_document(stored: StoredCalibration) -> dict[str, Any]:
    """The calibration as its JSON object (revision 1 writes no revision, as it was read)."""
    revision: dict[str, Any] = {"revision": stored.revision} if stored.revision > 1 else {}
    if stored.revision >= 3:
        revision["leastExpected"] = stored.least_expected
    return {
        **revision,
        "window": stored.window,
        "samples": stored.samples,
        "seed": stored.seed,
        "fingerprint": stored.fingerprint,
        "tails": [_rounded(tail) for tail in stored.tails],
        "features": {
            name: {statistic: [_rounded(q) for q in row] for statistic, row in rows.items()}
            for name, rows in stored.features.items()
        },
    }


def _integer(value: object, where: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CalibrationDocumentError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _numbers(value: object, where: str, length: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise CalibrationDocumentError(f"{where}: expected a non-empty list of numbers")
    if length is not None and len(value) != length:
        raise CalibrationDocumentError(f"{where}: expected {length} numbers (one per tail)")
    numbers = []
    for i, item in enumerate(value):
        if (
            not isinstance(item, int | float)
            or isinstance(item, bool)
            or not math.isfinite(item)
            or item < 0
        ):
            raise CalibrationDocumentError(f"{where}[{i}]: expected a finite number >= 0")
        numbers.append(float(item))
    if any(b < a for a, b in itertools.pairwise(numbers)):
        raise CalibrationDocumentError(f"{where}: quantiles must not decrease towards the tail")
    return tuple(numbers)


def from_document(item: object, where: str) -> StoredCalibration:
    """Read one stored calibration, with the field path of whatever is wrong in it."""
    if not isinstance(item, dict):
        raise CalibrationDocumentError(f"{where}: expected an object")
    fingerprint = item.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise CalibrationDocumentError(f"{where}.fingerprint: expected a non-empty string")
    tails_list = item.get("tails")
    if not isinstance(tails_list, list) or not tails_list:
        raise CalibrationDocumentError(f"{where}.tails: expected a non-empty list of numbers")
    tails = tuple(reversed(_numbers(list(reversed(tails_list)), f"{where}.tails")))
    if tails[0] != 1.0 or tails[-1] <= 0:
        raise CalibrationDocumentError(f"{where}.tails: must fall from 1 to a positive tail")
    if len(set(tails)) != len(tails):
        raise CalibrationDocumentError(f"{where}.tails: must strictly fall")
    features_item = item.get("features")
    if not isinstance(features_item, dict) or not features_item:
        raise CalibrationDocumentError(f"{where}.features: expected a non-empty object")
    features: dict[str, dict[str, tuple[float, ...]]] = {}
    for name, rows in features_item.items():
        path = f"{where}.features.{name}"
        if not isinstance(rows, dict) or not rows:
            raise CalibrationDocumentError(f"{path}: expected an object of statistics")
        unknown = sorted(set(rows) - set(STATISTICS))
        if unknown:
            raise CalibrationDocumentError(
                f"{path}: unknown statistics {', '.join(unknown)} (known: {', '.join(STATISTICS)})"
            )
        features[name] = {
            statistic: _numbers(row, f"{path}.{statistic}", len(tails))
            for statistic, row in rows.items()
        }
    revision = _integer(item.get("revision", 1), f"{where}.revision", 1)
    if revision > REVISION:
        raise CalibrationDocumentError(
            f"{where}.revision: {revision} is newer than this monitor's ({REVISION})"
        )
    least = item.get("leastExpected", 0.0)
    if revision < 3 and "leastExpected" in item:
        raise CalibrationDocumentError(
            f"{where}.leastExpected: only revision 3 and later merge bins (revision {revision})"
        )
    if (
        not isinstance(least, int | float)
        or isinstance(least, bool)
        or not math.isfinite(least)
        or least < 0
    ):
        raise CalibrationDocumentError(f"{where}.leastExpected: expected a finite number >= 0")
    return StoredCalibration(
        revision=revision,
        least_expected=float(least),
        window=_integer(item.get("window"), f"{where}.window", 1),
        samples=_integer(item.get("samples"), f"{where}.samples", 1),
        seed=_integer(item.get("seed"), f"{where}.seed", 0),
        fingerprint=fingerprint,
        tails=tails,
        features=features,
    )
