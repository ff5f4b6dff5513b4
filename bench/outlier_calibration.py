"""Calibrations of the outlier check measured against the guard's (issue 15). Not a test.

The guard's ``outlierscoring.thresholds`` flags at most ``floor(a n)`` of the ``n``
cross-fitted held-out rows, giving each check (range, residual, distance) its own limit at
an order statistic of its held-out scores. A new benign row goes over a limit set at the
``(b + 1)``-th largest of ``n`` exchangeable scores with probability ``(b + 1) / (n + 1)``,
so the union of ``C`` such checks flags about ``(k + C) / (n + 1)`` of new rows when its
limits flag ``k`` held-out rows: above ``a`` by up to ``C / (n + 1)``. The range check's
excess is an exception in part (its folds see 80% of the rows, so held-out rows leave
their fold's range more often than new rows leave the whole reference's).

The candidates here are measured (``bench.outlier_analysis.splits``, planted Gaussian
rows in ``planted``), not used by the guard:

- ``unseen rows from the whole allowance``: the guard's rule, except that held-out rows
  with an infinite excess (a value of a feature their fold saw constant) take what they
  need of the whole allowance, not only the range's half (the guard refuses the rate);
- ``conformal count``: the guard's rule with ``k = floor(a (n + 1)) - 1`` (one +1);
- ``conformal count per check``: the guard's rule with ``k = floor(a (n + 1)) - C`` (one
  +1 per check; where that leaves no row, every limit at the largest held-out score);
- ``union bound``: each check's own held-out exceedances ``b_c`` (overlaps counted in
  each) with ``sum (b_c + 1) <= a (n + 1)``: by the union bound the expected rate on
  exchangeable new rows is at most ``a``;
- ``joint scale``: the guard's limits scaled by one factor, the ``(k + 1)``-th largest of
  the held-out rows' largest score-to-limit ratio, ``k = floor(a (n + 1)) - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from modelshield.guard import outliermodel, outlierscoring, outliertypes

Calibration = Callable[[outliertypes.OutlierModel, float], outlierscoring.Thresholds]


def _flagged_share(model: outliertypes.OutlierModel, limits: outlierscoring.Thresholds) -> float:
    held = outlierscoring.Scores(
        model.held_out_excess,
        model.held_out_distance,
        model.held_out_residual
        if model.held_out_residual is not None
        else np.zeros_like(model.held_out_distance),
    )
    return float(outlierscoring.over(held, limits).mean())


def _conformal_count(model: outliertypes.OutlierModel, rate: float) -> outlierscoring.Thresholds:
    count = model.held_out_excess.size
    allowed = math.floor(rate * (count + 1) + 1e-9) - 1
    if allowed < 1:
        raise outlierscoring.CalibrationError(f"{count} held-out rows: no row to flag")
    return outlierscoring.thresholds(model, allowed / count)


def _count_per_check(model: outliertypes.OutlierModel, rate: float) -> outlierscoring.Thresholds:
    count = model.held_out_excess.size
    checks = 3 if model.held_out_residual is not None else 2
    allowed = math.floor(rate * (count + 1) + 1e-9) - checks
    if allowed < 1:
        # No row to spend: every limit at the largest held-out score.
        return _union_bound(model, rate)
    return outlierscoring.thresholds(model, allowed / count)


def _limit(values: np.ndarray, budget: int) -> float:
    if budget < 0:
        return math.inf
    ordered = np.sort(values)[::-1]
    return float(ordered[budget]) if budget < ordered.size else 0.0


def _union_bound(model: outliertypes.OutlierModel, rate: float) -> outlierscoring.Thresholds:
    count = model.held_out_excess.size
    checks = 3 if model.held_out_residual is not None else 2
    total = math.floor(rate * (count + 1) + 1e-9) - checks
    if total < 0:
        raise outlierscoring.CalibrationError(f"{count} held-out rows: below one per check")
    range_budget = total // 2
    residual_budget = (total - range_budget) // 2 if checks == 3 else -1
    distance_budget = total - range_budget - max(residual_budget, 0)
    excess_limit = _limit(model.held_out_excess, range_budget)
    if math.isinf(excess_limit):
        raise outlierscoring.CalibrationError("unseen values above the range's budget")
    residual_limit = (
        _limit(model.held_out_residual, residual_budget)
        if model.held_out_residual is not None
        else math.inf
    )
    limits = outlierscoring.Thresholds(
        excess_limit, _limit(model.held_out_distance, distance_budget), 0.0, residual_limit
    )
    return outlierscoring.Thresholds(
        limits.excess, limits.distance, _flagged_share(model, limits), limits.residual
    )


def _unseen_from_allowance(
    model: outliertypes.OutlierModel, rate: float
) -> outlierscoring.Thresholds:
    excess, distance = model.held_out_excess, model.held_out_distance
    count = excess.size
    allowed = math.floor(rate * count + 1e-9)
    unseen = int(np.isinf(excess).sum())
    if allowed < 1 or unseen > allowed:
        raise outlierscoring.CalibrationError(f"{unseen} unseen of {count}: over {rate:g}")
    excess_limit = _limit(excess, max(allowed // 2, unseen))
    taken = excess > excess_limit
    residual_limit = math.inf
    if model.held_out_residual is not None:
        residual = model.held_out_residual
        residual_limit = _limit(residual[~taken], (allowed - int(taken.sum())) // 2)
        taken = taken | (residual > residual_limit)
    limits = outlierscoring.Thresholds(
        excess_limit, _limit(distance[~taken], allowed - int(taken.sum())), 0.0, residual_limit
    )
    return outlierscoring.Thresholds(
        limits.excess, limits.distance, _flagged_share(model, limits), limits.residual
    )


def _ratio(values: np.ndarray, limit: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if limit > 0:
            return np.asarray(values / limit)
        return np.where(values > 0, math.inf, 0.0)


def _joint_scale(model: outliertypes.OutlierModel, rate: float) -> outlierscoring.Thresholds:
    count = model.held_out_excess.size
    allowed = math.floor(rate * (count + 1) + 1e-9) - 1
    shape = outlierscoring.thresholds(model, rate)
    ratios = np.maximum(
        _ratio(model.held_out_excess, shape.excess), _ratio(model.held_out_distance, shape.distance)
    )
    if model.held_out_residual is not None and math.isfinite(shape.residual):
        ratios = np.maximum(ratios, _ratio(model.held_out_residual, shape.residual))
    factor = max(float(np.sort(ratios)[::-1][max(allowed, 0)]), 1.0)
    if math.isinf(factor):
        raise outlierscoring.CalibrationError("unseen values above the allowance")
    limits = outlierscoring.Thresholds(
        shape.excess * factor, shape.distance * factor, 0.0, shape.residual * factor
    )
    return outlierscoring.Thresholds(
        limits.excess, limits.distance, _flagged_share(model, limits), limits.residual
    )


#: The guard's calibration first; then the candidates.
CALIBRATIONS: dict[str, Calibration] = {
    "guard (floor(a n))": outlierscoring.thresholds,
    "unseen rows from the whole allowance": _unseen_from_allowance,
    "conformal count": _conformal_count,
    "conformal count per check": _count_per_check,
    "union bound": _union_bound,
    "joint scale": _joint_scale,
}


def planted(rate: float = 0.01, repeats: int = 150, seed: int = 0) -> None:
    """Correlated Gaussian reference rows (8 features, correlation 0.5) of several sizes:
    the share of 2,000 new rows from the same distribution each calibration flags, averaged
    over ``repeats`` references (every check's score is exchangeable here)."""
    rng = np.random.default_rng(seed)
    features = 8
    covariance = 0.5 * np.eye(features) + 0.5
    names = [f"f{i}" for i in range(features)]
    print(
        f"\n## Planted Gaussian rows ({features} features, correlation 0.5, {repeats} "
        f"references per size, seed {seed}): new rows flagged at {rate:g}"
    )
    print("| reference rows | " + " | ".join(CALIBRATIONS) + " |")
    print("|---|" + "---|" * len(CALIBRATIONS))
    for rows in (150, 300, 500, 1000, 2000):
        shares: dict[str, list[float]] = {name: [] for name in CALIBRATIONS}
        for repeat in range(repeats):
            data = rng.multivariate_normal(np.zeros(features), covariance, rows + 2000)
            reference, new = data[:rows], data[rows:]
            model = outliermodel.build(
                {n: reference[:, i].tolist() for i, n in enumerate(names)}, names, seed=repeat
            )
            scores = outlierscoring.score(model.fitted, new, [])
            for name, calibration in CALIBRATIONS.items():
                try:
                    limits = calibration(model, rate)
                except outlierscoring.CalibrationError:
                    continue
                shares[name].append(float(outlierscoring.over(scores, limits).mean()))
        cells = []
        for values in shares.values():
            if not values:
                cells.append("refused")
                continue
            mean, error = np.mean(values), np.std(values) / math.sqrt(len(values))
            cells.append(f"{mean:.2%} ± {1.96 * error:.2%}")
        print(f"| {rows} | " + " | ".join(cells) + " |")
