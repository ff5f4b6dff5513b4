"""The subjects of the one ClusterRoleBinding that lets inference guards create
TokenReviews, and the checks made before the operator rewrites it. Pure.

TokenReviews are cluster-scoped: only a ClusterRoleBinding grants them, and a cluster-scoped
object cannot be owned (garbage-collected) by a namespaced workload. So the chart ships one
ClusterRoleBinding to the ClusterRole holding that one permission, and the operator keeps
its subjects exactly the guards' ServiceAccounts its plans create (``guardplans``); every
other subject, hand-added or left over, is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
DEFAULT_NAME = "modelshield-inference-guard"


def subjects(accounts: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """The binding's subjects for these (namespace, name) ServiceAccounts, in a stable order."""
    return [
        {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        for namespace, name in sorted(set(accounts))
    ]


def bound(binding: Mapping[str, Any]) -> list[dict[str, str]]:
    """The binding's subjects as stored, reduced to the fields ``subjects`` writes, sorted
    like them (a subject of another kind keeps its kind, so it never looks like ours)."""
    found = [
        {
            "kind": str(subject.get("kind", "")),
            "name": str(subject.get("name", "")),
            "namespace": str(subject.get("namespace", "")),
        }
        for subject in binding.get("subjects") or []
        if isinstance(subject, Mapping)
    ]
    return sorted(
        found, key=lambda subject: (subject["namespace"], subject["name"], subject["kind"])
    )


def role_ref_problem(binding: Mapping[str, Any], role: str) -> str | None:
    """Why the operator must not write this binding's subjects (None when it may): it must
    grant the guards' ClusterRole and nothing else. The API server would refuse the update
    anyway (the operator may bind only that role), but saying why beats a 403."""
    ref = binding.get("roleRef") or {}
    if (
        ref.get("apiGroup") == RBAC_GROUP
        and ref.get("kind") == "ClusterRole"
        and ref.get("name") == role
    ):
        return None
    name = (binding.get("metadata") or {}).get("name", "")
    return (
        f"ClusterRoleBinding {name} refers to {ref.get('kind')} {ref.get('name')!r}, not to "
        f"ClusterRole {role!r}: its subjects are left alone"
    )


def with_subjects(binding: Mapping[str, Any], wanted: list[dict[str, str]]) -> dict[str, Any]:
    """The binding as stored, with only its subjects replaced (a PUT body; the server's
    field bookkeeping left to the server)."""
    metadata = {k: v for k, v in (binding.get("metadata") or {}).items() if k != "managedFields"}
    return {**binding, "metadata": metadata, "subjects": wanted}
