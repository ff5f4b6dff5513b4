"""Every command block of README.md and docs/quickstart.md runs, or says why it cannot here.

Blocks that need nothing but this repository run in this test, as written (bash, from the
repository root or from a directory laid out as the block expects). Blocks that need a
cluster run in e2e/test_quickstart.py (the page's `<!-- quickstart: NAME -->` blocks) or
need what this machine does not have (Docker with kind, a registry you can push to); each
such block is listed below with its reason, so a new block fails this test until somebody
decides how it is checked.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.support.paths import REPOSITORY

PAGES = (REPOSITORY / "README.md", REPOSITORY / "docs" / "quickstart.md")
_BLOCK = re.compile(
    r"(?P<marker><!-- quickstart: [a-z-]+ -->\n)?```sh\n(?P<body>.*?)\n```", re.DOTALL
)

#: Why a block does not run offline here, keyed by its first command line.
NOT_OFFLINE = {
    "kind create cluster --name modelshield": "needs Docker and kind (make e2e-kind)",
    "helm install modelshield charts/modelshield -n modelshield-system --create-namespace": (
        "needs a cluster; e2e/test_chart.py installs the chart's objects on the local one"
    ),
    "helm install modelshield charts/modelshield \\": (
        "needs a cluster; e2e/test_chart.py installs the chart's objects on the local one"
    ),
    "kubectl -n modelshield-system rollout status deployment/modelshield-webhook": (
        "needs modelshield running as pods: there is no node in the local control plane"
    ),
    "kubectl -n ml-demo get networkpolicies -l app.kubernetes.io/managed-by=modelshield": (
        "needs a cluster; the same commands are the quickstart's `controls` block (e2e)"
    ),
    "cosign generate-key-pair          # writes cosign.key (keep it secret) and cosign.pub": (
        "needs a registry you can push to (REGISTRY); e2e/test_quickstart.py signs with a "
        "local registry and the real cosign"
    ),
    "crane copy nginxinc/nginx-unprivileged:1.27-alpine $REGISTRY/demo-model:v1": (
        "needs Docker Hub and a registry you can push to"
    ),
    "kubectl delete namespace ml-demo": "needs a cluster (teardown of the quickstart)",
}


@dataclass(frozen=True)
class Block:
    """One ```sh block: where it is, whether e2e runs it, its commands."""

    page: pathlib.Path
    line: int
    run_by_e2e: bool
    body: str

    @property
    def first_command(self) -> str:
        """The block's first line that is not a comment."""
        lines = [line for line in self.body.splitlines() if line and not line.startswith("#")]
        return lines[0]

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPOSITORY)}:{self.line}"


def blocks() -> list[Block]:
    """Every ```sh block of the pages."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("body"))
            found.append(Block(page, line, bool(match["marker"]), match["body"]))
    return found


def _offline() -> dict[str, Block]:
    return {
        block.first_command: block
        for block in blocks()
        if not block.run_by_e2e and block.first_command not in NOT_OFFLINE
    }


def test_every_block_is_run_here_by_e2e_or_says_why_not() -> None:
    offline = _offline()
    assert set(offline) == {
        "make demo   # set up .venv and run `modelshield test` on examples/: one workload "
        "passes, one is denied with its violations",
        "modelshield test policies/ --resources deploy/ --facts facts.yaml --output sarif > "
        "modelshield.sarif",
    }, "a new command block: run it in this test, or list it in NOT_OFFLINE with the reason"
    listed = {block.first_command for block in blocks()}
    assert not set(NOT_OFFLINE) - listed, "NOT_OFFLINE names blocks the pages no longer have"


def _bash(script: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{REPOSITORY / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_readme_first_command_runs_as_written() -> None:
    (block,) = [b for b in _offline().values() if b.page.name == "README.md"]
    first, second = block.body.splitlines()
    assert second.startswith("make test "), "the README's second command is the test suite"
    # `make test` is this very suite; running it from inside itself would never end.
    result = _bash(first, REPOSITORY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  Deployment ml-prod/fraud-detector " in result.stdout
    assert "FAIL  Deployment ml-prod/fraud-detector-experiment " in result.stdout


def test_the_quickstart_gitops_command_runs_on_a_repository_laid_out_as_it_says(
    tmp_path: pathlib.Path,
) -> None:
    (block,) = [b for b in _offline().values() if b.page.name == "quickstart.md"]
    shutil.copytree(REPOSITORY / "examples" / "policies", tmp_path / "policies")
    shutil.copytree(REPOSITORY / "examples" / "workloads", tmp_path / "deploy")
    shutil.copy(REPOSITORY / "examples" / "facts.yaml", tmp_path / "facts.yaml")
    result = _bash(block.body, tmp_path)
    # 1: the non-compliant example is denied, which is what a pull request check reports.
    assert result.returncode == 1, result.stdout + result.stderr
    sarif = json.loads((tmp_path / "modelshield.sarif").read_text())
    rules = {r["ruleId"] for run in sarif["runs"] for r in run["results"]}
    assert "ImageUnsigned" in rules


@pytest.mark.parametrize("block", blocks(), ids=str)
def test_every_block_parses_as_bash(block: Block) -> None:
    result = subprocess.run(
        ["bash", "-n"], input=block.body, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{block}: {result.stderr}"
