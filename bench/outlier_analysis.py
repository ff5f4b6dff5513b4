"""Why the range check catches what it catches (issue 15): per-feature measurements behind
the outlier table of ``bench.runtime_defences_evaluation``. Not a timed test.

    .venv/bin/python -m bench.runtime_defences_evaluation --outliers-only --analysis

Per feature of the reference (the 70% split): span, span in standard deviations, distinct
values, whole numbers or not, its hard bounds and tail scales in the stored model; how
often cross-fitted held-out reference rows (the calibration's rows, the same 5 folds as
``outliermodel.build``) and the 30% test rows leave the training range, and by how much
in span units; and the share of test rows with that feature moved +10% of its span past
the range that the calibrated check flags at 0.01. Then, over several random splits
(``splits``), the false-flag rate of held-out real rows with its intervals, for the guard's
calibration and the candidates of ``bench.outlier_calibration``, and the detection of one
feature moved past the range by distance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import beta
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

from bench import outlier_calibration
from modelshield.guard import outliermodel, outlierscoring

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


#: Shares of the span past the range the detection curve moves one feature by.
CURVE = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0)
#: Shares the table reports (the outlier table's).
MOVES = (0.1, 0.5, 1.0)


def clopper_pearson(flagged: float, rows: float, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of ``flagged`` of ``rows``."""
    tail = (1 - level) / 2
    low = float(beta.ppf(tail, flagged, rows - flagged + 1)) if flagged > 0 else 0.0
    high = float(beta.ppf(1 - tail, flagged + 1, rows - flagged)) if flagged < rows else 1.0
    return low, high


def row_clustered(
    flagged: np.ndarray, tested: np.ndarray, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the pooled share when the data set's rows are resampled:
    every split tests ~30% of the same rows, and the few rows that are flagged are flagged
    in most splits that test them, so the splits are not independent samples."""
    rng = np.random.default_rng(0)
    shares = np.empty(resamples)
    for index in range(resamples):
        rows = rng.integers(0, flagged.size, flagged.size)
        shares[index] = flagged[rows].sum() / max(tested[rows].sum(), 1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(shares, tail)), float(np.percentile(shares, 100 - tail))


def _moved(
    test: np.ndarray, low: np.ndarray, high: np.ndarray, shares: tuple[float, ...]
) -> list[np.ndarray]:
    """The test rows with one random feature each moved past the range (half up, half
    down) by each share of its span: the same features and sides for every share."""
    span = np.where(high > low, high - low, 1.0)
    rng = np.random.default_rng(1)
    column = rng.integers(0, test.shape[1], len(test))
    up = rng.random(len(test)) < 0.5
    index = np.arange(len(test))
    moved = []
    for share in shares:
        rows = test.copy()
        rows[index, column] = np.where(
            up, high[column] + share * span[column], low[column] - share * span[column]
        )
        moved.append(rows)
    return moved


def splits(name: str, data: Any, count: int) -> None:
    """The false-flag rate at 0.01 over ``count`` random 70/30 splits (seeds 0..), with
    intervals, for the guard's calibration and the candidates of
    ``bench.outlier_calibration``; the detection of moved features by distance."""
    calibrations = outlier_calibration.CALIBRATIONS
    total = len(data.data)
    flagged = {c: np.zeros(total) for c in calibrations}
    tested = {c: np.zeros(total) for c in calibrations}
    per_split: dict[str, list[float]] = {c: [] for c in calibrations}
    held_out: dict[str, list[float]] = {c: [] for c in calibrations}
    detected: dict[str, list[list[float]]] = {c: [] for c in calibrations}
    refused: dict[str, list[int]] = {c: [] for c in calibrations}
    by_check = np.zeros(4, dtype=int)  # unseen (infinite excess), range, residual, distance
    predicted = []
    for seed in range(count):
        train_rows, test_rows = train_test_split(np.arange(total), test_size=0.3, random_state=seed)
        train, test = data.data[train_rows], data.data[test_rows]
        names = [f"f{i}" for i in range(train.shape[1])]
        built = outliermodel.build({n: train[:, i].tolist() for i, n in enumerate(names)}, names)
        # What the guard reads is the stored document.
        model = outliermodel.from_document(outliermodel.to_document(built))
        scores = outlierscoring.score(model.fitted, test, [])
        moved = [
            outlierscoring.score(model.fitted, rows, [])
            for rows in _moved(test, train.min(0), train.max(0), CURVE)
        ]
        for calibration, calibrate in calibrations.items():
            try:
                limits = calibrate(model, RATE)
            except outlierscoring.CalibrationError:
                refused[calibration].append(seed)
                continue
            over = outlierscoring.over(scores, limits)
            flagged[calibration][test_rows] += over
            tested[calibration][test_rows] += 1
            per_split[calibration].append(float(over.mean()))
            held_out[calibration].append(limits.held_out_rate)
            detected[calibration].append(
                [float(outlierscoring.over(s, limits).mean()) for s in moved]
            )
            if calibration == next(iter(calibrations)):
                unseen = np.isinf(scores.excess) & over
                past = (scores.excess > limits.excess) & ~unseen
                residual = (scores.residual > limits.residual) & ~unseen & ~past
                by_check += [
                    unseen.sum(),
                    past.sum(),
                    residual.sum(),
                    (over & ~unseen & ~past & ~residual).sum(),
                ]
                n = model.held_out_excess.size
                predicted.append((math.floor(RATE * n + 1e-9) + 1) / (n + 1))
    print(
        f"\n## Outliers over {count} random 70/30 splits: {name} (seeds 0-{count - 1}, "
        f"declared rate {RATE:g}, {len(data.data)} rows)"
    )
    print(
        "| calibration | splits refused (seeds) | held-out rows flagged (calibration) | "
        "test rows flagged, pooled [Clopper-Pearson 95%] | rows resampled 95% | per split: "
        "sd, min-max, splits over the rate | moved +10% span | +50% | +100% |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    columns = [CURVE.index(share) for share in MOVES]
    for calibration in calibrations:
        rates = np.asarray(per_split[calibration])
        if not rates.size:
            print(f"| {calibration} | all | | | | | | | |")
            continue
        hits, rows = flagged[calibration].sum(), tested[calibration].sum()
        low, high = clopper_pearson(hits, rows)
        clustered = row_clustered(flagged[calibration], tested[calibration])
        found = np.asarray(detected[calibration]).mean(0)
        print(
            f"| {calibration} | {len(refused[calibration])} "
            f"({', '.join(map(str, refused[calibration][:5])) or '-'}) | "
            f"{np.mean(held_out[calibration]):.3%} | {hits:.0f}/{rows:.0f} = "
            f"{hits / rows:.3%} [{low:.3%}, {high:.3%}] | [{clustered[0]:.3%}, "
            f"{clustered[1]:.3%}] | {rates.std(ddof=1) if rates.size > 1 else 0:.2%}, "
            f"{rates.min():.2%}-{rates.max():.2%}, {(rates > RATE).mean():.0%} | "
            + " | ".join(f"{found[c]:.1%}" for c in columns)
            + " |"
        )
    guard = next(iter(calibrations))
    ever = flagged[guard] > 0
    often = flagged[guard] > 0.5 * np.maximum(tested[guard], 1)
    print(
        f"\n{guard}: flagged test rows by check: unseen or constant feature {by_check[0]}, "
        f"range {by_check[1]}, residual {by_check[2]}, distance only {by_check[3]}; "
        f"{ever.sum()} of the {total} rows were ever flagged, {often.sum()} in more than "
        f"half of the splits that tested them; (k + 1) / (n + 1) with k = floor(a n): "
        f"{np.mean(predicted):.3%}"
    )
    if count <= 10 and per_split[guard]:
        print("\n| split seed | held-out real rows flagged | moved +10% span | +50% | +100% |")
        print("|---|---|---|---|---|")
        used = [seed for seed in range(count) if seed not in refused[guard]]
        for seed, rate, found in zip(used, per_split[guard], detected[guard], strict=True):
            moves = " | ".join(f"{found[c]:.2%}" for c in columns)
            print(f"| {seed} | {rate:.2%} | {moves} |")
    print(f"\nDetection by distance past the range ({guard} and candidates, mean over splits):")
    print("| share of the span past the range | " + " | ".join(calibrations) + " |")
    print("|---|" + "---|" * len(calibrations))
    means = {c: np.asarray(detected[c]).mean(0) if detected[c] else None for c in calibrations}
    for position, share in enumerate(CURVE):
        cells = [f"{m[position]:.1%}" if m is not None else "-" for m in means.values()]
        print(f"| {share:g} | " + " | ".join(cells) + " |")
