"""The outlier model and its scoring, on planted rows of real data (scikit-learn's bundled
breast cancer set) and on small hand-made columns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf  # type: ignore[import-untyped]
from sklearn.datasets import load_breast_cancer, load_digits  # type: ignore[import-untyped]

from modelshield.guard import outliermodel, outlierscoring, outliertypes
from tests.guard import outlier_reference

DATA = load_breast_cancer().data
NAMES = [f"f{i}" for i in range(DATA.shape[1])]
TRAIN, HELD = DATA[:400], DATA[400:]


@pytest.fixture(scope="module")
def model() -> outliertypes.OutlierModel:
    built = outliermodel.build({n: TRAIN[:, i].tolist() for i, n in enumerate(NAMES)}, NAMES)
    # What the guard reads is the stored document, not the object.
    return outliermodel.from_document(outliermodel.to_document(built))


def test_ledoit_wolf_agrees_with_scikit_learn() -> None:
    z = (TRAIN - TRAIN.mean(0)) / TRAIN.std(0)
    covariance, shrinkage = outliermodel.ledoit_wolf(z)
    reference = LedoitWolf(assume_centered=True).fit(z)
    assert shrinkage == pytest.approx(reference.shrinkage_, rel=1e-9)
    np.testing.assert_allclose(covariance, reference.covariance_, rtol=1e-9, atol=1e-12)


def test_thresholds_flag_at_most_the_declared_share_of_held_out_rows(
    model: outliertypes.OutlierModel,
) -> None:
    for rate in (0.01, 0.05, 0.2):
        limits = outlierscoring.thresholds(model, rate)
        assert 0 < limits.held_out_rate <= rate
        assert model.held_out_residual is not None
        scores = (
            (model.held_out_excess > limits.excess)
            | (model.held_out_distance > limits.distance)
            | (model.held_out_residual > limits.residual)
        )
        assert scores.mean() == pytest.approx(limits.held_out_rate)


def test_real_held_out_rows_pass_and_moved_features_are_flagged(
    model: outliertypes.OutlierModel,
) -> None:
    limits = outlierscoring.thresholds(model, 0.05)
    fitted = model.fitted
    benign = outlierscoring.flagged(fitted, limits, HELD, [])
    assert len(benign) <= 0.1 * len(HELD)
    moved = HELD.copy()
    span = fitted.maximum - fitted.minimum
    for row in range(len(moved)):
        column = row % moved.shape[1]
        moved[row, column] = fitted.maximum[column] + span[column]
    found = outlierscoring.flagged(fitted, limits, moved, [])
    assert len(found) == len(moved)
    row, reason = found[3]
    assert f"feature 'f{3}'" in reason
    assert "outside the reference range" in reason


def test_a_row_of_plausible_values_in_an_unseen_combination_is_flagged(
    model: outliertypes.OutlierModel,
) -> None:
    # Each feature inside its range, but radius large and area small: not the range check;
    # the radius is out of line with what area and perimeter predict (the residual), and
    # the whole row far from the reference (the distance).
    limits = outlierscoring.thresholds(model, 0.01)
    fitted = model.fitted
    row = fitted.mean.copy()
    row[0], row[3] = fitted.maximum[0] * 0.95, fitted.minimum[3] * 1.05
    scores = outlierscoring.score(fitted, row[None, :], [])
    assert scores.excess[0] == 0
    assert scores.distance[0] > limits.distance
    (found,) = outlierscoring.flagged(fitted, limits, row[None, :], [])
    assert "feature 'f0' = 26.7045 is out of line with the other features" in found[1]
    without_residual = dataclasses.replace(limits, residual=math.inf)
    (found,) = outlierscoring.flagged(fitted, without_residual, row[None, :], [])
    assert "Mahalanobis distance" in found[1]


def test_categories_missing_values_and_constant_features() -> None:
    rng = np.random.default_rng(0)
    columns: dict[str, list[object]] = {
        "x": rng.normal(size=200).tolist(),
        "constant": [1.0] * 200,
        "country": ["DE", "FR"] * 100,
        "maybe": [None if i % 10 == 0 else float(i) for i in range(200)],
    }
    model = outliermodel.build(columns, list(columns), ["country"])
    fitted = outliermodel.from_document(outliermodel.to_document(model)).fitted
    limits = outlierscoring.thresholds(model, 0.05)
    numeric = np.array(
        [[0.0, 1.0, 50.0], [0.0, 1.5, 50.0], [math.nan, 1.0, 50.0], [0.0, 1.0, math.nan]]
    )
    countries: list[list[str | None]] = [["DE", "DE", "DE", "IT"]]
    found = dict(outlierscoring.flagged(fitted, limits, numeric, countries))
    assert 0 not in found
    assert "'constant'" in found[1]
    assert "'x' is missing" in found[2]
    assert "'country' has category 'IT'" in found[3]
    # 'maybe' had missing values in the reference: missing there is fine.
    assert outlierscoring.score(fitted, numeric[3:, :], [["DE"]]).excess[0] == 0


def test_a_rate_below_one_held_out_row_is_refused(model: outliertypes.OutlierModel) -> None:
    with pytest.raises(outlierscoring.CalibrationError, match="below 1/400"):
        outlierscoring.thresholds(model, 0.001)


def test_rare_values_unseen_by_their_fold_fit_in_the_whole_allowance() -> None:
    # Digits split with seed 112 or 170 could not be calibrated at 0.01 (the guard then
    # answers 503): 7 held-out rows carry a value on a pixel their fold saw constant, over
    # the range check's half of the allowance (6) though the whole allowance is 12.
    rows = 1000
    rng = np.random.default_rng(3)
    data = rng.normal(size=(rows, 6))
    rare = np.zeros(rows)
    # build() permutes the rows with seed 0 and folds by position % 5: these 7 rows are all
    # in fold 0, whose model sees the feature constant, so each is infinitely far.
    order = np.random.default_rng(0).permutation(rows)
    rare[order[[0, 5, 10, 15, 20, 25, 30]]] = 1.0
    columns = {f"f{i}": data[:, i].tolist() for i in range(6)} | {"rare": rare.tolist()}
    model = outliermodel.build(columns, [*(f"f{i}" for i in range(6)), "rare"])
    assert int(np.isinf(model.held_out_excess).sum()) == 7  # over the range's 5 of 10
    limits = outlierscoring.thresholds(model, 0.01)
    assert limits.held_out_rate <= 0.01
    assert np.isinf(model.held_out_excess[model.held_out_excess > limits.excess]).sum() == 7
    with pytest.raises(outlierscoring.CalibrationError, match="7 of 1000"):
        outlierscoring.thresholds(model, 0.005)  # an allowance of 5: still refused


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(kind="DriftProfile"), "not an OutlierModel"),
        (lambda d: d.update(precision=[1.0]), "precision"),
        (lambda d: d["features"][0].update(mean="x"), r"features\[0\].mean"),
        (lambda d: d.update(varying=[99]), "varying"),
        (lambda d: d["heldOut"].update(distance=[]), "heldOut"),
    ],
)
def test_bad_documents_name_the_field(
    model: outliertypes.OutlierModel, change: object, message: str
) -> None:
    document = outliermodel.to_document(model)
    change(document)  # type: ignore[operator]
    with pytest.raises(outliermodel.OutlierModelError, match=message):
        outliermodel.from_document(document)


def _first_distance_and_residual(
    fitted: outliertypes.Fitted, numeric: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The multivariate scores as first written: the varying columns always selected by
    their index array, NaN and infinities always replaced."""
    z = (numeric[:, fitted.varying_index] - fitted.varying_mean) / fitted.varying_std
    z = np.nan_to_num(z, nan=0.0)
    pulled = z @ fitted.precision
    distance = np.sqrt(np.maximum((pulled * z).sum(axis=1), 0.0))
    return distance, (np.abs(pulled) * fitted.residual_unit).max(axis=1)


def test_scores_equal_the_first_formula_for_many_rows_and_for_one(
    model: outliertypes.OutlierModel,
) -> None:
    """Missing values, infinities and overflowing values included; with every column
    varying and with a constant one (the index array path); 1,500 rows and one."""
    rng = np.random.default_rng(15)
    constant = TRAIN.copy()
    constant[:, 3] = 7.0
    with_constant = outliermodel.build(
        {n: constant[:, i].tolist() for i, n in enumerate(NAMES)}, NAMES
    ).fitted
    # Many rows: the matrix product of a row-major matrix rounds differently from that of
    # the column-major copy an index array makes (the first formula's layout).
    rows = HELD[rng.integers(0, len(HELD), 1500)] * rng.uniform(0.9, 1.1, (1500, len(NAMES)))
    rows[::7, 2] = np.nan
    rows[1::9, 5] = np.inf
    rows[2::11, 0] = -np.inf
    rows[3::13, 8] = 1e308
    # 20 features: where this machine's BLAS rounded the two layouts differently.
    twenty = outliermodel.build(
        {n: TRAIN[:, i].tolist() for i, n in enumerate(NAMES[:20])}, NAMES[:20]
    ).fitted
    for fitted in (model.fitted, with_constant, twenty):
        width = len(fitted.names)
        assert (fitted.varying == tuple(range(width))) is (fitted is not with_constant)
        chosen = np.ascontiguousarray(rows[:, :width])
        with np.errstate(over="ignore", invalid="ignore"):
            together = outlierscoring.score(fitted, chosen, [])
            expected = _first_distance_and_residual(fitted, chosen)
            np.testing.assert_array_equal(together.distance, expected[0])
            np.testing.assert_array_equal(together.residual, expected[1])
            # One row at a time, as the guard scores a one-row request (a matrix product
            # of one row may round differently from one of many: compared as such).
            for index in range(0, len(rows), 7):
                one = outlierscoring.score(fitted, chosen[index : index + 1], [])
                first = _first_distance_and_residual(fitted, chosen[index : index + 1])
                np.testing.assert_array_equal(one.distance, first[0])
                np.testing.assert_array_equal(one.residual, first[1])


def test_flagged_lists_nothing_for_rows_under_every_limit(
    model: outliertypes.OutlierModel,
) -> None:
    limits = outlierscoring.thresholds(model, 0.01)
    rows = HELD[:50]
    scores = outlierscoring.score(model.fitted, rows, [])
    under = ~outlierscoring.over(scores, limits)
    kept = rows[under]
    assert kept.shape[0] > 40
    assert outlierscoring.flagged(model.fitted, limits, kept, []) == []
    moved = kept[:1].copy()
    moved[0, 0] = TRAIN[:, 0].max() * 3
    assert [row for row, _ in outlierscoring.flagged(model.fitted, limits, moved, [])] == [0]


def test_range_reasons_are_the_first_formulas() -> None:
    """Every row's range reason as the first formula's (tests/guard/outlier_reference.py):
    digits (whole-number pixels) and breast cancer rows, random points in the box
    (fractional pixels), one feature moved past the range, missing values."""
    rng = np.random.default_rng(21)
    digits = load_digits().data
    for data in (digits, DATA):
        names = [f"f{i}" for i in range(data.shape[1])]
        columns = {n: data[:500, i].tolist() for i, n in enumerate(names)}
        columns[names[1]] = [None if i % 50 == 0 else v for i, v in enumerate(columns[names[1]])]
        fitted = outliermodel.build(columns, names).fitted
        low, high = data[:500].min(0), data[:500].max(0)
        held = data[500:]
        rows = np.concatenate(
            [
                rng.uniform(low, high, (100, data.shape[1])),
                held[rng.integers(0, len(held), 100)],
                held[rng.integers(0, len(held), 100)]
                + np.where(rng.random((100, data.shape[1])) < 0.05, high - low + 1, 0),
            ]
        )
        rows[::9, 1] = np.nan
        rows[::13, 2] = np.nan
        for row in range(len(rows)):
            assert outlierscoring._range_reason(fitted, rows, [], row) == (
                outlier_reference.first_range_reason(fitted, rows, [], row)
            )


def test_one_row_excess_equals_the_numpy_path() -> None:
    """A request of one row is scored in plain floats (``_row_excess``); its excess is the
    numpy path's to the bit, and ``flagged`` names the same rows: digits (whole-number
    pixels, hard bounds) and breast cancer rows, random points in the box (fractional
    pixels), features moved past the range on either side, missing values, huge values."""
    rng = np.random.default_rng(15)
    digits = load_digits().data
    for data in (digits, DATA):
        names = [f"f{i}" for i in range(data.shape[1])]
        columns = {n: data[:500, i].tolist() for i, n in enumerate(names)}
        columns[names[1]] = [None if i % 50 == 0 else v for i, v in enumerate(columns[names[1]])]
        model = outliermodel.build(columns, names)
        fitted = model.fitted
        assert fitted.plain_bounds is not None
        assert fitted.plain_never_missing
        limits = outlierscoring.thresholds(model, 0.01)
        low, high = data[:500].min(0), data[:500].max(0)
        held = data[500:]
        span = high - low + 1
        moved = np.where(rng.random((200, data.shape[1])) < 0.05, 1.0, 0.0)
        rows = np.concatenate(
            [
                rng.uniform(low, high, (100, data.shape[1])),
                held[rng.integers(0, len(held), 200)],
                held[rng.integers(0, len(held), 200)] + moved * span * rng.uniform(0, 2, (200, 1)),
                held[rng.integers(0, len(held), 200)] - moved * span * rng.uniform(0, 2, (200, 1)),
                held[rng.integers(0, len(held), 100)] + rng.normal(0, 0.3, (100, data.shape[1])),
            ]
        )
        rows[::9, 1] = np.nan
        rows[::13, 2] = np.nan
        rows[::31, 3] = 1e12
        rows[::37, 4] = -1e12
        rows[5::41, 5] = 0.5
        whole = outlierscoring._excess(fitted, rows)
        # Digits' 64 features are scored by numpy; the plain path is pinned on them too.
        plain = [outlierscoring._row_excess(fitted, row) for row in rows.tolist()]
        assert np.asarray(plain).tobytes() == whole.tobytes()
        # +inf and -inf in one row (their sum is NaN, as a missing value's is), with and
        # without a missing value.
        infinite = rows[:60].copy()
        infinite[::3, 6] = np.inf
        infinite[::2, 7] = -np.inf
        plain = [outlierscoring._row_excess(fitted, row) for row in infinite.tolist()]
        assert np.asarray(plain).tobytes() == outlierscoring._excess(fitted, infinite).tobytes()
        assert np.isinf(whole).any()
        assert (whole == 0).any()
        assert ((whole > 0) & ~np.isinf(whole)).any()
        reasons = dict(outlierscoring.flagged(fitted, limits, rows, []))
        assert 0 < len(reasons) < rows.shape[0]
        for index in range(rows.shape[0]):
            one = rows[index : index + 1]
            scores = outlierscoring.score(fitted, one, [])
            assert scores.excess.tobytes() == whole[index : index + 1].tobytes()
            expected = [(0, reasons[index])] if index in reasons else []
            assert outlierscoring.flagged(fitted, limits, one, [], scores) == expected
