"""The values table of charts/modelshield/README.md, generated from values.yaml's comments.

Every key of values.yaml is documented by the comment lines right above it. A key whose
value is a block and that has no comment of its own is a section: its children are the
rows. ``python -m tests.chart.valuestable`` rewrites the table in the README;
test_values_table.py fails when it is stale or a key has no comment.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import sys
from typing import Any

import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent.parent / "charts" / "modelshield"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
START = "<!-- values-table:start (generated from values.yaml by `python -m tests.chart.valuestable`) -->"
END = "<!-- values-table:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


class UndocumentedKeyError(ValueError):
    """A key of values.yaml with no comment above it (and no documented children)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One documented value."""

    key: str
    default: str
    description: str


def _lookup(values: Any, path: list[str]) -> Any:
    for part in path:
        values = values[part]
    return values


def rows(text: str) -> list[Row]:
    """The documented keys of a values.yaml text, in file order."""
    values = yaml.safe_load(text)
    lines = text.splitlines()
    found: list[Row] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    # Paths documented as a whole: their children need no comment of their own.
    documented_blocks: list[list[str]] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            # The file's header comment is separated from the first key by a blank line.
            comment.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comment = []
            continue
        match = _KEY.match(line)
        if match is None:
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [key for _, key in stack] + [match["key"]]
        stack.append((indent, match["key"]))
        inside_documented = any(path[: len(block)] == block for block in documented_blocks)
        is_block = not match["rest"].strip() and _next_is_deeper(lines, index, indent)
        if comment and not inside_documented:
            found.append(
                Row(
                    key=".".join(path),
                    default=json.dumps(_lookup(values, path), separators=(", ", ": ")),
                    description=" ".join(comment),
                )
            )
            if is_block:
                documented_blocks.append(path)
        elif not comment and not is_block and not inside_documented:
            raise UndocumentedKeyError(f"values.yaml: {'.'.join(path)} has no comment")
        comment = []
    return found


def _next_is_deeper(lines: list[str], index: int, indent: int) -> bool:
    for line in lines[index + 1 :]:
        if line.strip() and not line.strip().startswith("#"):
            return len(line) - len(line.lstrip(" ")) > indent
    return False


def table(text: str) -> str:
    """The Markdown table of every documented value."""
    out = ["| key | default | description |", "|---|---|---|"]
    for row in rows(text):
        default = row.default.replace("|", "\\|")
        description = row.description.replace("|", "\\|")
        out.append(f"| `{row.key}` | `{default}` | {description} |")
    return "\n".join(out)


def with_table(readme: str, values_text: str) -> str:
    """The README with its values table replaced by the generated one."""
    before, start, rest = readme.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{README} has no {START} ... {END} markers")
    return f"{before}{START}\n{table(values_text)}\n{END}{after}"


def main() -> int:
    """Rewrite the README's table."""
    README.write_text(with_table(README.read_text(), VALUES.read_text()))
    print(f"wrote the values table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
