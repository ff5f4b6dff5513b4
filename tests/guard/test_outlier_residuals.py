"""The conditional residual (issue 15): one feature out of line with what the others
predict, on planted rows of scikit-learn's bundled breast cancer set; its calibration
beside the range and distance limits, and models stored without it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from modelshield.guard import outliermodel, outlierscoring, outliertypes

DATA = load_breast_cancer().data
NAMES = [f"f{i}" for i in range(DATA.shape[1])]
TRAIN, HELD = DATA[:400], DATA[400:]


@pytest.fixture(scope="module")
def model() -> outliertypes.OutlierModel:
    built = outliermodel.build({n: TRAIN[:, i].tolist() for i, n in enumerate(NAMES)}, NAMES)
    return outliermodel.from_document(outliermodel.to_document(built))


def test_the_residual_is_each_features_departure_from_its_conditional_mean(
    model: outliertypes.OutlierModel,
) -> None:
    # Computed independently: the Gaussian conditional of z_j given the other features
    # under the covariance the precision matrix inverts.
    fitted = model.fitted
    covariance = np.linalg.pinv(fitted.precision, hermitian=True)
    rows = HELD[:5]
    z = (rows[:, fitted.varying_index] - fitted.varying_mean) / fitted.varying_std
    expected = np.zeros(len(rows))
    for j in range(z.shape[1]):
        rest = [k for k in range(z.shape[1]) if k != j]
        weights = np.linalg.solve(covariance[np.ix_(rest, rest)], covariance[rest, j])
        variance = covariance[j, j] - covariance[j, rest] @ weights
        departure = np.abs(z[:, j] - z[:, rest] @ weights) / math.sqrt(variance)
        expected = np.maximum(expected, departure)
    scores = outlierscoring.score(fitted, rows, [])
    np.testing.assert_allclose(scores.residual, expected, rtol=1e-6)


def test_one_feature_moved_out_of_line_is_flagged_by_the_residual(
    model: outliertypes.OutlierModel,
) -> None:
    # Smoothness error (f14) 10 % of its span above its maximum: its upper tail is long
    # (the range margin lets it through) and the distance spreads one feature's departure
    # over 30 degrees of freedom: 36 % flagged without the residual, 82 % with it.
    fitted = model.fitted
    limits = outlierscoring.thresholds(model, 0.01)
    assert math.isfinite(limits.residual)
    moved = HELD.copy()
    moved[:, 14] = fitted.maximum[14] + 0.1 * (fitted.maximum[14] - fitted.minimum[14])
    scores = outlierscoring.score(fitted, moved, [])
    without = dataclasses.replace(limits, residual=math.inf)
    assert outlierscoring.over(scores, limits).mean() >= 0.8
    assert outlierscoring.over(scores, without).mean() <= 0.4
    assert outlierscoring.over(outlierscoring.score(fitted, HELD, []), limits).mean() <= 0.01
    only = np.flatnonzero(
        outlierscoring.over(scores, limits) & ~outlierscoring.over(scores, without)
    )
    found = dict(outlierscoring.flagged(fitted, limits, moved, [], scores))
    assert "feature 'f14' = " in found[int(only[0])]
    assert "is out of line with the other features" in found[int(only[0])]


def test_the_residual_takes_half_of_what_the_range_leaves(
    model: outliertypes.OutlierModel,
) -> None:
    residual = model.held_out_residual
    assert residual is not None
    for rate in (0.01, 0.05, 0.2):
        limits = outlierscoring.thresholds(model, rate)
        allowed = math.floor(rate * residual.size + 1e-9)
        over_range = model.held_out_excess > limits.excess
        over_residual = ~over_range & (residual > limits.residual)
        assert over_residual.sum() <= (allowed - over_range.sum()) // 2
        assert limits.held_out_rate <= rate


def test_models_stored_without_held_out_residuals_have_no_residual_check(
    model: outliertypes.OutlierModel,
) -> None:
    # Version 2 as first committed stored no residuals: range and distance split the rate
    # as in version 1, and the residual never flags.
    document = outliermodel.to_document(model)
    del document["heldOut"]["residual"]
    older = outliermodel.from_document(document)
    assert older.held_out_residual is None
    limits = outlierscoring.thresholds(older, 0.01)
    assert limits.residual == math.inf
    allowed = math.floor(0.01 * older.held_out_excess.size + 1e-9)
    over_range = older.held_out_excess > limits.excess
    assert over_range.sum() <= allowed // 2
    flagged = over_range | (older.held_out_distance > limits.distance)
    assert flagged.mean() == pytest.approx(limits.held_out_rate)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["heldOut"].update(residual=[1.0]), r"heldOut.residual"),
        (lambda d: d["heldOut"].update(residual="x"), r"heldOut.residual"),
        (
            lambda d: d["heldOut"].update(residual=[None] * len(d["heldOut"]["distance"])),
            r"heldOut.residual",
        ),
    ],
)
def test_bad_held_out_residuals_name_the_field(
    model: outliertypes.OutlierModel, change: object, message: str
) -> None:
    document = outliermodel.to_document(model)
    change(document)  # type: ignore[operator]
    with pytest.raises(outliermodel.OutlierModelError, match=message):
        outliermodel.from_document(document)
