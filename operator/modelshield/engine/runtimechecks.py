"""Checks of the ``runtime`` requirement block: container hardening."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelshield.api.v1alpha1 import policies
from modelshield.engine import workloads
from modelshield.engine.decisions import Code
from modelshield.engine.imagechecks import Finding

_EMPTY: Mapping[str, Any] = {}


def _context(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    value = spec.get("securityContext")
    return value if isinstance(value, dict) else _EMPTY


def _names(container: workloads.Container) -> tuple[str, str]:
    """The securityContext path and the words that name the container in messages."""
    return f"{container.path}.securityContext", f"container {container.name!r}"


def check_container(
    container: workloads.Container, requirement: policies.RuntimeRequirements
) -> Iterator[Finding]:
    """Every hardening setting the container lacks."""
    own = _context(container.spec)
    pod = _context(container.pod.spec)
    # Names are formatted only when something is missing: a compliant container (the
    # common case, on the admission hot path) costs no string formatting.
    if requirement.run_as_non_root:
        non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot"))
        user = own.get("runAsUser", pod.get("runAsUser"))
        if non_root is not True or user == 0:
            path, who = _names(container)
            yield (
                Code.RUNTIME_RUN_AS_ROOT,
                f"{path}.runAsNonRoot",
                f"{who} may run as root; set securityContext.runAsNonRoot: true "
                "(and a non-zero runAsUser) on the container or the pod",
            )
    if requirement.read_only_root_filesystem and own.get("readOnlyRootFilesystem") is not True:
        path, who = _names(container)
        yield (
            Code.RUNTIME_WRITABLE_ROOT_FILESYSTEM,
            f"{path}.readOnlyRootFilesystem",
            f"{who} has a writable root filesystem; set securityContext.readOnlyRootFilesystem: "
            "true and mount an emptyDir where it must write",
        )
    if (
        requirement.disallow_privilege_escalation
        and own.get("allowPrivilegeEscalation") is not False
    ):
        path, who = _names(container)
        yield (
            Code.RUNTIME_PRIVILEGE_ESCALATION,
            f"{path}.allowPrivilegeEscalation",
            f"{who} may escalate privileges; set securityContext.allowPrivilegeEscalation: false",
        )
    if requirement.disallow_privileged and own.get("privileged") is True:
        path, who = _names(container)
        yield (
            Code.RUNTIME_PRIVILEGED,
            f"{path}.privileged",
            f"{who} is privileged; remove securityContext.privileged",
        )
    # Ephemeral containers cannot declare resources, so the limits check skips them.
    if requirement.require_resource_limits and container.field != "ephemeralContainers":
        resources = container.spec.get("resources")
        limits = resources.get("limits") if isinstance(resources, dict) else None
        missing = [
            name for name in ("cpu", "memory") if not isinstance(limits, dict) or name not in limits
        ]
        if missing:
            who = _names(container)[1]
            yield (
                Code.RUNTIME_NO_RESOURCE_LIMITS,
                f"{container.path}.resources.limits",
                f"{who} sets no {' and no '.join(missing)} limit; set resources.limits."
                f"{missing[0]}",
            )
