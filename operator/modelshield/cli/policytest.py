"""``modelshield test``: check workloads against policies offline, for GitOps pull requests.

Exit codes: 0 every workload passes (Audit warnings allowed), 1 an Enforce policy denies
a workload, 2 the input cannot be used (the message names file, document and field),
including a policy whose guard would fail closed on the reference profile ConfigMap given
among the resources (``apichecks``: runtime defences' errors and warnings on stderr).

As admission does: an InferenceService that names a ServingRuntime (or
ClusterServingRuntime) given among the resources is judged on that runtime's images too,
and ``--s3-endpoint`` says which S3 server a KServe storage initializer may download
verified models from.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import typing

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.cli import apichecks, factsfile, manifests, modelstoreflags, reports
from modelshield.engine import (
    compiling,
    evaluating,
    facts,
    kserveruntimes,
    modelchecks,
    s3endpoints,
    workloads,
)

EXIT_PASS, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2


def run(
    policy_paths: list[pathlib.Path],
    resource_paths: list[pathlib.Path],
    facts_path: pathlib.Path | None,
    default_namespace: str,
    now: datetime.datetime,
    defaulted: list[manifests.Document] | None = None,
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT,
    api_findings: list[tuple[manifests.Document, apichecks.Finding]] | None = None,
) -> list[reports.Result]:
    """Evaluate every workload found under resource_paths; ManifestError on bad input.

    Namespaced documents that name no namespace are read into default_namespace and, when
    given, appended to defaulted: GitOps manifests often leave the namespace to the
    deploying tool, and the reviewer must see which namespace was assumed.

    When given, api_findings receives what apichecks says about each policy's runtime
    defences (judged against the reference profile ConfigMaps among the resources).
    """
    policy_list: list[compiling.AnyPolicy] = []
    assumed = defaulted if defaulted is not None else []
    artifact_facts: dict[tuple[str, str], facts.ArtifactFacts] = {}
    namespace_labels: dict[str, dict[str, str]] = {}
    workload_documents: list[manifests.Document] = []
    policy_documents: list[tuple[manifests.Document, compiling.AnyPolicy]] = []
    configmaps: dict[tuple[str, str], dict[str, str]] = {}
    for document in manifests.read_documents([*policy_paths, *resource_paths]):
        if manifests.is_modelshield_kind(document):
            parsed = manifests.parse_custom_resource(document)
            if isinstance(parsed, policies.ClusterModelSecurityPolicy):
                policy_list.append(parsed)
                policy_documents.append((document, parsed))
            elif isinstance(parsed, policies.ModelSecurityPolicy):
                if not parsed.metadata.namespace:
                    assumed.append(document)
                policy_list.append(_in_namespace(parsed, default_namespace))
                policy_documents.append((document, policy_list[-1]))
            elif isinstance(parsed, artifacts.ModelArtifact):
                if not parsed.metadata.namespace:
                    assumed.append(document)
                artifact = _in_namespace(parsed, default_namespace)
                artifact_facts[(artifact.metadata.namespace, artifact.metadata.name)] = (
                    facts.from_model_artifact(artifact)
                )
        elif document.body.get("kind") == "Namespace":
            metadata = document.body.get("metadata") or {}
            labels = metadata.get("labels") or {}
            namespace_labels[str(metadata.get("name"))] = {
                str(k): str(v) for k, v in labels.items()
            }
        elif document.body.get("kind") == "ConfigMap":
            metadata = document.body.get("metadata") or {}
            data = document.body.get("data") or {}
            place = (str(metadata.get("namespace") or default_namespace), str(metadata.get("name")))
            configmaps[place] = {str(k): str(v) for k, v in data.items()}
        elif document.body.get("kind") in workloads.SUPPORTED_KINDS:
            workload_documents.append(document)
    if api_findings is not None:
        for document, policy in policy_documents:
            api_findings.extend((document, f) for f in apichecks.judge(policy, configmaps))
    images = factsfile.load(facts_path) if facts_path else {}
    source = facts.StaticFacts(images=images, artifacts=artifact_facts)
    policy_set = compiling.compile_policies(policy_list)
    namespaced, cluster = _runtimes(workload_documents, default_namespace)

    results = []
    for document in workload_documents:
        header = workloads.read_header(document.body)
        if not header.namespace:
            assumed.append(document)
        namespace = header.namespace or default_namespace
        workload = workloads.complete(header, namespace)
        request = workload.runtime
        found = (
            kserveruntimes.named(namespace, request.name, namespaced, cluster)
            if request is not None and request.name is not None
            else None
        )
        if found is not None:
            workload = workloads.with_runtime(workload, *found)
        labels = namespace_labels.get(namespace, {"kubernetes.io/metadata.name": namespace})
        decision = evaluating.decide(
            workload,
            evaluating.governing_policies(workload, policy_set, labels),
            source,
            now,
            startup=modelchecks.BEFORE_ADMISSION,
            store=store,
        )
        results.append(reports.Result(document, workload.kind, namespace, workload.name, decision))
    return results


def _runtimes(
    documents: list[manifests.Document], default_namespace: str
) -> tuple[dict[tuple[str, str], dict[str, typing.Any]], dict[str, dict[str, typing.Any]]]:
    """The ServingRuntimes (by namespace and name) and ClusterServingRuntimes (by name)
    among the resources, for the InferenceServices that name one."""
    namespaced: dict[tuple[str, str], dict[str, typing.Any]] = {}
    cluster: dict[str, dict[str, typing.Any]] = {}
    for document in documents:
        kind = document.body.get("kind")
        metadata = document.body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        name = str(metadata.get("name") or "")
        if kind == kserveruntimes.SERVING_RUNTIME:
            namespace = str(metadata.get("namespace") or default_namespace)
            namespaced[(namespace, name)] = document.body
        elif kind == kserveruntimes.CLUSTER_SERVING_RUNTIME:
            cluster[name] = document.body
    return namespaced, cluster


_Namespaced = typing.TypeVar("_Namespaced", policies.ModelSecurityPolicy, artifacts.ModelArtifact)


def _in_namespace(resource: _Namespaced, default_namespace: str) -> _Namespaced:
    if resource.metadata.namespace:
        return resource
    metadata = resource.metadata.model_copy(update={"namespace": default_namespace})
    return resource.model_copy(update={"metadata": metadata})


def _handle(arguments: argparse.Namespace) -> int:
    now = arguments.now or datetime.datetime.now(datetime.UTC)
    defaulted: list[manifests.Document] = []
    api_findings: list[tuple[manifests.Document, apichecks.Finding]] = []
    for problem in modelstoreflags.problems(arguments):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        results = run(
            [pathlib.Path(p) for p in arguments.policies],
            [pathlib.Path(p) for p in arguments.resources],
            pathlib.Path(arguments.facts) if arguments.facts else None,
            arguments.namespace,
            now,
            defaulted,
            modelstoreflags.store_from(arguments),
            api_findings,
        )
    except manifests.ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # On stderr, so that json, junit and sarif output on stdout stay machine-readable.
    for document in defaulted:
        print(
            f"note: {document.where} names no metadata.namespace; evaluated in namespace "
            f"{arguments.namespace!r} (set it in the manifest, or pass --namespace)",
            file=sys.stderr,
        )
    for document, finding in api_findings:
        level = "error" if finding.error else "warning"
        print(f"{level}: {document.where}: {finding.field}: {finding.message}", file=sys.stderr)
    sys.stdout.write(reports.RENDERERS[arguments.output](results))
    if any(finding.error for _document, finding in api_findings):
        return EXIT_BAD_INPUT
    return EXIT_DENIED if any(r.verdict == "FAIL" for r in results) else EXIT_PASS


def _timestamp(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``test`` command."""
    parser = subparsers.add_parser(
        "test",
        help="check workload manifests against policies offline (for pull requests)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("policies", nargs="+", help="policy YAML files or directories")
    parser.add_argument(
        "--resources",
        nargs="+",
        required=True,
        help="workload, ModelArtifact and Namespace YAML files or directories",
    )
    parser.add_argument("--facts", help="image verification facts (YAML), see docs")
    parser.add_argument("--output", choices=sorted(reports.RENDERERS), default="table")
    parser.add_argument(
        "--namespace", default="default", help="namespace of documents that name none"
    )
    parser.add_argument(
        "--now",
        type=_timestamp,
        help="evaluate as of this ISO 8601 time (reproducible attestation ages)",
    )
    modelstoreflags.add_arguments(parser)
    parser.set_defaults(handler=_handle)
