"""Fixtures and helpers of the admission e2e tests (test_admission*.py import them).

``images``: a real registry with a signed and an unsigned image (real cosign). ``webhook``:
``modelshield webhook`` as a child process (stoppable, killable, restartable), registered
with the API server by URL + caBundle. The builders make the policies and workloads the
tests apply with kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from e2e import clients
from e2e.clients import Cluster, Kubectl
from modelshield.supplychain.images import registries
from tests.support import localtools, pki

WAIT_SECONDS = 60.0
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll until probe returns something truthy; fail naming what never happened."""
    return clients.wait_for(what, probe, timeout)


@dataclass
class Images:
    """A signed and an unsigned image in the registry, and the key that signed."""

    registry: str
    #: The signed image by digest, and the tag that points at it.
    signed: str
    signed_tag: str
    unsigned: str
    public_key: str


class WebhookProcess:
    """``modelshield webhook`` as a child process, stoppable and restartable."""

    def __init__(
        self, command: list[str], log_path: Path, host: str, port: int, ca_file: Path
    ) -> None:
        self.command = command
        #: The command the process was first made with; ``restart`` adds to it.
        self.base_command = list(command)
        self.log_path = log_path
        self.host = host
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for(f"the webhook to be ready (log: {self.log_path})", self._ready)

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"the webhook exited: {self.log_path.read_text()[-3000:]}")
        try:
            url = f"https://{self.host}:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=2, context=self.context) as answer:
                return bool(answer.status == 200)
        except urllib.error.HTTPError as error:  # 503 until synced; it holds the socket
            error.close()
            return False
        except (urllib.error.URLError, OSError):
            return False

    def restart(self, *extra: str) -> None:
        """Stop, then start again with the base command plus these arguments (same port)."""
        self.stop()
        self.command = [*self.base_command, *extra]
        self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        url = f"https://{self.host}:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5, context=self.context) as answer:
            return str(answer.read().decode())


def policy(
    namespace: str,
    images: Images,
    enforcement: str = "Enforce",
    name: str = "fraud-model",
    *,
    mutate_to_digest: bool = False,
) -> str:
    """A policy: images from the test registry signed by the release key, hardened runtime."""
    return yaml.safe_dump(
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "enforcement": enforcement,
                "selector": {"matchLabels": {"app": "fraud-detector"}},
                "images": {
                    "allowedRegistries": [f"{images.registry}/"],
                    "signers": [{"name": "release", "publicKey": images.public_key}],
                    "mutateToDigest": mutate_to_digest,
                },
                "runtime": {},
            },
        }
    )


def container(image: str) -> dict[str, Any]:
    """A hardened container."""
    return {
        "name": "server",
        "image": image,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
        "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
    }


def workload(kind: str, name: str, image: str, replicas: int = 1) -> str:
    """A Deployment or ReplicaSet (apps/v1) or Pod running the image, labelled for the policy."""
    labels = {"app": "fraud-detector", "instance": name}
    if kind == "Pod":
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container(image)]},
        }
    else:
        body = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container(image)]},
                },
            },
        }
    return yaml.safe_dump(body)


def apply_policy(
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    enforcement: str = "Enforce",
    *,
    mutate_to_digest: bool = False,
) -> None:
    """Create the policy and wait until the webhook's cache has it (a dry run is judged by it)."""
    text = policy(namespace, images, enforcement, mutate_to_digest=mutate_to_digest)
    kubectl("apply", "-n", namespace, "-f", "-", input_text=text)
    probe = workload("Pod", "probe", images.unsigned)

    def judged() -> bool:
        result = kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", input_text=probe, check=False
        )
        return f"ModelSecurityPolicy {namespace}/fraud-model" in result.stderr

    wait_for("the webhook to see the new policy", judged)


def deployment_reviews(metrics: str) -> float:
    """How many Deployment reviews the webhook has answered, from its /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modelshield_admission_requests_total{") and 'kind="Deployment"' in line
    )


OWN_NAMESPACE = "modelshield-e2e-system"
CONFIGURATION_NAME = "modelshield-admission-e2e-" + uuid.uuid4().hex[:6]
DENIED = 'admission webhook "workloads.validate.modelshield.dev" denied the request'


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """A real registry with two pushed images; cosign signs one of them."""
    registry = localtools.LocalRegistry(
        localtools.require_tool("MODELSHIELD_REGISTRY"), tmp_path_factory.mktemp("registry")
    ).start()
    cosign = localtools.Cosign(
        localtools.require_tool("MODELSHIELD_COSIGN"), tmp_path_factory.mktemp("cosign")
    )
    key, public_key = cosign.generate_key_pair("release")

    async def push() -> tuple[str, str]:
        client = registries.RegistryClient(registry.options())
        try:
            signed = await localtools.push_image(
                client, registry.host, "ml/fraud-server", "v7", "fraud v7"
            )
            unsigned = await localtools.push_image(
                client, registry.host, "ml/fraud-server", "unsigned", "tampered"
            )
            return signed, unsigned
        finally:
            await client.close()

    signed_digest, _unsigned_digest = asyncio.run(push())
    signed = f"{registry.host}/ml/fraud-server@{signed_digest}"
    cosign.sign(signed, key)
    try:
        yield Images(
            registry.host,
            signed,
            f"{registry.host}/ml/fraud-server:v7",
            f"{registry.host}/ml/fraud-server:unsigned",
            public_key,
        )
    finally:
        registry.stop()


@contextlib.contextmanager
def running_webhook(
    cluster: Cluster,
    kubectl: Kubectl,
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
    *extra: str,
) -> Iterator[WebhookProcess]:
    """The server running with extra arguments and registered; unregistered and stopped after."""
    host = cluster.callback_host
    if host is None:
        # Registering a URL the API server cannot reach would make it fail closed for every
        # governed create; without an address it can call, these tests cannot run.
        pytest.skip(
            "the admission e2e tests run the webhook as a process on this machine and register "
            "its URL; this cluster's API server has no address of this machine to call "
            "(set MODELSHIELD_E2E_CALLBACK_HOST; e2e/kind.sh sets kind's network gateway)"
        )
    directory = tmp_path_factory.mktemp("webhook")
    authority = pki.Authority.create("modelshield-e2e-webhook-ca")
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(authority.pem)
    cert_file, key_file = pki.write_serving_pair(
        authority, directory, "modelshield-webhook", (host,)
    )
    port = localtools.free_port()
    modelshield = [sys.executable, "-m", "modelshield.cli.main", "webhook"]
    process = WebhookProcess(
        [
            *modelshield,
            f"--cert={cert_file}",
            f"--key={key_file}",
            f"--host={host}",
            f"--port={port}",
            f"--kubeconfig={cluster.kubeconfig_path}",
            f"--insecure-registry={images.registry}",
            "--log-level=debug",
            "--shutdown-delay=0.5",
            *extra,
        ],
        directory / "webhook.log",
        host,
        port,
        ca_file,
    )
    try:
        process.start()
    except BaseException:
        process.stop()
        raise
    configuration = subprocess.run(
        [
            *modelshield,
            "configuration",
            f"--url=https://{host}:{port}",
            f"--ca-bundle={ca_file}",
            f"--name={CONFIGURATION_NAME}",
            f"--namespace={OWN_NAMESPACE}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kubectl("apply", "-f", "-", input_text=configuration)
    try:
        yield process
    finally:
        kubectl(
            "delete",
            "--ignore-not-found",
            f"mutatingwebhookconfiguration/{CONFIGURATION_NAME}",
            f"validatingwebhookconfiguration/{CONFIGURATION_NAME}",
        )
        process.stop()


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """The server running and registered; unregistered and stopped afterwards."""
    with running_webhook(cluster, kubectl, images, tmp_path_factory) as process:
        yield process
