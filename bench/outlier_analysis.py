"""Why the range check catches what it catches (issue 15): per-feature measurements behind
the outlier table of ``bench.runtime_defences_evaluation``. Not a timed test.

    .venv/bin/python -m bench.runtime_defences_evaluation --outliers-only --analysis

Per feature of the reference (the 70% split): span, span in standard deviations, distinct
values, whole numbers or not, its hard bounds and tail scales in the stored model; how
often cross-fitted held-out reference rows (the calibration's rows, the same 5 folds as
``outliermodel.build``) and the 30% test rows leave the training range, and by how much
in span units; and the share of test rows with that feature moved +10% of its span past
the range that the calibrated check flags at 0.01. Then, over several random splits, the
outlier table's mean (``splits``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

from modelshield.guard import outliermodel, outlierscoring, outliertypes

RATE = 0.01


def _cross_fitted_excursions(train: np.ndarray) -> np.ndarray:
    """Per reference row and feature: how far past its fold's range, in the full span."""
    order = np.random.default_rng(0).permutation(len(train))
    rows = train[order]
    folds = np.arange(len(rows)) % outliermodel.FOLDS
    span = np.ptp(train, axis=0)
    span = np.where(span > 0, span, 1.0)
    out = np.zeros_like(rows)
    for fold in range(outliermodel.FOLDS):
        kept, held = rows[folds != fold], rows[folds == fold]
        past = np.maximum(kept.min(0) - held, held - kept.max(0))
        out[folds == fold] = np.maximum(past, 0.0) / span
    return out


def _moved_detection(case: Any, limits: outlierscoring.Thresholds, share: float) -> np.ndarray:
    """Per feature: the share of test rows flagged with that feature moved past the range
    (half up, half down)."""
    span = np.where(case.high > case.low, case.high - case.low, 1.0)
    found = np.zeros(case.test.shape[1])
    for column in range(case.test.shape[1]):
        rows = np.concatenate([case.test, case.test])
        half = len(case.test)
        rows[:half, column] = case.high[column] + share * span[column]
        rows[half:, column] = case.low[column] - share * span[column]
        scores = outlierscoring.score(case.fitted, rows, [])
        found[column] = outlierscoring.over(scores, limits).mean()
    return found


def analysis(case: Any) -> None:
    """Print the per-feature table and the summary lines of one data set."""
    train, test, fitted = case.train, case.test, case.fitted
    limits = outlierscoring.thresholds(case.outliers, RATE)
    span = np.where(case.high > case.low, case.high - case.low, 1.0)
    std = train.std(0)
    crossed = _cross_fitted_excursions(train)
    tested = np.maximum(np.maximum(case.low - test, test - case.high), 0.0) / span
    moved = _moved_detection(case, limits, 0.1)
    whole = np.all(train == np.round(train), axis=0)
    print(f"\n## Range analysis: {case.name} (reference {len(train)} rows, test {len(test)})")
    print(
        f"excess limit {limits.excess:.3g} (tail scales), residual limit {limits.residual:.3g},"
        f" distance limit {limits.distance:.3g}"
        f" at {RATE:g}; held-out rows past their fold's range on some feature: "
        f"{(crossed.max(1) > 0).mean():.2%}, by >= 0.1 span: {(crossed.max(1) >= 0.1).mean():.2%}"
        f"; test rows: {(tested.max(1) > 0).mean():.2%}, by >= 0.1 span: "
        f"{(tested.max(1) >= 0.1).mean():.2%}"
    )
    print(
        "| feature | span | span/std | distinct | whole | hard | tail low/high (span) | "
        "held-out past: rows, max (span) | test past: rows, max | +10% moves flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    assert fitted.low_scale is not None
    assert fitted.high_scale is not None
    for j in range(train.shape[1]):
        hard = "".join(
            side
            for side, scale in (("low", fitted.low_scale[j]), ("high", fitted.high_scale[j]))
            if scale == 0
        )
        print(
            f"| f{j} | {np.ptp(train[:, j]):.4g} | {np.ptp(train[:, j]) / std[j] if std[j] else 0:.1f}"
            f" | {len(np.unique(train[:, j]))} | {'yes' if whole[j] else 'no'} | {hard or '-'}"
            f" | {fitted.low_scale[j] / span[j]:.3f}/{fitted.high_scale[j] / span[j]:.3f}"
            f" | {(crossed[:, j] > 0).sum()}, {crossed[:, j].max():.3f}"
            f" | {(tested[:, j] > 0).sum()}, {tested[:, j].max():.3f} | {moved[j]:.0%} |"
        )


def _flagged_share(
    model: outliertypes.OutlierModel, limits: outlierscoring.Thresholds, rows: np.ndarray
) -> float:
    scores = outlierscoring.score(model.fitted, rows, [])
    return float(outlierscoring.over(scores, limits).mean())


def fractions(case: Any) -> None:
    """Rows with one whole-number feature moved by a fraction (or by one whole step) inside
    its range: what the whole-number check adds, the range check cannot see."""
    whole = case.fitted.whole
    if whole is None or not whole.any():
        print(f"\n{case.name}: no whole-number features")
        return
    limits = outlierscoring.thresholds(case.outliers, RATE)
    columns = np.flatnonzero(whole)
    rng = np.random.default_rng(5)
    print(f"\n## One whole-number feature moved inside its range: {case.name} (at {RATE:g})")
    print("| move | rows flagged |")
    print("|---|---|")
    for step in (0.3, 0.5, 1.0):
        rows = case.test.copy()
        column = columns[rng.integers(0, columns.size, len(rows))]
        index = np.arange(len(rows))
        value = rows[index, column]
        rows[index, column] = np.where(
            value + step <= case.high[column], value + step, value - step
        )
        flagged = outlierscoring.over(outlierscoring.score(case.fitted, rows, []), limits)
        print(f"| +-{step:g} | {flagged.mean():.1%} |")


def splits(name: str, data: Any, count: int) -> None:
    """The outlier table's rows at 0.01 over ``count`` random 70/30 splits (seeds 0..)."""
    print(f"\n## Outliers over {count} splits: {name} (declared rate {RATE:g})")
    print("| split seed | held-out real rows flagged | moved +10% span | +50% | +100% |")
    print("|---|---|---|---|---|")
    results = []
    for seed in range(count):
        train, test = train_test_split(data.data, test_size=0.3, random_state=seed)
        names = [f"f{i}" for i in range(train.shape[1])]
        built = outliermodel.build({n: train[:, i].tolist() for i, n in enumerate(names)}, names)
        # What the guard reads is the stored document.
        model = outliermodel.from_document(outliermodel.to_document(built))
        limits = outlierscoring.thresholds(model, RATE)
        low, high = train.min(0), train.max(0)
        span = np.where(high > low, high - low, 1.0)
        rng = np.random.default_rng(1)

        row = [_flagged_share(model, limits, test)]
        for share in (0.1, 0.5, 1.0):
            rows = test.copy()
            column = rng.integers(0, rows.shape[1], len(rows))
            up = rng.random(len(rows)) < 0.5
            rows[np.arange(len(rows)), column] = np.where(
                up, high[column] + share * span[column], low[column] - share * span[column]
            )
            row.append(_flagged_share(model, limits, rows))
        results.append(row)
        print(f"| {seed} | " + " | ".join(f"{v:.2%}" for v in row) + " |")
    mean = np.asarray(results).mean(0)
    print("| mean | " + " | ".join(f"{v:.2%}" for v in mean) + " |")
