"""docs/quickstart.md as tests run it: its blocks marked ``<!-- quickstart: NAME -->``, and a
shell that runs one with bash as a user at a terminal would (kubectl, helm and modelshield
on PATH). e2e/test_quickstart.py walks them against modelshield as local processes;
e2e/pods/test_quickstart_pods.py against the chart's pods on a local node.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Sequence

import pytest

from e2e.clients import REPOSITORY_ROOT

QUICKSTART = REPOSITORY_ROOT / "docs" / "quickstart.md"
DOC_NAMESPACE = "ml-demo"
BLOCK = re.compile(r"<!-- quickstart: (?P<name>[a-z-]+) -->\n```sh\n(?P<body>.*?)\n```", re.DOTALL)
STEPS = ("ready", "namespace", "reference", "policy", "unsigned", "signed", "controls", "status")


def quickstart_blocks() -> dict[str, str]:
    """The runnable blocks of docs/quickstart.md, by name."""
    return {match["name"]: match["body"] for match in BLOCK.finditer(QUICKSTART.read_text())}


class Shell:
    """Runs a quickstart block with bash, as a user at a terminal would."""

    def __init__(
        self,
        kubectl_path: pathlib.Path,
        kubeconfig_path: pathlib.Path,
        workdir: pathlib.Path,
        env: dict[str, str],
        tool_dirs: Sequence[pathlib.Path] = (),
        timeout_seconds: float = 120,
    ) -> None:
        tools = [
            str(kubectl_path.parent),
            *map(str, tool_dirs),
            str(pathlib.Path(sys.executable).parent),
            os.environ.get("PATH", "/usr/bin:/bin"),
        ]
        self.workdir = workdir
        self.timeout_seconds = timeout_seconds
        self.environment = {
            "PATH": os.pathsep.join(tools),
            "HOME": str(workdir),
            "KUBECONFIG": str(kubeconfig_path),
            **env,
        }

    def __call__(self, block: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=self.workdir,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=self.timeout_seconds,
            check=False,
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"quickstart step failed ({completed.returncode}):\n{block}\n"
                f"--- stdout\n{completed.stdout}\n--- stderr\n{completed.stderr}"
            )
        return completed
