"""Layering rules: the engine and the API do no I/O; nothing is called `operator`."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

from tests.conftest import REPOSITORY

# Modules whose import by the engine or the API would mean I/O.
FORBIDDEN_PREFIXES = (
    "kubernetes",
    "kopf",
    "aiohttp",
    "urllib",
    "http",
    "socket",
    "requests",
    "httpx",
    "subprocess",
    "asyncio",
    "modelshield.cli",
    "modelshield.supplychain",
    "modelshield.controllers",
    "modelshield_webhooks",
)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_and_api_import_nothing_that_does_io() -> None:
    package = REPOSITORY / "operator" / "modelshield"
    for path in [*package.joinpath("engine").rglob("*.py"), *package.joinpath("api").rglob("*.py")]:
        bad = {n for n in _imports(path) if n.startswith(FORBIDDEN_PREFIXES)}
        assert not bad, f"{path.relative_to(REPOSITORY)} imports {sorted(bad)}"


def test_import_linter_contracts_hold() -> None:
    executable = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    assert executable, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [executable], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_package_is_called_operator() -> None:
    for source_root in ("operator", "webhooks"):
        for init in (REPOSITORY / source_root).rglob("__init__.py"):
            assert init.parent.name != "operator", (
                f"{init.parent} would shadow the standard library"
            )
