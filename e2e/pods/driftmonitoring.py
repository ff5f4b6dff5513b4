"""The drift monitor on the node: a reference profile made by the CLI, the drift events it records."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

from e2e.pods.harness import NodeCluster
from e2e.pods.workloads import get_json


def reference_profile(
    tmp_path: pathlib.Path, features: tuple[str, str], rows: list[list[float]]
) -> str:
    """`modelshield drift profile` of two-column rows (the node tests' models)."""
    data = tmp_path / "reference.csv"
    data.write_text(",".join(features) + "\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    out = tmp_path / "profile.json"
    built = subprocess.run(
        [sys.executable, "-m", "modelshield.cli.main", "drift", "profile", str(data),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out.read_text()


def _drift_events(node_cluster: NodeCluster, namespace: str) -> list[dict[str, Any]]:
    events = get_json(node_cluster.kubectl, "-n", namespace, "events")["items"]
    return [
        event
        for event in events
        if event.get("source", {}).get("component") == "modelshield-drift-monitor"
    ]
