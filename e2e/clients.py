"""What an e2e test holds to talk to the cluster: the types behind the
`cluster` and `kubectl` fixtures (defined here, not in conftest.py, so tests
can import them for annotations)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
KUBECTL_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Cluster:
    """A cluster the tests can talk to, however it was made."""

    kubeconfig_path: Path
    api_client: client.ApiClient
    kubectl_path: Path
    # True when this session started the control plane from the cached
    # binaries: no nodes, and the server version is known exactly.
    started_locally: bool
    # An address of this machine that the cluster's API server can call (webhooks the
    # tests run as processes here are registered with it): 127.0.0.1 for the local
    # control plane; for a given cluster what MODELSHIELD_E2E_CALLBACK_HOST says (kind's
    # docker network gateway, set by e2e/kind.sh), or None where nothing says.
    callback_host: str | None = None

    def api_server(self, directory: Path) -> tuple[str, Path]:
        """The API server's URL and a file holding the CA that signed its certificate, for
        programs the tests start with a URL and a CA file (as in-cluster pods get them).
        kind's kubeconfig embeds the CA (`certificate-authority-data`); the local control
        plane's names a file."""
        settings = _current_cluster_entry(self.kubeconfig_path)["cluster"]
        directory.mkdir(parents=True, exist_ok=True)
        ca_file = directory / "api-server-ca.crt"
        if "certificate-authority-data" in settings:
            ca_file.write_bytes(base64.b64decode(settings["certificate-authority-data"]))
        else:
            shutil.copy(settings["certificate-authority"], ca_file)
        return str(settings["server"]), ca_file


def _current_cluster_entry(kubeconfig_path: Path) -> dict[str, Any]:
    kubeconfig = yaml.safe_load(kubeconfig_path.read_text())
    current = kubeconfig["current-context"]
    context = next(c for c in kubeconfig["contexts"] if c["name"] == current)["context"]
    entry: dict[str, Any] = next(
        c for c in kubeconfig["clusters"] if c["name"] == context["cluster"]
    )
    return entry


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path, user: str = "token") -> Path:
    """A kubeconfig for the admin kubeconfig's cluster whose only credential is this bearer
    token. (A `--token` flag does not change who kubectl is where the kubeconfig also holds
    a client certificate, as kind's does: the API server takes the certificate first.)"""
    entry = _current_cluster_entry(admin_kubeconfig)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": entry["name"], "user": user}}],
                "current-context": user,
            }
        )
    )
    path.chmod(0o600)
    return path


def new_api_client(kubeconfig_path: Path) -> client.ApiClient:
    # The kubernetes package leaves this loader unannotated.
    api_client: client.ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig_path)
    )
    return api_client


def close_api_client(api_client: client.ApiClient) -> None:
    api_client.close()  # type: ignore[no-untyped-call]  # unannotated upstream


class Kubectl:
    """Runs kubectl against the test cluster and returns the finished process.

    By default a non-zero exit fails the test with kubectl's own output; pass
    check=False to look at a failure yourself.
    """

    def __init__(self, kubectl_path: Path, kubeconfig_path: Path, cache_dir: Path) -> None:
        self.kubectl_path = kubectl_path
        self.kubeconfig_path = kubeconfig_path
        # A discovery cache of our own: never read or write the user's ~/.kube.
        self.cache_dir = cache_dir

    def __call__(
        self, *arguments: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(self.kubectl_path),
            f"--kubeconfig={self.kubeconfig_path}",
            f"--cache-dir={self.cache_dir}",
            *arguments,
        ]
        completed = subprocess.run(
            command,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_SECONDS,
            check=False,
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"`kubectl {' '.join(arguments)}` exited with {completed.returncode}:\n"
                f"{completed.stderr}{completed.stdout}"
            )
        return completed


T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll until probe returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s: {what}")
        time.sleep(interval)
