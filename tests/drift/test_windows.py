"""Tumbling windows keyed to the reference bins."""

from __future__ import annotations

import hypothesis
import numpy as np
from hypothesis import strategies as st

from modelshield.drift import layouts, payloads, profiles, windows
from tests.support import driftsynthetic as synthetic


def _layout() -> layouts.Layout:
    return layouts.build(synthetic.profile(), synthetic.COLUMNS)


def test_encoding_matches_a_value_by_value_reading_of_the_profile() -> None:
    layout = _layout()
    profile = synthetic.profile()
    rng = np.random.default_rng(0)
    row_list = synthetic.rows(
        200, rng, missing={"x1": 0.1}, categories=("red", "violet"), weights=(0.5, 0.5)
    )
    row_list[0][0] = 99.0
    row_list[1][0] = -99.0
    batch = synthetic.batch(row_list, layout)
    slots = windows.encode(layout, batch.numeric, batch.categorical)
    for r, row in enumerate(row_list):
        for f, name in enumerate(layout.names):
            feature = profile.feature(name)
            value = row[synthetic.COLUMNS.index(name)]
            if isinstance(feature, profiles.NumericFeature):
                if value is None:
                    expected = layouts.MISSING_SLOT
                elif value < feature.minimum:
                    expected = layouts.BELOW_SLOT
                elif value > feature.maximum:
                    expected = len(feature.counts) + 2
                else:
                    expected = 2 + sum(1 for edge in feature.edges[1:-1] if value >= edge)
            else:
                categories = feature.categories
                expected = (
                    2 + categories.index(value) if value in categories else layouts.OTHER_SLOT
                )
            assert slots[f, r] == layout.offsets[f] + expected, (name, value)


def test_batches_are_split_at_window_boundaries() -> None:
    layout = _layout()
    window = windows.TumblingWindow(layout, 250)
    rng = np.random.default_rng(1)
    completed = []
    for size in (100, 100, 100, 300, 7, 193):
        completed += window.add(synthetic.batch(synthetic.rows(size, rng), layout))
    assert len(completed) == 3
    assert window.rows == 800 - 750
    assert window.completed == 3
    for counts in completed:
        for offset, size in zip(
            layout.offsets, np.diff([*layout.offsets, layout.total_slots]), strict=True
        ):
            assert counts[offset : offset + size].sum() == 250


def test_memory_does_not_grow_with_traffic() -> None:
    layout = _layout()
    window = windows.TumblingWindow(layout, 1000)
    numeric = np.random.default_rng(2).normal(0, 1, (5000, len(layout.numeric_columns)))
    categorical = np.full((5000, 1), 2, dtype=np.intp)
    batch = payloads.Batch("request", numeric, categorical)
    for _ in range(200):
        window.add(batch)
    assert window.completed == 1000
    assert window._counts.shape == (layout.total_slots,)
    assert window._counts.nbytes == 8 * layout.total_slots


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=12),
    window_size=st.integers(min_value=1, max_value=700),
)
def test_how_rows_are_split_into_batches_never_changes_the_windows(
    sizes: list[int], window_size: int
) -> None:
    layout = _layout()
    total = sum(sizes)
    rng = np.random.default_rng(total)
    numeric = rng.normal(0, 1.5, (total, len(layout.numeric_columns)))
    numeric[rng.random(numeric.shape) < 0.05] = np.nan
    categorical = rng.integers(0, 6, (total, 1))
    whole = windows.TumblingWindow(layout, window_size)
    expected = whole.add(payloads.Batch("request", numeric, categorical))
    pieces = windows.TumblingWindow(layout, window_size)
    got = []
    start = 0
    for size in sizes:
        batch = payloads.Batch(
            "request", numeric[start : start + size], categorical[start : start + size]
        )
        got += pieces.add(batch)
        start += size
    assert len(got) == len(expected) == total // window_size
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert pieces.rows == whole.rows == total % window_size
