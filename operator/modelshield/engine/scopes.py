"""Which namespaces modelshield may govern at all: the one answer admission and operator share.

The workload webhooks never see the cluster's own namespaces, modelshield's release
namespace, the names an installation adds, or a namespace labelled
``modelshield.dev/ignore=true`` (and, in opt-in mode, any namespace not labelled
``modelshield.dev/enforce=true``). The operator must not govern them either, whatever a
cluster policy's selectors say: a NetworkPolicy written for CoreDNS or for modelshield's
own webhook would break the cluster. The webhook configuration's namespaceSelector
(``modelshield_webhooks.configurations``, and the chart, which tests compare) and the
operator's ``World.governing`` are both built from a ``Scope``. Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

#: Namespaces Kubernetes itself runs in: never governed.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
#: The release namespace when none is given (the chart's and the CLI's default).
DEFAULT_RELEASE_NAMESPACE = "modelshield-system"
#: ``true`` opts a namespace out of admission and of the operator.
IGNORE_LABEL = "modelshield.dev/ignore"
#: In opt-in mode, only namespaces with ``true`` here are governed.
OPT_IN_LABEL = "modelshield.dev/enforce"
TRUE = "true"


@dataclasses.dataclass(frozen=True)
class Scope:
    """The namespaces modelshield governs: all but the excluded ones (and, in opt-in
    mode, only those that opted in)."""

    release_namespace: str = DEFAULT_RELEASE_NAMESPACE
    #: Further namespaces an installation excludes (chart: webhook.namespaceSelector.excludeNamespaces).
    extra_excluded: frozenset[str] = frozenset()
    require_opt_in: bool = False

    @classmethod
    def of(
        cls,
        release_namespace: str = DEFAULT_RELEASE_NAMESPACE,
        extra_excluded: Iterable[str] = (),
        *,
        require_opt_in: bool = False,
    ) -> Scope:
        """A scope from plain arguments (command-line flags)."""
        return cls(release_namespace, frozenset(extra_excluded), require_opt_in)

    @property
    def excluded_names(self) -> tuple[str, ...]:
        """Every namespace excluded by name, sorted (the webhooks' NotIn values)."""
        return tuple(sorted(SYSTEM_NAMESPACES | {self.release_namespace} | self.extra_excluded))

    def governs(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether a workload in this namespace (with these labels) may be governed."""
        if namespace in SYSTEM_NAMESPACES or namespace == self.release_namespace:
            return False
        if namespace in self.extra_excluded or labels.get(IGNORE_LABEL) == TRUE:
            return False
        return not self.require_opt_in or labels.get(OPT_IN_LABEL) == TRUE
