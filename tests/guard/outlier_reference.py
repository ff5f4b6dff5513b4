"""The outlier check's range reason as first written, before it was made faster: the
equivalence test compares the guard's reasons with these. Not used by the guard."""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelshield.guard import outlierranges, outlierwholenumbers
from modelshield.guard.outliertypes import Fitted, FloatArray


def first_range_reason(
    fitted: Fitted, numeric: FloatArray, categorical: Sequence[Sequence[str | None]], row: int
) -> str:
    numeric_names = [n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if flag]
    categorical_names = [
        n for n, flag in zip(fitted.names, fitted.numeric, strict=True) if not flag
    ]
    missing_seen = [m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if n]
    worst, worst_reason = -1.0, ""
    sizes = outlierranges.scaled_excess(fitted, numeric[row : row + 1])[0]
    for column, name in enumerate(numeric_names):
        value = float(numeric[row, column])
        low, high = fitted.minimum[column], fitted.maximum[column]
        if math.isnan(value):
            if not missing_seen[column]:
                return f"feature {name!r} is missing; the reference never was"
            continue
        if (
            fitted.whole is not None
            and outlierwholenumbers.off_whole(
                fitted.whole[column : column + 1], numeric[row : row + 1, column : column + 1]
            ).any()
        ):
            return (
                f"feature {name!r} = {value:.6g} is not a whole number; the reference's "
                "values all were"
            )
        size = float(sizes[column])
        if size > worst:
            worst = size
            worst_reason = (
                f"feature {name!r} = {value:.6g} is outside the reference range "
                f"[{low:.6g}, {high:.6g}]"
            )
    categorical_missing = [
        m for m, n in zip(fitted.missing_seen, fitted.numeric, strict=True) if not n
    ]
    for name, values, seen, missing_ok in zip(
        categorical_names, categorical, fitted.categories, categorical_missing, strict=True
    ):
        category = values[row]
        if category is None and not missing_ok:
            return f"feature {name!r} is missing; the reference never was"
        if category is not None and seen is not None and category not in seen:
            return f"feature {name!r} has category {category[:60]!r}, unseen in the reference"
    return worst_reason
