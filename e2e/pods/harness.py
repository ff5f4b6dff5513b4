"""What the node tests share: the node's cluster, the chart's release, helm against it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import node
from e2e.clients import REPOSITORY_ROOT, Kubectl
from e2e.cluster import LocalControlPlane
from tests.support import chartrendering as rendering


@dataclass(frozen=True)
class NodeCluster:
    control_plane: LocalControlPlane
    node: node.LocalNode
    registry_host: str
    kubectl: Kubectl


IMAGES_DIR = REPOSITORY_ROOT / "images"
#: The image `make image` builds from this tree.
LOCAL_IMAGE = "modelshield:dev"
RELEASE = "modelshield"
RELEASE_NAMESPACE = "modelshield-system"
HELM_INSTALL_TIMEOUT = "300s"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    image: str
    #: helm's own directories for this release, and the values it was installed with.
    helm_home: Path
    values: Path


def helm(node_cluster: NodeCluster, home: Path, *arguments: str) -> str:
    """helm against the node's cluster, with its own cache and config directories; fails
    the test when it fails."""
    completed = helm_run(node_cluster, home, *arguments)
    if completed.returncode != 0:
        pytest.fail(
            f"`helm {' '.join(arguments)}` exited with {completed.returncode}:\n"
            f"{completed.stderr}{completed.stdout}",
            pytrace=False,
        )
    return completed.stdout


def helm_run(
    node_cluster: NodeCluster, home: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """helm against the node's cluster, however it ends."""
    return subprocess.run(
        [str(rendering.helm_path()), f"--kubeconfig={node_cluster.control_plane.kubeconfig_path}",
         *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={
            **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        },
    )  # fmt: skip


def docker_client() -> str:
    """The docker client images/docker-engine.sh picks (it starts dockerd if needed)."""
    completed = subprocess.run(
        [str(IMAGES_DIR / "docker-engine.sh")], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        pytest.fail(f"no Docker engine: {completed.stderr}", pytrace=False)
    return completed.stdout.strip().splitlines()[-1]


def push(node_cluster: NodeCluster, local_tag: str) -> str:
    """The local image pushed to the node's registry; its reference there."""
    docker = docker_client()
    reference = f"{node_cluster.registry_host}/{local_tag}"
    for command in (["tag", local_tag, reference], ["push", reference]):
        completed = subprocess.run(
            [docker, *command], capture_output=True, text=True, check=False, timeout=600
        )
        if completed.returncode != 0:
            pytest.fail(f"docker {' '.join(command)}: {completed.stderr}", pytrace=False)
    # The tag names this run's registry port: dropped, or every run leaves one (and keeps an
    # outdated image alive).
    subprocess.run([docker, "rmi", reference], capture_output=True, check=False, timeout=120)
    return reference
