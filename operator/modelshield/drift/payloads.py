"""Inference payloads to arrays: v1 and v2 (Open Inference Protocol) bodies, plain batches.

The envelope (CloudEvents binary or structured mode, or none) comes off in ``envelopes``;
this module turns what it carried into rows over the layout's watched features:

- request bodies of the v1 protocol (``{"instances": [...]}``, ``{"inputs": [...]}``) and of
  the v2 / Open Inference Protocol (``{"inputs": [{"name", "shape", "datatype", "data"}]}``);
  response bodies ``{"predictions": [...]}`` and ``{"outputs": [tensors]}``; a bare list
  of records.

Rows are lists (columns in the layout's column order), records (objects keyed by feature
name) or, for single-column layouts, scalars. A v2 tensor of shape ``[N, C]`` holds the C
columns in order; tensors of shape ``[N]`` or ``[N, 1]`` are matched to features by name.
Everything that is wrong raises PayloadError with a short machine reason and a message.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelshield.drift import envelopes, layouts, rawvalues

# Re-exported: callers of this module need not know where the envelope is handled.
Stream = envelopes.Stream
Event = envelopes.Event
PayloadError = envelopes.PayloadError


@dataclass(frozen=True)
class Batch:
    """Rows ready for a window: numeric values (NaN when missing) and category slots."""

    stream: Stream
    numeric: NDArray[np.float64]
    """rows x numeric watched features."""
    categorical: NDArray[np.intp]
    """rows x categorical watched features (slot within the feature)."""
    mismatches: tuple[tuple[str, str], ...] = field(default=())
    """(feature, "missing" | "extra") seen in named inputs."""

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.numeric.shape[0])

    @property
    def values(self) -> int:
        """Number of values (rows x watched features): what the batch weighs in a queue."""
        return int(self.numeric.size + self.categorical.size)


def _is_v2_tensor(item: object) -> bool:
    return isinstance(item, dict) and "data" in item and ("shape" in item or "datatype" in item)


def rows_of(event: Event) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The rows (v1 shapes) or the tensors by name (v2) that the payload carries."""
    data = event.data
    if isinstance(data, list) and (
        event.stream == "request" or not data or not _is_v2_tensor(data[0])
    ):
        return data, None
    keys = ("instances", "inputs") if event.stream == "request" else ("predictions", "outputs")
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                value = data[key]
                if isinstance(value, list) and value and all(_is_v2_tensor(t) for t in value):
                    return None, {str(t.get("name", i)): t for i, t in enumerate(value)}
                if isinstance(value, list):
                    return value, None
                if isinstance(value, dict):
                    return None, {str(name): {"data": column} for name, column in value.items()}
                raise PayloadError("unrecognised-shape", f"{key!r} must be a list")
    expected = " or ".join(repr(key) for key in keys)
    raise PayloadError(
        "unrecognised-shape",
        f"an inference {event.stream} needs {expected} (v1 or v2 protocol), or a list of records",
    )


def _numeric(values: Any, name: str, rows: int | None = None) -> NDArray[np.float64]:
    """A column of numbers (null is NaN, true/false 1/0, numeric strings their number).

    Anything else (a list or an object where a number belongs, a word) is a PayloadError,
    never a numpy error out of the handler.
    """
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise PayloadError(
            "wrong-type", f"feature {name!r} is numeric in the profile: {error}"
        ) from None
    if array.ndim != 1 or (rows is not None and array.shape[0] != rows):
        raise PayloadError(
            "wrong-type",
            f"feature {name!r} is numeric in the profile: expected one number per row, "
            f"got an array of shape {list(array.shape)}",
        )
    return array


def _codes(values: Sequence[object], codes: dict[str, int], name: str) -> list[int]:
    out = []
    for value in values:
        if isinstance(value, list | dict | tuple | np.ndarray):
            raise PayloadError(
                "wrong-type",
                f"feature {name!r} is categorical: expected a string, number, boolean or "
                f"null, got {type(value).__name__}",
            )
        key = rawvalues.category_key(value)
        out.append(layouts.MISSING_SLOT if key is None else codes.get(key, layouts.OTHER_SLOT))
    return out


def _empty(stream: Stream, layout: layouts.Layout, rows: int = 0) -> Batch:
    return Batch(
        stream,
        np.empty((rows, len(layout.numeric_columns))),
        np.empty((rows, len(layout.categorical_columns)), dtype=np.intp),
    )


def _flat_numbers(rows: list[Any], width: int) -> NDArray[np.float64] | None:
    """Rows of numbers as a matrix, fast; None when some row is not a list of width numbers."""
    # Checked with C-level iteration: a Python loop here would cost as much as the parsing.
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        return None
    try:
        flat = np.fromiter(itertools.chain.from_iterable(rows), np.float64, len(rows) * width)
    except (TypeError, ValueError):  # null (missing) values, or not numbers: the slow path
        return None
    return flat.reshape(len(rows), width)


def _from_lists(stream: Stream, rows: list[Any], layout: layouts.Layout) -> Batch:
    width = len(layout.columns)
    matrix = None if layout.categorical_columns else _flat_numbers(rows, width)
    if matrix is None and layout.categorical_columns:
        try:
            matrix = np.array(rows, dtype=object)
        except ValueError:
            matrix = np.empty(0)
    elif matrix is None:
        try:
            matrix = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            return _from_lists_slowly(stream, rows, layout)
    if matrix.ndim == 1 and width == 1 and len(matrix) == len(rows):
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[1] != width:
        lengths = sorted({len(row) if isinstance(row, list) else 1 for row in rows})
        raise PayloadError(
            "width-mismatch",
            f"rows must have {width} columns ({', '.join(layout.columns)}); got {lengths}",
        )
    if not layout.categorical_columns:
        if len(layout.numeric_columns) == width and layout.numeric_columns == tuple(range(width)):
            return Batch(stream, matrix, np.empty((len(rows), 0), dtype=np.intp))
        return Batch(stream, matrix[:, layout.numeric_columns], np.empty((len(rows), 0), np.intp))
    return _from_columns(
        stream,
        {name: matrix[:, i] for i, name in enumerate(layout.columns)},
        len(rows),
        layout,
    )


def _from_lists_slowly(stream: Stream, rows: list[Any], layout: layouts.Layout) -> Batch:
    """Find out which column is wrong, for the error message."""
    width = len(layout.columns)
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise PayloadError(
                "width-mismatch",
                f"rows must be lists of {width} values ({', '.join(layout.columns)}); got {row!r:.80}",
            )
    for position, name in zip(layout.numeric_columns, layout.numeric_names, strict=True):
        _numeric([row[position] for row in rows], name)
    raise PayloadError("wrong-type", "rows hold values that are neither numbers nor null")


def _from_columns(
    stream: Stream,
    columns: Mapping[str, Any],
    rows: int,
    layout: layouts.Layout,
    mismatches: tuple[tuple[str, str], ...] = (),
) -> Batch:
    numeric = np.empty((rows, len(layout.numeric_columns)))
    for j, name in enumerate(layout.numeric_names):
        column = columns.get(name)
        numeric[:, j] = np.nan if column is None else _numeric(column, name, rows)
    categorical = np.empty((rows, len(layout.categorical_columns)), dtype=np.intp)
    for j, name in enumerate(layout.categorical_names):
        column = columns.get(name)
        if column is None:
            categorical[:, j] = layouts.MISSING_SLOT
        else:
            if len(column) != rows:
                raise PayloadError(
                    "bad-tensor", f"feature {name!r} has {len(column)} values for {rows} rows"
                )
            categorical[:, j] = _codes(column, layout.codes[j], name)
    return Batch(stream, numeric, categorical, mismatches)


def _named_mismatches(
    present: Sequence[str], layout: layouts.Layout
) -> tuple[tuple[str, str], ...]:
    known = set(layout.columns)
    seen = set(present)
    return tuple(
        [(name, "missing") for name in layout.names if name not in seen]
        + [(name, "extra") for name in present if name not in known]
    )


def _from_records(stream: Stream, rows: list[Any], layout: layouts.Layout) -> Batch:
    if not all(isinstance(row, dict) for row in rows):
        raise PayloadError("unrecognised-shape", "rows must be all lists or all objects")
    columns = {name: [row.get(name) for row in rows] for name in layout.names}
    mismatches = _named_mismatches(list(rows[0]), layout)
    for name, problem in mismatches:
        if problem == "missing" and any(name in row for row in rows):
            mismatches = tuple(m for m in mismatches if m != (name, "missing"))
    return _from_columns(stream, columns, len(rows), layout, mismatches)


def _tensor_array(tensor: Mapping[str, Any], name: str) -> NDArray[Any]:
    datatype = str(tensor.get("datatype", "FP64")).upper()
    dtype: type[Any] = object if datatype == "BYTES" else np.float64
    try:
        array = np.array(tensor["data"], dtype=dtype)
        shape = tensor.get("shape")
        if shape is not None:
            array = array.reshape([int(size) for size in shape])
    except (TypeError, ValueError) as error:
        raise PayloadError("bad-tensor", f"tensor {name!r}: {error}") from None
    return array


def _from_tensors(stream: Stream, tensors: dict[str, Any], layout: layouts.Layout) -> Batch:
    width = len(layout.columns)
    if len(tensors) == 1:
        name, tensor = next(iter(tensors.items()))
        array = _tensor_array(tensor, name)
        if (
            array.ndim == 2
            and array.shape[1] == width
            and (width > 1 or name not in layout.columns)
        ):
            return _from_columns(
                stream,
                {column: array[:, i] for i, column in enumerate(layout.columns)},
                array.shape[0],
                layout,
            )
        if width == 1 and name not in layout.columns and array.ndim == 1:
            return _from_columns(stream, {layout.columns[0]: array}, array.shape[0], layout)
    columns: dict[str, Any] = {}
    sizes = set()
    for name, tensor in tensors.items():
        if name not in layout.columns:
            continue
        array = _tensor_array(tensor, name)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise PayloadError(
                "bad-tensor",
                f"tensor {name!r} has shape {list(array.shape)}; a named feature is [N] or [N, 1], "
                f"and one tensor of all {width} columns is [N, {width}]",
            )
        columns[name] = array
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise PayloadError("bad-tensor", f"tensors have different lengths {sorted(sizes)}")
    if not columns:
        raise PayloadError(
            "unrecognised-shape",
            f"no tensor is named after a feature ({', '.join(layout.columns)}); "
            f"got {', '.join(tensors)}",
        )
    return _from_columns(
        stream, columns, sizes.pop(), layout, _named_mismatches(list(tensors), layout)
    )


def to_batch(event: Event, layout: layouts.Layout) -> Batch:
    """The event's rows as arrays over the layout's watched features."""
    rows, tensors = rows_of(event)
    if tensors is not None:
        return _from_tensors(event.stream, tensors, layout)
    assert rows is not None
    if not rows:
        return _empty(event.stream, layout)
    first = rows[0]
    if isinstance(first, dict):
        return _from_records(event.stream, rows, layout)
    if isinstance(first, list) or len(layout.columns) == 1:
        return _from_lists(event.stream, rows, layout)
    raise PayloadError(
        "unrecognised-shape",
        f"rows must be lists of {len(layout.columns)} values or objects keyed by feature",
    )


def parse(
    headers: Mapping[str, str], body: bytes, layouts_by_stream: Mapping[Stream, layouts.Layout]
) -> Batch | None:
    """Parse one HTTP request; None when it is for a stream that is not watched."""
    event = envelopes.unwrap(headers, body)
    layout = layouts_by_stream.get(event.stream)
    if layout is None:
        return None
    return to_batch(event, layout)
