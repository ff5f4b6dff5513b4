"""Fixtures for the tests only pods can show: a control plane of their own with a real node
(e2e/node.py), a registry the node pulls from, and modelshield's image pushed to it.

Asked for with MODELSHIELD_E2E_NODE=1, which `make test` and `make e2e-node` set (after
building the node's tools and the image). Skipped, with the reason, when not asked for, when
not root, or when the suite runs against a given cluster (--kubeconfig): these tests start
their own node. Asked for as root without the node's tools, they fail and say what to build.
A session whose node is up holds the machine's node lock (e2e/nodelock.py): a second one
waits for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e import node, nodeconfig
from e2e.clients import Kubectl
from e2e.cluster import LocalControlPlane
from e2e.pods import forwarding, modelstore
from e2e.pods.harness import (
    HELM_INSTALL_TIMEOUT,
    IMAGES_DIR,
    LOCAL_IMAGE,
    RELEASE,
    RELEASE_NAMESPACE,
    NodeCluster,
    Release,
    helm,
    push,
)
from e2e.toolcache import ControlPlaneBinaries, MissingToolsError
from tests.support import artifactservers as servers
from tests.support import chartrendering as rendering
from tests.support.localtools import LocalRegistry, require_tool

PODS_DIR = Path(__file__).resolve().parent
# Ignored by git, next to the other e2e logs.
KEPT_LOGS_ROOT = PODS_DIR.parent / ".logs"
# Starting a node takes root and changes the host (links, iptables, cgroups): asked for only,
# which `make test` does.
OPT_IN = "MODELSHIELD_E2E_NODE"


def _skip_reason(config: pytest.Config) -> str | None:
    if os.environ.get(OPT_IN) != "1":
        return (
            f"not asked for ({OPT_IN}={os.environ.get(OPT_IN, '')!r}): `make test` and "
            "`make e2e-node` build the node's tools and the image and run them, as root"
        )
    if config.getoption("--kubeconfig", None):
        return "node tests start a local node of their own; not run against --kubeconfig"
    if os.geteuid() != 0:
        return "the local node needs root (links, iptables, cgroups and mounts)"
    return None


#: Marks the tests that uninstall the session's release: they run last.
ENDS_RELEASE = "ends_release"


#: How long the node's control plane and the node took to come up, for the summary.
NODE_STARTUP_KEY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    startup = terminalreporter.config.stash.get(NODE_STARTUP_KEY, None)
    if startup is not None:
        terminalreporter.write_sep("-", "local node")
        terminalreporter.write_line(startup)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{ENDS_RELEASE}: uninstalls the node tests' chart release (runs last)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(PODS_DIR)]
    if not ours:
        return
    # Stable sort: the node tests after every other test of the session (their node holds
    # memory and CPU while it is up), and the release's uninstall last of all.
    items.sort(
        key=lambda item: (
            item.path.is_relative_to(PODS_DIR),
            item.get_closest_marker(ENDS_RELEASE) is not None,
        )
    )
    reason = _skip_reason(config)
    if reason is None:
        return
    for item in ours:
        item.add_marker(pytest.mark.skip(reason=f"no local node: {reason}"))


@pytest.fixture(scope="session")
def node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster]:
    try:
        # Asked for as root: missing tools are a failure, not a reason to skip.
        binaries = ControlPlaneBinaries.locate()
        node_binaries = node.NodeBinaries.locate()
    except MissingToolsError as missing:
        pytest.fail(f"{missing} (`make node-tools` builds them)", pytrace=False)
    control_plane = LocalControlPlane(
        binaries, api_server_extra_args=node.api_server_args_for_a_node()
    )
    registry = LocalRegistry(
        require_tool("MODELSHIELD_REGISTRY"), tmp_path_factory.mktemp("node-registry")
    ).start()
    local_node = node.LocalNode(node_binaries, control_plane, registry.host)
    try:
        started = time.monotonic()
        control_plane.start()
        local_node.start()
        request.config.stash[NODE_STARTUP_KEY] = (
            f"control plane up and node Ready in {time.monotonic() - started:.1f} s "
            f"(the node alone: {local_node.ready_seconds:.1f} s)"
        )
        kubectl = Kubectl(
            control_plane.binaries.kubectl,
            control_plane.kubeconfig_path,
            tmp_path_factory.mktemp("node-kubectl-cache"),
        )
        yield NodeCluster(control_plane, local_node, registry.host, kubectl)
    finally:
        local_node.stop()
        control_plane.stop()
        registry.stop()
        if request.session.testsfailed or sys.exc_info()[0] is not None:
            kept = KEPT_LOGS_ROOT / control_plane.work_dir.name
            shutil.copytree(control_plane.logs_dir, kept, dirs_exist_ok=True)
            print(f"\nlogs of the local node and its control plane kept in {kept}")
        control_plane.remove_work_dir()


@pytest.fixture(scope="session")
def pod_registry(node_cluster: NodeCluster) -> Iterator[str]:
    """The node's registry by an address pods reach too (host:port at the node's address):
    images named so are pulled by the node and verified by the webhook and operator pods."""
    with forwarding.forwarded(str(nodeconfig.NODE_IP), node_cluster.registry_host) as address:
        yield address


@pytest.fixture(scope="session")
def model_store(
    node_cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[modelstore.ModelStore]:
    """moto's S3 server on the node's address, with the models bucket."""
    with servers.moto_server(tmp_path_factory.mktemp("model-store"), modelstore.HOST) as server:
        store = modelstore.ModelStore(server)
        servers.s3_put(server, modelstore.BUCKET)
        yield store


@pytest.fixture
def pod_namespace(node_cluster: NodeCluster) -> Iterator[str]:
    name = "e2e-pods-" + uuid.uuid4().hex[:8]
    node_cluster.kubectl("create", "namespace", name)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def modelshield_image(node_cluster: NodeCluster) -> str:
    """modelshield's image, built from this tree (`make image`, cached layers make a rebuild
    quick) and pushed to the node's registry; its reference there."""
    build = subprocess.run(
        [str(IMAGES_DIR / "build-image.sh"), LOCAL_IMAGE],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if build.returncode != 0:
        pytest.fail(f"make image failed:\n{build.stderr[-4000:]}", pytrace=False)
    return push(node_cluster, LOCAL_IMAGE)


@pytest.fixture(scope="session")
def installed_chart(
    node_cluster: NodeCluster,
    modelshield_image: str,
    model_store: modelstore.ModelStore,
    pod_registry: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """The chart installed with `helm install --wait`: its pods run the image built from
    this tree, pulled by the node from the local registry; the operator fetches models from
    the model store (its keys in a Secret of the release namespace); the webhook and the
    operator speak plain HTTP to the registry at the address pods reach it by."""
    repository, _, tag = modelshield_image.rpartition(":")
    home = tmp_path_factory.mktemp("helm")
    node_cluster.kubectl("create", "namespace", RELEASE_NAMESPACE)
    node_cluster.kubectl(
        "-n",
        RELEASE_NAMESPACE,
        "apply",
        "-f",
        "-",
        input_text=yaml.safe_dump(model_store.credentials_secret()),
    )
    values = home / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": repository, "tag": tag},
                "webhook": {"insecureRegistries": [pod_registry]},
                "operator": {"extraEnv": model_store.environment()},
                # The operator refuses an AWS_ENDPOINT_URL without the flag both share.
                "modelStore": {"s3Endpoint": model_store.server.endpoint},
            }
        )
    )
    release = Release(RELEASE, RELEASE_NAMESPACE, modelshield_image, home, values)
    helm(
        node_cluster,
        home,
        "install",
        RELEASE,
        str(rendering.CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--values",
        str(values),
        "--wait",
        "--timeout",
        HELM_INSTALL_TIMEOUT,
    )
    yield release
    # Tests marked ENDS_RELEASE uninstall it themselves.
    helm(
        node_cluster,
        home,
        "uninstall",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--ignore-not-found",
    )
