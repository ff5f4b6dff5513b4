"""How raw column values (CSV strings, JSON values) read as categories and numbers.

The profile builder and the live path both go through these functions, so a value spelled
by CSV and by JSON is the same category or the same number on both sides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOLEANS = {"true": True, "false": False}


def _number_key(number: float) -> str:
    if number.is_integer():
        return str(int(number))
    return repr(number)


def category_key(value: object) -> str | None:
    """The category a JSON or CSV value stands for; None when the value is missing.

    The profile builder and the live path both name categories through this function, so
    one value spelled by CSV (always a string, ``2.0`` for a float column written by
    pandas, ``True`` for a boolean) and by JSON (``2.0``, ``2``, ``true``) is one category:
    numbers and plain decimal strings become the shortest spelling of their value (``2``,
    ``2.5``), booleans and their spellings in any case ``true``/``false``; other strings
    are kept as they are, and ``""`` (or only spaces) is missing.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return _number_key(value) if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if text.lower() in _BOOLEANS:
            return text.lower()
        if _DECIMAL.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return _number_key(number)
        return value
    return str(value)


def _as_number(value: object) -> float | None:
    """The float a value stands for, None when missing; ValueError when it is not a number.

    Booleans are 0 and 1 (JSON ``true``, CSV ``True`` or ``true``), as the live path
    counts them; numeric strings (CSV cells) are their number.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        flag = _BOOLEANS.get(value.strip().lower())
        return float(flag) if flag is not None else float(value)
    raise ValueError(value)


def numeric_column(values: Sequence[object]) -> FloatArray | None:
    """The column as floats (missing as NaN), or None when some value is not a number."""
    try:
        numbers = [_as_number(value) for value in values]
    except ValueError:
        return None
    return np.array(
        [math.nan if number is None else number for number in numbers], dtype=np.float64
    )
