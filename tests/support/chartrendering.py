"""Render charts/modelshield with the cached helm and hand back the objects.

helm comes from e2e/tools/build-tools.sh's cache (``MODELSHIELD_HELM`` in its env.sh); a
missing helm fails the test with the command to run, it never skips.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from e2e import toolcache

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent.parent
CHART = REPOSITORY / "charts" / "modelshield"
RELEASE = "modelshield"
NAMESPACE = "modelshield-system"
HELM_TIMEOUT_SECONDS = 120

Manifest = dict[str, Any]

#: Every combination the chart README documents, by name: the values each sets.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"certManager": {"enabled": True}},
    "cert-manager-issuer": {
        "certManager": {
            "enabled": True,
            "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca", "group": "cert-manager.io"},
        }
    },
    "no-crds": {"crds": {"install": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "policy-reports-elsewhere": {"policyReports": {"installCRD": False}},
    "no-signer-secrets": {"operator": {"readSignerSecrets": False}},
    "webhook-secrets": {"webhook": {"readSignerSecrets": True, "readPullSecrets": True}},
    "service-monitor": {"serviceMonitor": {"enabled": True}},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True}},
    "opt-in": {"webhook": {"namespaceSelector": {"requireOptIn": True}}},
    "everything": {
        "certManager": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "image": {"digest": "sha256:" + "ab" * 32},
        "webhook": {
            "replicas": 3,
            "podAntiAffinity": "hard",
            "namespaceSelector": {"excludeNamespaces": ["monitoring"], "requireOptIn": True},
            "trustRootConfigMap": "sigstore-trust-root",
            "registryCAConfigMap": "registry-ca",
            "insecureRegistries": ["registry.lab:5000"],
        },
        "operator": {"scraperNamespaces": ["monitoring"], "scraperPodLabels": {"app": "prom"}},
        "modelStore": {"s3Endpoint": "https://minio.storage.svc.cluster.local:9000"},
    },
}


def helm_path() -> pathlib.Path:
    """The cached helm, or a test failure naming the script that builds it."""
    found = toolcache.tool_path("MODELSHIELD_HELM")
    if found is None:
        pytest.fail(
            f"helm is not built: run {toolcache.BUILD_SCRIPT} (MODELSHIELD_HELM is not set and "
            f"not in {toolcache.tools_cache_dir() / 'env.sh'})",
            pytrace=False,
        )
    return found


def kube_version() -> str:
    """The Kubernetes version to render for (the control plane the e2e suite runs)."""
    return toolcache.pinned_kubernetes_version() or "v1.36.3"


def helm(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm; a failure fails the test with helm's own output unless check=False."""
    completed = subprocess.run(
        [str(helm_path()), *arguments],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_SECONDS,
        check=False,
    )
    if check and completed.returncode != 0:
        pytest.fail(
            f"`helm {' '.join(arguments)}` exited with {completed.returncode}:\n"
            f"{completed.stderr}{completed.stdout}",
            pytrace=False,
        )
    return completed


def values_arguments(values: Mapping[str, Any], directory: pathlib.Path) -> list[str]:
    """``--values FILE`` for these values (a file keeps types exact, unlike --set)."""
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def render_text(
    values: Mapping[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE
) -> str:
    """`helm template` output for these values."""
    with tempfile.TemporaryDirectory() as directory:
        completed = helm(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            kube_version(),
            "--include-crds",
            *values_arguments(values, pathlib.Path(directory)),
        )
    return completed.stdout


def parse(text: str) -> list[Manifest]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [document for document in yaml.safe_load_all(text) if isinstance(document, dict)]


@functools.cache
def _rendered(name: str) -> tuple[Manifest, ...]:
    return tuple(parse(render_text(COMBINATIONS[name])))


def rendered(name: str) -> list[Manifest]:
    """The objects of a documented combination (rendered once per session)."""
    return [dict(manifest) for manifest in _rendered(name)]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [manifest for manifest in manifests if manifest.get("kind") == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single object of a kind (and name); fails the test otherwise."""
    found = [
        manifest
        for manifest in of_kind(manifests, kind)
        if name is None or manifest["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """Every pod spec the chart renders, named ``Kind/name``."""
    for manifest in manifests:
        kind = manifest.get("kind")
        label = f"{kind}/{manifest['metadata']['name']}"
        if kind == "Pod":
            yield label, manifest["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield label, manifest["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield label, manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def hook_of(manifest: Manifest) -> str | None:
    """The helm.sh/hook annotation of an object, if any."""
    annotations = manifest.get("metadata", {}).get("annotations") or {}
    hook = annotations.get("helm.sh/hook")
    return str(hook) if hook is not None else None
