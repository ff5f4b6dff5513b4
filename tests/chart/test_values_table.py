"""Every value is documented, and the chart README's table is the one values.yaml generates."""

from __future__ import annotations

import pytest
import yaml

from tests.chart import valuestable
from tests.support import chartrendering as rendering


def _leaves(values: object, prefix: str = "") -> set[str]:
    if isinstance(values, dict) and values:
        return {leaf for key, child in values.items() for leaf in _leaves(child, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


def test_readme_table_is_current() -> None:
    readme = valuestable.README.read_text()
    expected = valuestable.with_table(readme, valuestable.VALUES.read_text())
    assert readme == expected, "run `python -m tests.chart.valuestable`"


def test_every_value_is_documented() -> None:
    text = valuestable.VALUES.read_text()
    documented = [row.key for row in valuestable.rows(text)]
    assert len(documented) == len(set(documented))
    for leaf in _leaves(yaml.safe_load(text)):
        assert any(leaf == key or leaf.startswith(key + ".") for key in documented), leaf


def test_an_undocumented_key_is_refused() -> None:
    with pytest.raises(valuestable.UndocumentedKeyError, match=r"webhook\.secret"):
        valuestable.rows("webhook:\n  # Replicas.\n  replicas: 2\n  secret: x\n")


def test_every_documented_combination_is_tested() -> None:
    readme = valuestable.README.read_text()
    section = readme.split("## Documented combinations", 1)[1].split("## Values", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    # One README row per combination, besides the header and "everything" (tests only).
    assert len(rows) - 1 == len(rendering.COMBINATIONS) - 1
