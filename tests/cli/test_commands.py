"""The `modelshield` command table: every command registers, and only its module loads."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from modelshield.cli import main
from tests.support.paths import REPOSITORY


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return set(subparsers.choices)


@pytest.mark.parametrize("command", sorted(main.COMMANDS))
def test_each_command_registers_itself(command: str) -> None:
    assert command in _command_names(main.build_parser(command))


def test_the_full_parser_lists_every_command() -> None:
    assert set(main.COMMANDS) <= _command_names(main.build_parser())


@pytest.mark.parametrize("command", ["drift-monitor", "test", "crds"])
def test_a_light_command_does_not_load_the_kubernetes_stack(command: str) -> None:
    # A fresh interpreter: this test process has long imported kopf through other tests.
    probe = (
        "import sys; from modelshield.cli import main; "
        f"main.build_parser({command!r}); "
        "print(sorted({'kopf', 'kubernetes'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
        timeout=120,
    ).stdout.strip()
    assert loaded == "[]"
