"""KServe's real controller manager next to the e2e control plane.

``kserve-manager`` is KServe's ``cmd/manager`` (the InferenceService controller and
KServe's admission webhooks: InferenceService defaulting and validation, ServingRuntime
validation, and the pod mutator that injects the storage initializer), built by
e2e/tools/build-tools.sh from the Go module of one release, next to that release's CRDs,
``inferenceservice-config`` ConfigMap, webhook configurations and ClusterRole (its
``config/`` directory). Here it runs as a local process with that ClusterRole's
ServiceAccount token, its webhooks registered by loopback URL + caBundle, in Standard
(formerly RawDeployment) mode: it creates Deployments and Services, no Knative or Istio.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import clients
from e2e.clients import Cluster, Kubectl
from e2e.cluster import find_free_ports
from e2e.toolcache import BUILD_SCRIPT, tool_path
from e2e.webhooks import Images
from tests.support import pki

#: Where KServe runs (its POD_NAMESPACE) and where it reads its ConfigMap.
NAMESPACE = "kserve"
SERVICE_ACCOUNT = "kserve-controller-manager"
CONFIG_MAP = "inferenceservice-config"
CLUSTER_ROLE_BINDING = "kserve-manager-rolebinding-e2e"
#: The field manager of e2e/fixtures/inferenceservice-crd.yaml too: whichever CRD a
#: module applies last replaces the other, without a server-side apply conflict.
FIELD_MANAGER = "modelshield-e2e"
#: KServe v0.15+ calls RawDeployment "Standard" (and still reads the old name).
DEPLOYMENT_MODE = "Standard"
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class KServeRelease:
    """The cached manager binary and the manifests of the same release."""

    manager: Path

    @property
    def version(self) -> str:
        return self.manager.parent.name.removeprefix("kserve-manager-")

    @property
    def config_dir(self) -> Path:
        return self.manager.parent / "config"

    @classmethod
    def locate(cls) -> KServeRelease | None:
        manager = tool_path("MODELSHIELD_KSERVE_MANAGER")
        return cls(manager) if manager is not None else None

    def crd_files(self) -> list[Path]:
        """The CRDs config/crd/full's kustomization lists (InferenceService, ServingRuntime,
        ClusterServingRuntime, InferenceGraph, TrainedModel, ClusterStorageContainer)."""
        return _kustomization_resources(self.config_dir / "crd" / "full")

    def inference_service_config(
        self, storage_initializer_image: str, agent_image: str | None = None
    ) -> dict[str, Any]:
        """The release's ``inferenceservice-config`` with Standard as the default mode and
        the storage initializer image the test chooses (a local registry's), and the agent
        image (the payload logger's sidecar) when given."""
        document: dict[str, Any] = yaml.safe_load(
            (self.config_dir / "configmap" / "inferenceservice.yaml").read_text()
        )
        data: dict[str, str] = document["data"]
        data["deploy"] = json.dumps({"defaultDeploymentMode": DEPLOYMENT_MODE})
        # Released defaults request 1 CPU and 2Gi per container, more than a container
        # limited to 1Gi may ask for (the Deployment would be invalid) and than CI has.
        data["inferenceService"] = json.dumps(
            {
                "resource": {
                    "cpuLimit": "1",
                    "memoryLimit": "1Gi",
                    "cpuRequest": "100m",
                    "memoryRequest": "64Mi",
                }
            }
        )
        initializer = json.loads(data["storageInitializer"])
        initializer["image"] = storage_initializer_image
        data["storageInitializer"] = json.dumps(initializer, indent=2)
        if agent_image is not None:
            # The pod mutator takes the injected agent container's image from `agent`.
            agent = json.loads(data["agent"])
            agent["image"] = agent_image
            data["agent"] = json.dumps(agent, indent=2)
        document["metadata"]["namespace"] = NAMESPACE
        return document

    def webhook_configurations(self, url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
        """The release's webhook configurations, each webhook pointed at URL + its path
        instead of the in-cluster Service; rules and selectors as released."""
        documents = [
            document
            for document in yaml.safe_load_all(
                (self.config_dir / "webhook" / "manifests.yaml").read_text()
            )
            if isinstance(document, dict)
        ]
        for document in documents:
            document["metadata"].pop("creationTimestamp", None)
            for webhook in document["webhooks"]:
                path = webhook["clientConfig"]["service"]["path"]
                webhook["clientConfig"] = {
                    "url": f"{url}{path}",
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                }
        return documents

    def cluster_role(self) -> dict[str, Any]:
        document: dict[str, Any] = yaml.safe_load(
            (self.config_dir / "rbac" / "role.yaml").read_text()
        )
        return document


def _kustomization_resources(directory: Path) -> list[Path]:
    """The files a kustomization's `resources` name, directories followed (its patches,
    which need a webhook Service, are not resources)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        files.extend(_kustomization_resources(path) if path.is_dir() else [path])
    return files


def require_release(cluster: Cluster) -> KServeRelease:
    """The cached release; on the local control plane a missing one is a failure (the
    harness is built with it), against an external cluster a skip."""
    release = KServeRelease.locate()
    if release is not None:
        return release
    missing = (
        "KServe's controller manager is not built (MODELSHIELD_KSERVE_MANAGER not found in "
        f"the environment or the tools cache); run {BUILD_SCRIPT}"
    )
    if cluster.started_locally:
        pytest.fail(missing, pytrace=False)
    pytest.skip(f"{missing}; this run is against an external kubeconfig")


class KServeManager:
    """``kserve-manager`` as a child process with its own log."""

    def __init__(self, release: KServeRelease, work_dir: Path, kubeconfig: Path) -> None:
        self.release = release
        self.log_path = work_dir / "kserve-manager.log"
        self.work_dir = work_dir
        self.kubeconfig = kubeconfig
        self.webhook_port, self.probe_port, self.metrics_port = find_free_ports(3)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, certificate: bytes, key: bytes) -> None:
        # controller-runtime's webhook server has no certificate flag in KServe's main:
        # it reads $TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key}.
        tmp = self.work_dir / "tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "tls.crt").write_bytes(certificate)
        (certs / "tls.key").write_bytes(key)
        (certs / "tls.key").chmod(0o600)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work_dir),
            "TMPDIR": str(tmp),
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.release.manager),
                    # The webhook server listens on all interfaces (KServe's main sets
                    # only its port); metrics and probes stay on loopback.
                    f"--webhook-port={self.webhook_port}",
                    f"--metrics-addr=127.0.0.1:{self.metrics_port}",
                    f"--health-probe-addr=127.0.0.1:{self.probe_port}",
                    "--leader-elect=false",
                ],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
            )
        clients.wait_for(
            f"kserve-manager to be ready (log: {self.log_path})", self._ready, STARTUP_SECONDS
        )

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"kserve-manager exited: {self.tail()}", pytrace=False)
        url = f"http://127.0.0.1:{self.probe_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except urllib.error.HTTPError as error:  # not ready yet; it holds the socket
            error.close()
            return False
        except (urllib.error.URLError, OSError):
            return False

    def tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def memory(self) -> str:
        """Resident memory now and at its peak, from /proc (for the log)."""
        if self.process is None:
            return "not started"
        fields: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        return f"VmRSS {fields.get('VmRSS', '?')}, VmHWM {fields.get('VmHWM', '?')}"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _install(kubectl: Kubectl, release: KServeRelease, storage_initializer_image: str) -> None:
    """CRDs, namespace, ServiceAccount with KServe's ClusterRole, and the ConfigMap."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        *(f"--filename={path}" for path in release.crd_files()),
    )
    # Not `kubectl wait`: it gives up on a CRD whose status has no conditions yet.
    names = [yaml.safe_load(path.read_text())["metadata"]["name"] for path in release.crd_files()]

    def established() -> bool:
        conditions = kubectl(
            "get",
            *(f"crd/{name}" for name in names),
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Established')].status} {end}",
        ).stdout.split()
        return conditions == ["True"] * len(names)

    clients.wait_for("KServe's CRDs to be Established", established)
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("-n", NAMESPACE, "create", "serviceaccount", SERVICE_ACCOUNT, check=False)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE_BINDING},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": release.cluster_role()["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
    }
    kubectl(
        "apply",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(
            [
                release.cluster_role(),
                binding,
                release.inference_service_config(storage_initializer_image),
            ]
        ),
    )


def set_storage_initializer_image(kubectl: Kubectl, release: KServeRelease, image: str) -> None:
    """KServe reads its ConfigMap at every pod it mutates: the next pod gets this image."""
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump(release.inference_service_config(image)))


def set_images(
    kubectl: Kubectl, release: KServeRelease, storage_initializer_image: str, agent_image: str
) -> None:
    """The storage initializer and agent images of the next pod KServe mutates."""
    config = release.inference_service_config(storage_initializer_image, agent_image)
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump(config))


@dataclass
class KServe:
    release: KServeRelease
    manager: KServeManager
    kubectl: Kubectl


@contextlib.contextmanager
def running_kserve(
    cluster: Cluster, kubectl: Kubectl, images: Images, work_dir: Path
) -> Iterator[KServe]:
    """KServe installed and its manager running with its webhooks registered; afterwards
    the webhooks are unregistered and the manager stopped (the CRDs stay: the suite's
    minimal InferenceService CRD replaces them when a later module applies it)."""
    release = require_release(cluster)
    host = cluster.callback_host
    if host is None:
        pytest.skip(
            "kserve-manager runs as a process on this machine whose webhooks are registered "
            "by URL; this cluster's API server has no address of this machine to call "
            "(set MODELSHIELD_E2E_CALLBACK_HOST; e2e/kind.sh sets kind's network gateway)"
        )
    with kserve_on(
        kubectl, cluster.kubeconfig_path, release, images.signed, work_dir, host
    ) as running:
        yield running


@contextlib.contextmanager
def kserve_on(
    kubectl: Kubectl,
    admin_kubeconfig: Path,
    release: KServeRelease,
    storage_initializer_image: str,
    work_dir: Path,
    host: str = "127.0.0.1",
) -> Iterator[KServe]:
    """KServe on a cluster whose API server can call this machine at ``host`` (the
    manager's webhooks listen on every interface): by loopback the control plane alone or
    the node's, kind's through its network's gateway."""
    _install(kubectl, release, storage_initializer_image)
    token = kubectl(
        "-n", NAMESPACE, "create", "token", SERVICE_ACCOUNT, "--duration=2h"
    ).stdout.strip()
    kubeconfig = clients.token_kubeconfig(
        admin_kubeconfig, token, work_dir / "kserve.kubeconfig", SERVICE_ACCOUNT
    )
    authority = pki.Authority.create("modelshield-e2e-kserve-ca")
    certificate, key = authority.issue("kserve-webhook-server", (host,))
    manager = KServeManager(release, work_dir, kubeconfig)
    configurations = release.webhook_configurations(
        f"https://{host}:{manager.webhook_port}", authority.pem
    )
    try:
        manager.start(certificate, key)
        kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(configurations))
        yield KServe(release, manager, kubectl)
    finally:
        # KServe's finalizer is on every InferenceService: delete them while it still
        # runs, or their namespaces would stay Terminating.
        kubectl(
            "delete", "inferenceservices", "--all", "--all-namespaces", "--timeout=60s", check=False
        )
        kubectl(
            "delete",
            "--ignore-not-found",
            *(
                f"{document['kind'].lower()}/{document['metadata']['name']}"
                for document in configurations
            ),
            check=False,
        )
        # Left for a reader of a failed run (pytest shows it then): what KServe said.
        print(f"--- kserve-manager ({manager.memory()}) ---\n{manager.tail()}")
        manager.stop()


@pytest.fixture(scope="module")
def kserve(
    cluster: Cluster,
    kubectl: Kubectl,
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KServe]:
    with running_kserve(cluster, kubectl, images, tmp_path_factory.mktemp("kserve")) as running:
        yield running
