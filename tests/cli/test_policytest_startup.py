"""`modelshield test` and models.verifyAtStartup: manifests are judged before injection.

A Pod manifest never carries the startup init container (the mutating webhook adds it at
admission), so its absence passes; a Pod that could not receive it (no model volume), or
that carries its own container of that name, fails as admission would deny it. The
offline check does not know the webhook's --startup-image, so it exempts nothing.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from modelshield.cli import main
from modelshield.engine import startup
from tests.support.paths import REPOSITORY

EXAMPLES = REPOSITORY / "examples"


def _files(tmp_path: pathlib.Path, *workloads: dict[str, Any]) -> list[str]:
    policy = yaml.safe_load((EXAMPLES / "policies" / "fraud-model.yaml").read_text())
    policy["spec"]["models"]["verifyAtStartup"] = True
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "workloads.yaml").write_text(yaml.safe_dump_all(workloads))
    return [
        str(tmp_path / "policy.yaml"),
        str(EXAMPLES / "policies" / "platform-baseline.yaml"),
        "--resources",
        str(tmp_path / "workloads.yaml"),
        str(EXAMPLES / "workloads" / "namespace.yaml"),
        str(EXAMPLES / "workloads" / "model-artifacts.yaml"),
        "--facts",
        str(EXAMPLES / "facts.yaml"),
        "--now",
        "2026-11-26T00:00:00Z",
    ]


def _deployment() -> dict[str, Any]:
    document = yaml.safe_load((EXAMPLES / "workloads" / "compliant.yaml").read_text())
    spec = document["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "model", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "model", "mountPath": "/models"}]
    return dict(document)


def _pod(name: str, *, mounted: bool = True) -> dict[str, Any]:
    template = copy.deepcopy(_deployment()["spec"]["template"])
    if not mounted:
        template["spec"].pop("volumes")
        template["spec"]["containers"][0].pop("volumeMounts")
    metadata = {**template["metadata"], "name": name, "namespace": "ml-prod"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def test_pods_are_judged_as_the_mutating_webhook_will_leave_them(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = _pod("own-startup-container")
    injected = startup.for_pod(
        own["spec"],
        image="ghcr.io/modelshield/modelshield:latest",
        digest="sha256:5f0c3a0c2f0d6e8b9a1c2d3e4f5061728394a5b6c7d8e9f00112233445566778",
        artifact="fraud-v7",
        signer="model-release",
    )
    own["spec"]["initContainers"] = [injected]
    own["spec"]["volumes"].append(startup.keys_volume())
    arguments = _files(
        tmp_path, _deployment(), _pod("plain"), _pod("unmounted", mounted=False), own
    )
    assert main.main(["test", *arguments]) == 1
    out = capsys.readouterr().out
    assert "PASS  Deployment ml-prod/fraud-detector" in out
    assert "PASS  Pod ml-prod/plain" in out
    assert "FAIL  Pod ml-prod/unmounted" in out
    assert "FAIL  Pod ml-prod/own-startup-container" in out
    assert out.count("ModelStartupVerificationMissing") == 2
    assert "mounts no volume" in out
    assert "remove yours from the pod spec" in out
