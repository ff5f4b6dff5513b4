"""Ephemeral containers and the startup check (issue 19).

``kubectl debug`` adds an ephemeral container to a running pod through the
``ephemeralcontainers`` subresource, an UPDATE of the Pod. Before, such an UPDATE of a
pod that already carried the startup check was judged "admitted before" and the new
container's mounts were never looked at: a debugger mounting the model volume writable
could rewrite the model after the check passed, and a restarted server (init containers
do not run again) would load it unverified.
"""

from __future__ import annotations

import copy
from typing import Any

from modelshield.engine import modelchecks, startup
from modelshield.engine.decisions import Code
from tests.support import workloadbuilders as builders
from tests.support.startupchecks import ADMISSION, _decide, _injected, _pod_spec

WRITABLE_PATH = "spec.ephemeralContainers[0].volumeMounts[0].readOnly"


def _running_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    """A pod as the API server holds it after admission (the check injected), and the
    injected container."""
    spec = _pod_spec()
    injected = _injected(spec)
    spec["initContainers"] = [injected]
    return builders.workload("Pod", spec), injected


def _debugger(read_only: bool | None, name: str = "debugger") -> dict[str, Any]:
    mount: dict[str, Any] = {"name": "model", "mountPath": "/debug/models"}
    if read_only is not None:
        mount["readOnly"] = read_only
    return {
        **builders.hardened_container(),
        "name": name,
        "targetContainerName": "server",
        "volumeMounts": [mount],
    }


def _debugged(pod: dict[str, Any], *debuggers: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["spec"].setdefault("ephemeralContainers", []).extend(debuggers)
    return new


def _update_check(old: dict[str, Any], injected: dict[str, Any]) -> modelchecks.StartupCheck:
    # What the webhook builds for an UPDATE (validating.startup_check).
    earlier = tuple(old["spec"].get("ephemeralContainers", ()))
    return modelchecks.StartupCheck(
        image=ADMISSION.image, previous=(injected,), earlier_ephemeral=earlier
    )


def _violations(obj: dict[str, Any], check: modelchecks.StartupCheck) -> list[tuple[str, str]]:
    return [(v.code.value, v.path) for v in _decide(obj, check).violations]


def test_kubectl_debug_mounting_the_model_writable_is_denied() -> None:
    pod, injected = _running_pod()
    for read_only in (None, False):
        new = _debugged(pod, _debugger(read_only))

        decision = _decide(new, _update_check(pod, injected))

        assert not decision.allowed
        assert (Code.MODEL_STARTUP_VERIFICATION_MISSING.value, WRITABLE_PATH) in [
            (v.code.value, v.path) for v in decision.violations
        ]
        assert "ephemeral container 'debugger' mounts the model volume" in decision.message()


def test_kubectl_debug_mounting_the_model_read_only_is_admitted() -> None:
    pod, injected = _running_pod()
    new = _debugged(pod, _debugger(True))

    assert _violations(new, _update_check(pod, injected)) == []


def test_a_debugger_without_the_model_volume_is_admitted() -> None:
    pod, injected = _running_pod()
    debugger = _debugger(None)
    debugger["volumeMounts"] = []

    assert _violations(_debugged(pod, debugger), _update_check(pod, injected)) == []


def test_an_ephemeral_container_the_pod_had_is_not_judged_again() -> None:
    # Ephemeral containers cannot change or be removed: one admitted before this rule
    # must not wedge every later debug session of the pod.
    pod, injected = _running_pod()
    before = _debugged(pod, _debugger(None, "old"))
    new = _debugged(before, _debugger(True, "new"))

    assert _violations(new, _update_check(before, injected)) == []


def test_the_second_writable_debugger_is_found_at_its_own_index() -> None:
    pod, injected = _running_pod()
    before = _debugged(pod, _debugger(True, "first"))
    new = _debugged(before, _debugger(False, "second"))

    assert (
        Code.MODEL_STARTUP_VERIFICATION_MISSING.value,
        "spec.ephemeralContainers[1].volumeMounts[0].readOnly",
    ) in _violations(new, _update_check(before, injected))


def test_the_audit_reports_a_pod_with_a_writable_debugger() -> None:
    # The operator's status and audit judge the pod as it is (no previous object).
    pod, _ = _running_pod()
    new = _debugged(pod, _debugger(False))

    assert (Code.MODEL_STARTUP_VERIFICATION_MISSING.value, WRITABLE_PATH) in _violations(
        new, ADMISSION
    )


def test_ephemeral_problems_name_only_the_model_volume() -> None:
    spec = _pod_spec()
    spec["ephemeralContainers"] = [
        {"name": "tmp", "image": "x", "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}
    ]

    assert startup.ephemeral_problems(spec) == []


def test_a_debugger_writing_through_a_twin_volume_of_the_claim_is_denied() -> None:
    # The pod declares a second volume of the model's claim that no container mounts;
    # a debugger mounting that one writable writes the same files.
    spec = _pod_spec()
    spec["volumes"] = [
        {"name": "model", "persistentVolumeClaim": {"claimName": "fraud", "readOnly": True}},
        {"name": "scratch", "persistentVolumeClaim": {"claimName": "fraud"}},
        startup.keys_volume(),
    ]
    injected = _injected(spec)
    spec["initContainers"] = [injected]
    pod = builders.workload("Pod", spec)
    debugger = _debugger(False)
    debugger["volumeMounts"][0]["name"] = "scratch"

    decision = _decide(_debugged(pod, debugger), _update_check(pod, injected))

    assert (Code.MODEL_STARTUP_VERIFICATION_MISSING.value, WRITABLE_PATH) in [
        (v.code.value, v.path) for v in decision.violations
    ]
    assert "(as 'scratch') writable" in decision.message()


def test_two_empty_dirs_are_two_volumes() -> None:
    spec = _pod_spec()
    spec["volumes"].append({"name": "scratch", "emptyDir": {}})
    spec["ephemeralContainers"] = [
        {"name": "tmp", "image": "x", "volumeMounts": [{"name": "scratch", "mountPath": "/s"}]}
    ]

    assert startup.ephemeral_problems(spec) == []
