"""KServe's real controller on the local node: its images built from KServe's Python sources
(images/kserve-image.sh: the storage initializer and the scikit-learn model server of the
same release), pushed to the node's registry, and its manager (e2e/kserve.py) running
against the node's API server, which calls the manager's webhooks at a loopback URL (both
run on this host)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from e2e import kserve
from e2e.pods.harness import IMAGES_DIR, NodeCluster, push

#: Building both images from a cold BuildKit cache downloads ~150 wheels.
BUILD_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class KServeImages:
    """References the node pulls: KServe's storage initializer and its sklearn server."""

    storage_initializer: str
    sklearn_server: str
    #: How long images/kserve-image.sh took (seconds; a few when cached), for the log.
    build_seconds: float


@pytest.fixture(scope="module")
def kserve_images(node_cluster: NodeCluster) -> KServeImages:
    started = time.monotonic()
    build = subprocess.run(
        [str(IMAGES_DIR / "kserve-image.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    if build.returncode != 0:
        pytest.fail(f"images/kserve-image.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    initializer, server = build.stdout.split()[-2:]
    return KServeImages(
        push(node_cluster, initializer), push(node_cluster, server), time.monotonic() - started
    )


@pytest.fixture(scope="module")
def kserve_on_node(
    node_cluster: NodeCluster,
    kserve_images: KServeImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[kserve.KServe]:
    """KServe's manager and webhooks on the node's cluster, its pod mutator injecting the
    storage initializer image built from the same release."""
    release = kserve.KServeRelease.locate()
    if release is None:
        pytest.fail(
            "KServe's controller manager is not built (MODELSHIELD_KSERVE_MANAGER); run "
            "e2e/tools/build-tools.sh",
            pytrace=False,
        )
    with kserve.kserve_on(
        node_cluster.kubectl,
        node_cluster.control_plane.kubeconfig_path,
        release,
        kserve_images.storage_initializer,
        tmp_path_factory.mktemp("kserve-node"),
    ) as running:
        yield running
