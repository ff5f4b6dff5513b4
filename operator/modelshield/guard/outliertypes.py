"""The outlier model's data: what fitting produces and scoring reads, and its error. Pure.

Its own module so that fitting and scoring (``outliermodel``, ``outlierscoring``) both
depend on it and not on each other: fitting calibrates by scoring held-out rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


class OutlierModelError(ValueError):
    """An outlier model that cannot be fitted or read (the message names the field)."""


@dataclasses.dataclass(frozen=True)
class Fitted:
    """What scoring needs, fitted on some reference rows."""

    names: tuple[str, ...]
    #: Per feature: numeric (True) or categorical.
    numeric: tuple[bool, ...]
    #: Per numeric feature, in the order of the numeric features.
    mean: FloatArray
    std: FloatArray
    minimum: FloatArray
    maximum: FloatArray
    #: Per feature: whether the reference had missing values.
    missing_seen: tuple[bool, ...]
    #: Per categorical feature (in feature order): the categories seen; None: not checked.
    categories: tuple[frozenset[str] | None, ...]
    #: Indices (into the numeric features) the Mahalanobis score covers.
    varying: tuple[int, ...]
    #: Precision matrix of the standardised varying features (shrinkage covariance).
    precision: FloatArray
    #: Per numeric feature, the tail scales past its minimum and maximum (0: a hard bound;
    #: ``modelshield.guard.outlierranges``). None in version 1 models: standard deviations.
    low_scale: FloatArray | None = None
    high_scale: FloatArray | None = None
    #: Per numeric feature, whether its values are whole numbers
    #: (``modelshield.guard.outlierwholenumbers``); None: not checked.
    whole: NDArray[np.bool_] | None = None
    #: ``varying`` as an index array, and the mean and std it selects (derived, for speed).
    varying_index: NDArray[np.intp] = dataclasses.field(init=False, repr=False, compare=False)
    varying_mean: FloatArray = dataclasses.field(init=False, repr=False, compare=False)
    varying_std: FloatArray = dataclasses.field(init=False, repr=False, compare=False)
    #: Per varying feature, 1 / the standard deviation of its conditional residual given
    #: the others, 1 / sqrt(precision[j, j]) (0 where the diagonal is not positive).
    residual_unit: FloatArray = dataclasses.field(init=False, repr=False, compare=False)
    #: Per numeric feature (minimum, maximum, low scale, high scale) as plain floats, for
    #: scoring one row without numpy (derived); None in version 1 models and where a value
    #: is not finite or a scale negative (then the numpy path decides).
    plain_bounds: tuple[tuple[float, float, float, float], ...] | None = dataclasses.field(
        init=False, repr=False, compare=False
    )
    #: The numeric features' indices that are whole-number features, and those that the
    #: reference never had missing (derived, for the same path).
    plain_whole: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    plain_never_missing: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    #: Whether every feature is numeric (derived).
    all_numeric: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = np.asarray(self.varying, dtype=np.intp)
        object.__setattr__(self, "varying_index", index)
        object.__setattr__(self, "varying_mean", self.mean[index])
        object.__setattr__(self, "varying_std", self.std[index])
        diagonal = np.diagonal(self.precision) if self.precision.size else np.zeros(0)
        with np.errstate(divide="ignore"):
            unit = np.where(diagonal > 0, 1 / np.sqrt(np.maximum(diagonal, 0.0)), 0.0)
        object.__setattr__(self, "residual_unit", np.asarray(unit, dtype=np.float64))
        bounds = None
        if self.low_scale is not None and self.high_scale is not None:
            table = np.stack([self.minimum, self.maximum, self.low_scale, self.high_scale])
            scales = table[2:]
            if np.isfinite(table).all() and (scales >= 0).all():
                bounds = tuple(zip(*(row.tolist() for row in table), strict=True))
        object.__setattr__(self, "plain_bounds", bounds)
        whole = self.whole.tolist() if self.whole is not None else []
        object.__setattr__(self, "plain_whole", tuple(i for i, w in enumerate(whole) if w))
        numeric_missing = [m for m, n in zip(self.missing_seen, self.numeric, strict=True) if n]
        never = tuple(i for i, seen in enumerate(numeric_missing) if not seen)
        object.__setattr__(self, "plain_never_missing", never)
        object.__setattr__(self, "all_numeric", all(self.numeric))


@dataclasses.dataclass(frozen=True)
class OutlierModel:
    """A fitted model and its held-out (excess, distance, residual) scores."""

    fitted: Fitted
    held_out_excess: FloatArray
    held_out_distance: FloatArray
    rows: int
    #: None for models stored without it (version 1, the first version 2): no residual check.
    held_out_residual: FloatArray | None = None
    #: A query closer than this to one of the client's earlier ones (in the profile's
    #: standard units, as probing compares queries) is a near-duplicate, which PRADA's
    #: distance test leaves out: the 1st percentile of the reference rows' distances to
    #: their nearest other distinct row (``outliermodel.near_duplicate_radius``). 0 in
    #: models stored without it: every query is tested, as before.
    near_duplicate: float = 0.0
