"""The startup check is bound to what the servers read (issue 21).

The init container verified the first mount of the first container that looked like a
model, ran first (later init containers could rewrite the volume after it passed),
ignored ``subPathExpr`` and other subPaths, and nothing required the servers' mounts to
be read-only. Each test here was admitted before.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelshield.engine import modelchecks, startup, workloads
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as builders
from tests.support.startupchecks import ADMISSION, _decide, _injected, _pod_spec


def _pod(change: Any = None) -> dict[str, Any]:
    spec = _pod_spec()
    if change is not None:
        change(spec)
    spec.setdefault("initContainers", []).append(_injected(spec))
    return builders.workload("Pod", spec)


def _violations(obj: dict[str, Any]) -> list[tuple[str, str]]:
    decision = _decide(obj)
    return [(v.code.value, v.path) for v in decision.violations]


def test_a_bound_pod_is_admitted() -> None:
    assert _violations(_pod()) == []


def _writable(spec: dict[str, Any]) -> None:
    spec["containers"][0]["volumeMounts"][0]["readOnly"] = False


def _sidecar_writes(spec: dict[str, Any]) -> None:
    spec["initContainers"] = [
        {
            **builders.hardened_container(),
            "name": "sync",
            "restartPolicy": "Always",
            "volumeMounts": [{"name": "model", "mountPath": "/sync"}],
        }
    ]


def _sub_path_expr(spec: dict[str, Any]) -> None:
    second = copy.deepcopy(spec["containers"][0])
    second["name"] = "loader"
    second["volumeMounts"] = [
        {"name": "model", "mountPath": "/m", "readOnly": True, "subPathExpr": "$(MODEL_DIR)"}
    ]
    spec["containers"].append(second)


def _sub_path_elsewhere(spec: dict[str, Any]) -> None:
    spec["containers"][0]["volumeMounts"][0]["subPath"] = "v1"
    second = copy.deepcopy(spec["containers"][0])
    second["name"] = "loader"
    second["volumeMounts"] = [
        {"name": "model", "mountPath": "/m", "readOnly": True, "subPath": "v1/../.git"}
    ]
    spec["containers"].append(second)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_writable, "spec.containers[0].volumeMounts[0].readOnly"),
        (_sidecar_writes, "spec.initContainers[0].volumeMounts[0].readOnly"),
        (_sub_path_expr, "spec.containers[1].volumeMounts[0].subPathExpr"),
        (_sub_path_elsewhere, "spec.containers[1].volumeMounts[0].subPath"),
    ],
    ids=["writable", "sidecar-writes", "subpathexpr", "subpath-elsewhere"],
)
def test_a_pod_whose_servers_read_unverified_files_is_denied(change: Any, path: str) -> None:
    assert (Code.MODEL_STARTUP_VERIFICATION_MISSING.value, path) in _violations(_pod(change))


def test_an_init_container_after_the_check_is_denied() -> None:
    spec = _pod_spec()
    spec["initContainers"] = [
        _injected(spec),
        {**builders.hardened_container(), "name": "rewrite", "command": ["cp", "/x", "/models"]},
    ]

    assert (
        Code.MODEL_STARTUP_VERIFICATION_MISSING.value,
        "spec.initContainers[1]",
    ) in _violations(builders.workload("Pod", spec))


def test_an_init_container_before_the_check_is_fine() -> None:
    spec = _pod_spec()
    spec["initContainers"] = [
        {**builders.hardened_container(), "name": "download", "command": ["true"]},
        _injected(spec),
    ]

    assert _violations(builders.workload("Pod", spec)) == []


def test_a_pod_admitted_before_is_not_denied_on_update() -> None:
    # Init containers cannot change: an UPDATE (a label) of a running Pod is judged as
    # admitted, not against rules that came after it.
    spec = _pod_spec()
    _writable(spec)
    injected = _injected(spec)
    spec["initContainers"] = [injected]
    check = modelchecks.StartupCheck(image=ADMISSION.image, previous=(injected,))

    decision = _decide(builders.workload("Pod", spec), check)

    assert decision.allowed, decision.message()


def test_read_only_patches_point_at_every_writable_serving_mount() -> None:
    spec = _pod_spec()
    _writable(spec)
    _sidecar_writes(spec)

    assert startup.read_only_patches(spec) == [
        {"op": "add", "path": "/spec/containers/0/volumeMounts/0/readOnly", "value": True},
        {"op": "add", "path": "/spec/initContainers/0/volumeMounts/0/readOnly", "value": True},
    ]
    assert workloads.parse(builders.workload("Pod", spec)).problems == ()
