"""Fixtures for the e2e suite: a real Kubernetes API server, kubectl, namespaces.

Without --kubeconfig (or MODELSHIELD_E2E_KUBECONFIG) the suite starts its own
control plane from the binaries e2e/tools/build-tools.sh cached. With one, it
uses that cluster and starts nothing. An ambient KUBECONFIG is deliberately
ignored: a test run must never land on someone's real cluster by accident.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import operators
from e2e.clients import (
    REPOSITORY_ROOT,
    Cluster,
    Kubectl,
    close_api_client,
    new_api_client,
    token_kubeconfig,
)
from e2e.cluster import LocalControlPlane
from e2e.toolcache import BUILD_SCRIPT, ControlPlaneBinaries, MissingToolsError, tool_path
from modelshield.controllers import rbac

E2E_DIR = Path(__file__).resolve().parent
CRDS_DIR = REPOSITORY_ROOT / "crds"
KUBECONFIG_ENV = "MODELSHIELD_E2E_KUBECONFIG"
# With a given cluster: the address of this machine its API server can call back.
CALLBACK_HOST_ENV = "MODELSHIELD_E2E_CALLBACK_HOST"
# Where the logs of a control plane that saw a failing test are kept
# (ignored by git).
KEPT_LOGS_ROOT = E2E_DIR / ".logs"
KEPT_LOGS_KEY = pytest.StashKey[Path]()
LOCAL_LOGS_KEY = pytest.StashKey[Path]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        action="store",
        default=None,
        help=(
            "run the e2e tests against the cluster of this kubeconfig instead of starting "
            f"a local control plane (also read from ${KUBECONFIG_ENV})"
        ),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, not only ours.
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    logs_dir = item.config.stash.get(LOCAL_LOGS_KEY, None)
    if report.failed and logs_dir is not None:
        report.sections.append(("e2e control plane", f"logs: {logs_dir}"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    kept = terminalreporter.config.stash.get(KEPT_LOGS_KEY, None)
    if kept is not None:
        terminalreporter.write_sep("-", "e2e control plane")
        terminalreporter.write_line(f"logs of the local control plane kept in {kept}")


def _given_kubeconfig(pytest_config: pytest.Config) -> Path | None:
    given = pytest_config.getoption("--kubeconfig") or os.environ.get(KUBECONFIG_ENV)
    if not given:
        return None
    path = Path(given).expanduser().resolve()
    if not path.is_file():
        pytest.fail(f"kubeconfig {path} does not exist", pytrace=False)
    return path


def _kubectl_for_existing_cluster() -> Path:
    """The cached kubectl if it was built, else the one on PATH (a kind user has one)."""
    cached = tool_path("MODELSHIELD_KUBECTL")
    if cached is not None:
        return cached
    on_path = shutil.which("kubectl")
    if on_path is None:
        pytest.fail(f"no kubectl: run {BUILD_SCRIPT} or put kubectl on PATH")
    return Path(on_path)


def _locate_binaries() -> ControlPlaneBinaries:
    try:
        return ControlPlaneBinaries.locate()
    except MissingToolsError as missing:
        message = str(missing)
    # Outside the except block, so the report shows the message alone.
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    given = _given_kubeconfig(request.config)
    if given is not None:
        api_client = new_api_client(given)
        yield Cluster(
            given,
            api_client,
            _kubectl_for_existing_cluster(),
            started_locally=False,
            callback_host=os.environ.get(CALLBACK_HOST_ENV) or None,
        )
        close_api_client(api_client)
        return

    binaries = _locate_binaries()
    control_plane = LocalControlPlane(binaries)
    # Decided up front so that a failing test's report can name it.
    kept_logs_dir = KEPT_LOGS_ROOT / control_plane.work_dir.name
    request.config.stash[LOCAL_LOGS_KEY] = kept_logs_dir
    try:
        control_plane.start()
    except Exception:
        keep_logs(control_plane, kept_logs_dir, request.config)
        raise
    api_client = new_api_client(control_plane.kubeconfig_path)
    try:
        yield Cluster(
            control_plane.kubeconfig_path,
            api_client,
            binaries.kubectl,
            started_locally=True,
            callback_host="127.0.0.1",
        )
    finally:
        close_api_client(api_client)
        control_plane.stop()
        if request.session.testsfailed:
            keep_logs(control_plane, kept_logs_dir, request.config)
        control_plane.remove_work_dir()


def keep_logs(
    control_plane: LocalControlPlane, destination: Path, pytest_config: pytest.Config
) -> None:
    """Copies the component logs next to the suite (the work dir, with etcd's
    data, is removed) and remembers where, for the end-of-run summary."""
    shutil.copytree(control_plane.logs_dir, destination, dirs_exist_ok=True)
    pytest_config.stash[KEPT_LOGS_KEY] = destination


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(
        cluster.kubectl_path, cluster.kubeconfig_path, tmp_path_factory.mktemp("kubectl-cache")
    )


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount (pods are
    refused without it); deleted afterwards without waiting for it to go."""
    core = client.CoreV1Api(cluster.api_client)
    created = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(generate_name="e2e-"))
    )
    assert created.metadata is not None
    assert created.metadata.name
    name = created.metadata.name
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(
        name, field_selector="metadata.name=default"
    ).items:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name} got no default ServiceAccount within 30 s")
        time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def modelshield_crds(kubectl: Kubectl) -> list[dict[str, Any]]:
    """Applies crds/*.yaml with kubectl, waits until every CRD is Established
    and returns their manifests. They are left installed: later tests (and a
    chart already installed on an existing cluster) rely on them."""
    files = sorted(CRDS_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRD manifests in {CRDS_DIR}")
    manifests = [
        document
        for file in files
        for document in yaml.safe_load_all(file.read_text())
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition"
    ]
    if not manifests:
        pytest.fail(f"no CustomResourceDefinition in {CRDS_DIR}/*.yaml")
    # Server-side apply: CRDs with full descriptions outgrow the 256 KiB
    # last-applied annotation that client-side apply would write.
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelshield-e2e",
        *(f"--filename={file}" for file in files),
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"customresourcedefinition/{manifest['metadata']['name']}" for manifest in manifests),
    )
    return manifests


# --- the operator e2e tests (e2e/test_operator*.py) ---------------------------------


@pytest.fixture(scope="module")
def operator_kubeconfig(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """CRDs installed, and a kubeconfig for a ServiceAccount with exactly the operator's RBAC."""
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=modelshield-e2e",
        f"--filename={operators.FIXTURES / 'inferenceservice-crd.yaml'}",
        f"--filename={operators.FIXTURES / 'policyreport-crd.yaml'}",
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/inferenceservices.serving.kserve.io",
        "crd/policyreports.wgpolicyk8s.io",
    )
    kubectl("create", "namespace", operators.OPERATOR_NAMESPACE, check=False)
    kubectl(
        "-n",
        operators.OPERATOR_NAMESPACE,
        "create",
        "serviceaccount",
        "modelshield-operator",
        check=False,
    )
    documents = rbac.manifests(
        namespace=operators.OPERATOR_NAMESPACE,
        webhook_configurations=(operators.WEBHOOK_CONFIGURATION,),
    )
    kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    token = kubectl(
        "-n",
        operators.OPERATOR_NAMESPACE,
        "create",
        "token",
        "modelshield-operator",
        "--duration=2h",
    ).stdout.strip()
    return token_kubeconfig(
        cluster.kubeconfig_path,
        token,
        tmp_path_factory.mktemp("operator") / "operator.kubeconfig",
        "operator",
    )


@pytest.fixture
def start_operator(
    operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[Callable[..., operators.OperatorProcess]]:
    started: list[operators.OperatorProcess] = []

    def start(*extra: str) -> operators.OperatorProcess:
        process = operators.OperatorProcess(
            operator_kubeconfig, tmp_path / f"operator-{len(started)}.log", *extra
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        sys.stderr.write(f"--- {process.log} ---\n{process.tail()}\n")


@pytest.fixture
def governed(kubectl: Kubectl, namespace: str) -> str:
    """A namespace with a policy (network + drift), its reference profile, a governed
    Deployment, an ungoverned one and a governed InferenceService."""
    kubectl("-n", namespace, "create", "configmap", "reference", "--from-literal=profile.json={}")
    operators.apply(
        kubectl,
        namespace,
        operators.policy(
            "isolate",
            {
                "selector": {"matchLabels": {"governed": "yes"}},
                "network": operators.NETWORK,
                "monitoring": operators.DRIFT,
            },
        ),
        operators.deployment("fraud", {"governed": "yes"}),
        operators.deployment("free", {}),
        operators.inference_service("iris", {"governed": "yes"}),
    )
    return namespace
