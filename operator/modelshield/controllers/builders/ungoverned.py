"""Which namespaces carry ``modelshield.dev/ungoverned=true``: those no policy could govern.

The workload webhooks' namespaceSelector skips namespaces with this label, so when the
admission server is down (``failurePolicy: Fail``) only namespaces that some policy could
govern refuse pod creation. The judgement is deliberately coarse and errs towards
"governed":

- a namespace holding any ModelSecurityPolicy is governed (workload selectors are not
  looked at: a namespace is the unit the API server's selector can skip);
- a namespace that a ClusterModelSecurityPolicy's namespaceSelector selects is governed;
  a cluster policy whose selector cannot be read governs every namespace;
- the label itself is left out when selectors are matched, so a selector that names it
  cannot make the judgement flip on every write of the operator;
- excluded namespaces (``engine.scopes``: the system namespaces, modelshield's own) are
  never touched: the webhooks never see them anyway.

Only a positive judgement adds the label; a namespace not judged yet carries none and stays
selected (fail closed). Pure: plain data in, merge patches out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from modelshield.api.v1alpha1 import common
from modelshield.engine import scopes, selectors

LABEL = "modelshield.dev/ungoverned"
VALUE = "true"
ALWAYS_EXCLUDED = scopes.SYSTEM_NAMESPACES


@dataclasses.dataclass(frozen=True)
class Policies:
    """What decides governance at namespace granularity."""

    #: Namespaces that hold at least one ModelSecurityPolicy.
    namespaced: frozenset[str]
    #: Every cluster policy's compiled namespaceSelector; None when it could not be read.
    cluster: tuple[selectors.Selector | None, ...]


def cluster_selector(namespace_selector: Mapping[str, Any] | None) -> selectors.Selector | None:
    """A cluster policy's namespaceSelector compiled, or None when it is not a valid one."""
    try:
        parsed = common.LabelSelector.model_validate(dict(namespace_selector or {}))
    except pydantic.ValidationError:
        return None
    return selectors.compile_selector(parsed)


def policies_of(
    namespaced: Iterable[str], cluster_selectors: Iterable[Mapping[str, Any] | None]
) -> Policies:
    """Policies from the namespaces of the namespaced ones and the cluster ones' selectors."""
    return Policies(
        namespaced=frozenset(namespaced),
        cluster=tuple(cluster_selector(selector) for selector in cluster_selectors),
    )


def governed(namespace: str, labels: Mapping[str, str], policies: Policies) -> bool:
    """Whether some policy could govern a workload in the namespace."""
    if namespace in policies.namespaced:
        return True
    judged = {key: value for key, value in labels.items() if key != LABEL}
    return any(selector is None or selector.matches(judged) for selector in policies.cluster)


def labelled(labels: Mapping[str, str]) -> bool:
    """Whether the namespace carries the label (with its one meaningful value)."""
    return labels.get(LABEL) == VALUE


@dataclasses.dataclass(frozen=True)
class Change:
    """One namespace's label to add or remove, as a JSON merge patch."""

    namespace: str
    add: bool

    @property
    def patch(self) -> dict[str, Any]:
        """The merge patch (null removes a label)."""
        return {"metadata": {"labels": {LABEL: VALUE if self.add else None}}}


def change(
    namespace: str,
    labels: Mapping[str, str],
    policies: Policies,
    excluded: Iterable[str] = (),
) -> Change | None:
    """What to do to one namespace's label, or None when it is right (or left alone)."""
    if namespace in ALWAYS_EXCLUDED or namespace in set(excluded):
        return None
    want = not governed(namespace, labels, policies)
    # A value other than "true" does not take the namespace out of the selector; it is
    # replaced (when ungoverned) or removed (when governed) all the same.
    if want and not labelled(labels):
        return Change(namespace, add=True)
    if not want and LABEL in labels:
        return Change(namespace, add=False)
    return None


def plan(
    namespaces: Mapping[str, Mapping[str, str]],
    policies: Policies,
    excluded: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> list[Change]:
    """The changes for these namespaces (``only``, else all), removals first.

    Removals come first because a namespace that is labelled while governed is the one
    state where a create escapes the webhook; an addition only narrows its load.
    """
    left_alone = frozenset(excluded)
    names = sorted(namespaces if only is None else set(only) & set(namespaces))
    changes = [
        found
        for name in names
        if (found := change(name, namespaces[name], policies, left_alone)) is not None
    ]
    return [c for c in changes if not c.add] + [c for c in changes if c.add]
