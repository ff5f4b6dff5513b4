"""``modelshield lineage``: what a workload is built from, where a model or dataset runs.

Reads workloads and ModelArtifacts (with the status the operator wrote) from YAML files
(``--resources``, e.g. ``kubectl get ... -o yaml`` saved for a review) or from a cluster
(``--kubeconfig``; read-only: list and get). Directions:

- no query, or ``--workload KIND/NAME``: each workload's images, models, provenance
  (builder, code, commit) and datasets (with the Dataset record that vouches for each);
- ``--model NAME``: every workload serving that ModelArtifact;
- ``--dataset URI|NAME``: every model whose verified provenance names the dataset, and
  every workload serving one of them.

``--output table|json|cyclonedx``: cyclonedx writes a CycloneDX 1.6 document of the
workloads found, validated against the schema. Exit codes: 0 found, 1 nothing matched,
2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from modelshield.provenance import lineage

EXIT_OK, EXIT_NOTHING, EXIT_BAD_INPUT = 0, 1, 2
GROUP, VERSION = "modelshield.dev", "v1alpha1"

#: (API group/version, plural, kind) listed from a cluster; KServe's only when installed.
CLUSTER_KINDS = (
    ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "statefulsets", "StatefulSet"),
    ("apps/v1", "daemonsets", "DaemonSet"),
    ("apps/v1", "replicasets", "ReplicaSet"),
    ("v1", "replicationcontrollers", "ReplicationController"),
    ("v1", "pods", "Pod"),
    ("batch/v1", "jobs", "Job"),
    ("batch/v1", "cronjobs", "CronJob"),
    ("serving.kserve.io/v1beta1", "inferenceservices", "InferenceService"),
    ("modelshield.dev/v1alpha1", "modelartifacts", "ModelArtifact"),
)


def _from_files(paths: Sequence[str]) -> list[dict[str, Any]]:
    from modelshield.cli import manifests

    return [d.body for d in manifests.read_documents(pathlib.Path(p) for p in paths)]


def _from_cluster(kubeconfig: str | None, namespace: str | None) -> Iterator[dict[str, Any]]:
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    try:
        for api_version, plural, kind in CLUSTER_KINDS:
            group, _, version = api_version.rpartition("/")
            try:
                if not group:  # the core API: typed lists, turned back into JSON objects
                    listing = getattr(
                        core,
                        f"list_namespaced_{_SINGULAR[plural]}"
                        if namespace
                        else f"list_{_SINGULAR[plural]}_for_all_namespaces",
                    )
                    typed = listing(namespace) if namespace else listing()
                    listed = api.sanitize_for_serialization(typed)  # type: ignore[no-untyped-call]
                elif namespace:
                    listed = custom.list_namespaced_custom_object(group, version, namespace, plural)
                else:
                    listed = custom.list_cluster_custom_object(group, version, plural)
            except client.ApiException as error:
                if error.status == 404:
                    continue  # that API is not installed (KServe)
                raise
            for item in (listed or {}).get("items", []):
                yield {**item, "apiVersion": api_version, "kind": kind}
    finally:
        api.close()  # type: ignore[no-untyped-call]


_SINGULAR = {"pods": "pod", "replicationcontrollers": "replication_controller"}
#: Where a workload the serving index names is read: kind -> (group, version, plural).
_INDEXED_KINDS = {
    kind: (api_version.rpartition("/")[0], api_version.rpartition("/")[2], plural)
    for api_version, plural, kind in CLUSTER_KINDS
    if api_version.rpartition("/")[0]
}


def _queried_records(
    records: list[dict[str, Any]], namespace: str | None, model: str | None, dataset: str | None
) -> list[dict[str, Any]]:
    """The ModelArtifacts whose status.servedBy answers the query: the model, or every model
    whose verified provenance names the dataset."""
    if model is not None:
        return [
            r
            for r in records
            if (r.get("metadata") or {}).get("name") == model
            and (namespace is None or (r.get("metadata") or {}).get("namespace") == namespace)
        ]
    trained = {
        (m.namespace, m.name) for m in lineage.Graph.of(records).trained_on(str(dataset), namespace)
    }
    return [
        r
        for r in records
        if ((r.get("metadata") or {}).get("namespace"), (r.get("metadata") or {}).get("name"))
        in trained
    ]


def _from_index(
    kubeconfig: str | None, namespace: str | None, model: str | None, dataset: str | None
) -> list[dict[str, Any]] | None:
    """ModelArtifacts and the workloads their status.servedBy names (the operator's reverse
    index: no listing of workloads); None when a queried record has no servedBy yet."""
    from kubernetes import client, config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    custom = client.CustomObjectsApi(api)
    try:
        listed: Any = (
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelartifacts")
            if namespace
            else custom.list_cluster_custom_object(GROUP, VERSION, "modelartifacts")
        )
        records = [
            {**item, "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelArtifact"}
            for item in (listed or {}).get("items", [])
        ]
        queried = _queried_records(records, namespace, model, dataset)
        entries: dict[tuple[str, str, str], None] = {}
        for record in queried:
            index = (record.get("status") or {}).get("servedBy")
            if not isinstance(index, dict):
                return None  # the operator has not recorded it (yet)
            entries.update(dict.fromkeys(_entries(record, index)))
        return records + _workloads(client, custom, entries)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _entries(record: dict[str, Any], index: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of the workloads a record's servedBy lists."""
    listed = index.get("workloads") or []
    if int(index.get("total") or 0) > len(listed):
        name = (record.get("metadata") or {}).get("name")
        print(
            f"warning: {index.get('total')} workloads serve {name}; its status lists "
            f"the first {len(listed)}",
            file=sys.stderr,
        )
    return [(str(e.get("kind")), str(e.get("namespace")), str(e.get("name"))) for e in listed]


def _workloads(
    client: Any, custom: Any, entries: Iterable[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """The workloads the index names, read one by one (gone ones are left out)."""
    found = []
    for kind, namespace, name in entries:
        where = _INDEXED_KINDS.get(kind)
        if where is None:
            continue
        group, version, plural = where
        try:
            body = custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except client.ApiException as error:
            if error.status == 404:
                continue  # deleted since: the operator takes it off the index shortly
            raise
        found.append({**body, "apiVersion": f"{group}/{version}", "kind": kind})
    return found


def _table(rows: Iterable[lineage.WorkloadLineage], out: TextIO) -> None:
    for workload in rows:
        scaled = " (scaled to zero)" if workload.replicas == 0 else ""
        out.write(f"{workload.kind} {workload.namespace}/{workload.name}{scaled}\n")
        for image in workload.images:
            out.write(f"  image    {image}\n")
        for reference in workload.unresolved:
            out.write(f"  model    {reference} (no ModelArtifact)\n")
        for model in workload.models:
            ready = "Ready" if model.ready else "not Ready"
            out.write(
                f"  model    {model.name} {model.digest or '(unverified)'} signer={model.signer} "
                f"{ready}\n"
            )
            said = model.provenance
            if said is None or not model.provenance_verified:
                out.write("    provenance  none verified\n")
                continue
            out.write(
                f"    provenance  builder={said.builder} ({said.builder_id}) "
                f"trained={said.finished.isoformat() if said.finished else '?'}\n"
                f"    code        {said.source}@{said.commit}\n"
            )
            for dataset in model.datasets:
                record = (
                    f"record {dataset.record} ({'verified' if dataset.record_verified else 'NOT verified'}, "
                    f"signer={dataset.record_signer})"
                    if dataset.record
                    else "no Dataset record"
                )
                out.write(f"    dataset     {dataset.uri} {dataset.digest or '?'} {record}\n")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def run(arguments: argparse.Namespace) -> int:
    """Answer the query; return the exit code."""
    from modelshield.cli import manifests
    from modelshield.provenance import bom

    try:
        if arguments.resources:
            objects = _from_files(arguments.resources)
        else:
            reverse = arguments.model is not None or arguments.dataset is not None
            indexed = (
                _from_index(
                    arguments.kubeconfig, arguments.namespace, arguments.model, arguments.dataset
                )
                if reverse
                else None
            )
            if reverse and indexed is None:
                print(
                    "note: no status.servedBy on the queried ModelArtifact (the operator has "
                    "not recorded where it runs): listing every workload instead",
                    file=sys.stderr,
                )
            objects = (
                indexed
                if indexed is not None
                else list(_from_cluster(arguments.kubeconfig, arguments.namespace))
            )
    except (manifests.ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    graph = lineage.Graph.of(objects)
    for skipped in graph.skipped:
        print(f"warning: skipped {skipped}", file=sys.stderr)
    namespace = arguments.namespace
    models: list[lineage.ModelLineage] = []
    if arguments.model:
        if namespace is None:
            print("error: --model needs --namespace", file=sys.stderr)
            return EXIT_BAD_INPUT
        rows = graph.serving_model(namespace, arguments.model)
    elif arguments.dataset:
        pairs = graph.serving_dataset(arguments.dataset, namespace)
        models = graph.trained_on(arguments.dataset, namespace)
        rows = list({w.key: w for _, w in pairs}.values())
    else:
        rows = [
            w
            for w in graph.all_forward()
            if (namespace is None or w.namespace == namespace)
            and (arguments.workload is None or f"{w.kind}/{w.name}" == arguments.workload)
        ]
    out = sys.stdout
    if arguments.output == "cyclonedx":
        out.write(bom.render(bom.build(rows)) + "\n")
    elif arguments.output == "json":
        document: dict[str, Any] = {"workloads": _jsonable(rows)}
        if arguments.dataset:
            document["trainedModels"] = _jsonable(models)
        out.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        if arguments.dataset:
            for model in models:
                out.write(f"trained on it: ModelArtifact {model.namespace}/{model.name}\n")
        _table(rows, out)
    return EXIT_OK if rows or models else EXIT_NOTHING


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``lineage`` command."""
    parser = subparsers.add_parser(
        "lineage",
        help="what a workload is built from (images, models, code, datasets) and where a "
        "model or dataset runs; CycloneDX export",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--resources", nargs="+", help="YAML files or directories of workloads and ModelArtifacts"
    )
    source.add_argument("--kubeconfig", help="read from this cluster (default: in-cluster)")
    parser.add_argument("-n", "--namespace", help="only this namespace")
    query = parser.add_mutually_exclusive_group()
    query.add_argument("--workload", help="KIND/NAME: that workload's lineage")
    query.add_argument("--model", help="ModelArtifact name: every workload serving it")
    query.add_argument(
        "--dataset",
        help="dataset URI or Dataset record name: models trained on it, workloads serving them",
    )
    parser.add_argument("--output", choices=("table", "json", "cyclonedx"), default="table")
    parser.set_defaults(handler=run)
