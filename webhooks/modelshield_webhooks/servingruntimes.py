"""KServe's ServingRuntimes and ClusterServingRuntimes, as admission needs them.

An InferenceService that names its runtime (``predictor.model.runtime``) runs that
runtime's containers: the webhook keeps every runtime's spec (list+watch, like the
policies), so that the InferenceService is judged on the runtime's images too, at a
path that names the runtime (``engine.kserveruntimes``). KServe's CRDs may be absent:
these kinds are optional, readiness never waits for them, and a runtime that is not
known is not a verdict (KServe creates no pod until it exists; the runtime and the pods
are judged on their own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelshield.engine import kserveruntimes, workloads

RUNTIMES = "servingruntimes"
CLUSTER_RUNTIMES = "clusterservingruntimes"
KINDS = (RUNTIMES, CLUSTER_RUNTIMES)
PATHS = {
    RUNTIMES: "/apis/serving.kserve.io/v1alpha1/servingruntimes",
    CLUSTER_RUNTIMES: "/apis/serving.kserve.io/v1alpha1/clusterservingruntimes",
}


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class ServingRuntimes:
    """The runtimes' specs: namespaced ones by (namespace, name), cluster ones by name."""

    def __init__(self) -> None:
        self._namespaced: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._cluster: dict[str, Mapping[str, Any]] = {}

    def _store(self, resource: str, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        namespace, name = _key(obj)
        if resource == RUNTIMES:
            if deleted:
                self._namespaced.pop((namespace, name), None)
            else:
                self._namespaced[(namespace, name)] = {"spec": obj.get("spec")}
        elif deleted:
            self._cluster.pop(name, None)
        else:
            self._cluster[name] = {"spec": obj.get("spec")}

    def replace(self, resource: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list of one kind."""
        (self._namespaced if resource == RUNTIMES else self._cluster).clear()
        for obj in objects:
            self._store(resource, obj)

    def apply(self, resource: str, event_type: str, obj: Mapping[str, Any]) -> None:
        """One watch event."""
        self._store(resource, obj, deleted=event_type == "DELETED")

    def lookup(self, namespace: str, name: str) -> tuple[str, Mapping[str, Any]] | None:
        """``GetServingRuntime``: the namespace's runtime of that name, else the cluster's;
        (kind, object holding its spec)."""
        return kserveruntimes.named(namespace, name, self._namespaced, self._cluster)

    def completed(self, workload: workloads.Workload) -> workloads.Workload:
        """The InferenceService with its named runtime's containers, when it is known."""
        request = workload.runtime
        if request is None or request.name is None:
            return workload
        found = self.lookup(workload.namespace, request.name)
        if found is None:
            return workload
        return workloads.with_runtime(workload, *found)

    def counts(self) -> dict[str, int]:
        """How many of each kind are cached."""
        return {
            "servingRuntimes": len(self._namespaced),
            "clusterServingRuntimes": len(self._cluster),
        }
