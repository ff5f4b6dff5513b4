"""Layering rules: the import-linter contracts in pyproject.toml hold; nothing is called `operator`.

The contracts are the one statement of the layers (API -> engine -> facts -> processes ->
CLI; the webhooks and the controllers independent) and of what the engine may not import;
lint-imports enforces them, and the tests here only check that they still say so.
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys
import tomllib
from typing import Any

from tests.support.paths import REPOSITORY

NO_IO_CONTRACT = "The policy engine and the API models do no I/O"


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_engine_contract_forbids_what_does_io() -> None:
    # lint-imports enforces it (imports inside functions included); this keeps it whole.
    (contract,) = [c for c in _contracts() if c["name"] == NO_IO_CONTRACT]
    assert set(contract["source_modules"]) == {"modelshield.engine", "modelshield.api"}
    for module in ("kubernetes", "kopf", "aiohttp", "socket", "subprocess", "asyncio"):
        assert module in contract["forbidden_modules"], module


def test_the_contracts_state_the_layers_and_the_independence_of_the_processes() -> None:
    by_type = {contract["type"]: contract for contract in _contracts()}
    layers = [
        {name.strip() for name in layer.replace("|", ":").split(":")}
        for layer in by_type["layers"]["layers"]
    ]
    assert layers[0] == {"modelshield.cli"}
    assert {"modelshield.controllers", "modelshield_webhooks"} <= layers[1]
    assert "modelshield.supplychain" in layers[2]  # the facts layer
    assert layers[-2:] == [{"modelshield.engine"}, {"modelshield.api"}]
    assert set(by_type["independence"]["modules"]) == {
        "modelshield.controllers",
        "modelshield_webhooks",
    }


def test_a_contract_keeps_every_package_free_of_import_cycles() -> None:
    # Issue 17: the model fetchers imported each other (fetching <-> buckets, registries,
    # localpaths) through deferred imports that no layer contract sees inside a package.
    (contract,) = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert set(contract["ancestors"]) == {"modelshield", "modelshield_webhooks"}
    assert "depth" not in contract  # import-linter's default depth reaches every package


def test_the_processes_import_their_controllers_and_verifier_by_name() -> None:
    # Issue 17: the ModelArtifact controllers and the image verifier were loaded by importlib
    # from strings, so a reader could not follow them from the command to the code.
    package = REPOSITORY / "operator" / "modelshield"
    paths = [
        package / "cli" / "operator.py",
        package / "cli" / "webhook.py",
        *package.joinpath("controllers").rglob("*.py"),
        *package.joinpath("supplychain").rglob("*.py"),
    ]
    for path in paths:
        assert "importlib" not in _imports(path), f"{path.relative_to(REPOSITORY)}"


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every module an import names, `from package import module` counted as package.module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_e2e_and_bench_take_from_the_tests_only_tests_support() -> None:
    # Issue 17: the contract that keeps a test area's own modules its own (lint-imports
    # enforces it, imports inside functions included); this keeps it whole.
    (contract,) = [c for c in _contracts() if c["name"].startswith("e2e and bench import")]
    assert set(contract["source_modules"]) == {"e2e", "bench"}
    assert contract["forbidden_modules"] == ["tests"]
    assert all(rule.split(" -> ")[1] == "tests.support.**" for rule in contract["ignore_imports"])


def test_tests_support_takes_nothing_from_a_test_area() -> None:
    # The contract above checks direct imports only: e2e/ and bench/ reach no test area
    # through tests.support either, because tests.support imports none.
    offenders = [
        f"{path.relative_to(REPOSITORY)} imports {name}"
        for path in sorted((REPOSITORY / "tests" / "support").rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name.split(".")[0] == "tests" and not name.startswith("tests.support")
    ]
    assert offenders == []


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    # Issue 17: what two test modules share lives in tests/support (or e2e/, if it needs
    # a cluster), not in a test_*.py or conftest.py that pytest collects and runs as well.
    # import-linter has no pattern for test_*, hence a test of its own.
    trees = ("tests", "e2e", "bench")
    offenders = [
        f"{path.relative_to(REPOSITORY)} imports {name}"
        for tree in trees
        for path in sorted((REPOSITORY / tree).rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name.split(".")[0] in trees
        and (name.rsplit(".", 1)[-1].startswith("test_") or name.endswith("conftest"))
    ]
    assert offenders == []


def test_import_linter_contracts_hold() -> None:
    executable = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    assert executable, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [executable, "--no-cache"], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_package_is_called_operator() -> None:
    for source_root in ("operator", "webhooks"):
        for init in (REPOSITORY / source_root).rglob("__init__.py"):
            assert init.parent.name != "operator", (
                f"{init.parent} would shadow the standard library"
            )
