"""Shared pieces of the operator e2e tests: the operator process, its RBAC, manifests, waits.

``modelshield operator`` runs as a local subprocess, logged in as a ServiceAccount bound to
exactly the rules of ``modelshield rbac`` (so a missing rule fails the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kopf
import yaml
from kubernetes import client

from e2e import clients
from e2e.clients import REPOSITORY_ROOT, Kubectl
from modelshield.cli import operator as operator_cli
from modelshield.controllers import artifactchecks, caches, writing
from modelshield.controllers import artifacts as artifact_handlers
from modelshield.controllers import settings as operator_settings
from modelshield.modelartifacts import transfers
from tests.support.authproxy import AuthProxy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WAIT_SECONDS = 60.0
OPERATOR_NAMESPACE = "modelshield-e2e-operator"
WEBHOOK_CONFIGURATION = "modelshield-e2e-" + uuid.uuid4().hex[:8]
GROUP, VERSION = "modelshield.dev", "v1alpha1"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll until probe returns something truthy; fail naming what never happened."""
    return clients.wait_for(what, probe, timeout)


class OperatorProcess:
    """``modelshield operator`` as a child process, with its log kept for failures."""

    def __init__(self, kubeconfig: Path, log: Path, *extra: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "modelshield.cli.main",
            "operator",
            f"--kubeconfig={kubeconfig}",
            "--standalone",
            "--metrics-port=0",
            "--workers=4",
            f"--webhook-configuration={WEBHOOK_CONFIGURATION}",
            "--image=modelshield:e2e",
            *extra,
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                str(REPOSITORY_ROOT / part) for part in ("operator", "webhooks", ".")
            ),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=REPOSITORY_ROOT,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# --- objects -----------------------------------------------------------------------


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelSecurityPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


NETWORK = {
    "ingress": [
        {
            "peers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
            ],
            "ports": [{"port": 8080}],
        }
    ],
    "egress": [{"peers": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 443}]}],
}
DRIFT = {
    "drift": {"referenceProfile": {"name": "reference", "key": "profile.json"}, "threshold": 0.25}
}
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


def deployment(name: str, labels: dict[str, str], *, hardened: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": "registry.example/model:1"}
    if hardened:
        container["securityContext"] = HARDENED
        container["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **labels}},
                "spec": {"containers": [container]},
            },
        },
    }


def inference_service(
    name: str, labels: dict[str, str], logger: str | None = None
) -> dict[str, Any]:
    predictor: dict[str, Any] = {"sklearn": {"storageUri": "s3://models/iris/"}}
    if logger:
        predictor["logger"] = {"mode": "all", "url": logger}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels},
        "spec": {"predictor": predictor},
    }


def apply(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump_all(documents))


def get_json(kubectl: Kubectl, namespace: str, *what: str) -> dict[str, Any]:
    found = kubectl("-n", namespace, "get", *what, "-o", "json", check=False)
    document: dict[str, Any] = yaml.safe_load(found.stdout) if found.returncode == 0 else {}
    return document


def owned(kubectl: Kubectl, namespace: str, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        kubectl, namespace, kind, "-l", "app.kubernetes.io/managed-by=modelshield"
    ).get("items", [])
    return items


def owned_names(kubectl: Kubectl, namespace: str, kind: str) -> set[str]:
    return {item["metadata"]["name"] for item in owned(kubectl, namespace, kind)}


def policy_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        get_json(kubectl, namespace, "modelsecuritypolicy", name).get("status") or {}
    )
    return status


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


CHILDREN = {
    "networkpolicy": {"ms-netpol-deploy-fraud", "ms-netpol-isvc-iris"},
    "deployment": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "service": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "configmap": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "serviceaccount": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "role": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
    "rolebinding": {"ms-drift-deploy-fraud", "ms-drift-isvc-iris"},
}


def wait_children(
    kubectl: Kubectl, namespace: str, expected: dict[str, set[str]], operator: OperatorProcess
) -> None:
    for kind, names in expected.items():
        wait_for(
            f"{kind} {sorted(names)} in {namespace}; operator log:\n{operator.tail()}",
            lambda kind=kind, names=names: owned_names(kubectl, namespace, kind) == names,  # type: ignore[misc]
        )


@contextlib.contextmanager
def basic_auth_registry(upstream: str) -> Iterator[str]:
    """host:port of ``AuthProxy`` (Basic credentials demanded) in front of the test registry,
    on an event loop of its own so that these synchronous tests can use it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = asyncio.run_coroutine_threadsafe(AuthProxy(upstream, "basic").start(), loop).result(30)
    try:
        yield proxy.host
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def kopf_in_thread(
    registry: kopf.OperatorRegistry, api_client: client.ApiClient, name: str
) -> Iterator[None]:
    """Run the handlers of ``registry`` in a kopf operator on a thread for the block,
    logged in as ``api_client`` is (the in-process counterpart of ``modelshield operator``)."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return operator_cli.connection_info(api_client.configuration)

    settings = kopf.OperatorSettings()
    operator_settings.configure(settings, standalone=True)
    stop = threading.Event()
    ready = threading.Event()

    def run() -> None:
        asyncio.run(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=True,
                stop_flag=stop,
                ready_flag=ready,
            )
        )

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert ready.wait(30), "kopf did not start"
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


POLICY_KINDS_AND_NAMESPACES = (
    ("modelshield.dev", "v1alpha1", "modelsecuritypolicies"),
    ("modelshield.dev", "v1alpha1", "clustermodelsecuritypolicies"),
    ("", "v1", "namespaces"),
)


def feed_world(registry: kopf.OperatorRegistry, world: caches.World, kube: writing.Kube) -> None:
    """Keep a World's policies and namespace labels current, as the policy reconciler does.

    For the ModelArtifact handlers run without the policy reconciler: primed by one list
    of each kind at startup (before kopf watches anything), then fed by watch events.
    Register it before the handlers that read the World: kopf runs a resource's event
    handlers in registration order.
    """

    def record(body: dict[str, Any], deleted: bool) -> None:
        if body.get("kind") == "Namespace":
            name = str((body.get("metadata") or {}).get("name", ""))
            world.remove_namespace(name) if deleted else world.put_namespace(body)
        elif deleted:
            world.remove_policy(body)
        else:
            world.put_policy(body)

    @kopf.on.startup(registry=registry)
    async def prime_world(**_: Any) -> None:
        for group, version, plural in POLICY_KINDS_AND_NAMESPACES:
            path = f"/apis/{group}/{version}/{plural}" if group else f"/api/{version}/{plural}"
            for body in await kube.list_all(path):
                record(body, deleted=False)

    for group, version, plural in POLICY_KINDS_AND_NAMESPACES:

        @kopf.on.event(group, version, plural, id=f"world-{plural}", registry=registry)
        async def world_event(event: Mapping[str, Any], **_: Any) -> None:
            body = event.get("object")
            if isinstance(body, dict):
                record(body, deleted=event.get("type") == "DELETED")


@contextlib.contextmanager
def artifact_reconciler_in_thread(
    api_client: client.ApiClient, *, file_root: Path, work_dir: Path
) -> Iterator[artifact_handlers.Reconciler]:
    """The ModelArtifact handlers alone in a kopf thread: ``file://`` models only under
    ``file_root``, two workers, a 2 s recheck timer (the tests' pace, not production's)."""
    registry = kopf.OperatorRegistry()
    settings = artifactchecks.Settings(
        fetch=transfers.Settings(file_roots=(file_root,)),
        work_dir=work_dir,
        max_concurrent=2,
        timer_seconds=2.0,
    )
    kube = writing.Kube(api_client, max_workers=2)
    world = caches.World()
    feed_world(registry, world, kube)
    reconciler = artifact_handlers.register(registry, world=world, settings=settings, kube=kube)
    try:
        with kopf_in_thread(registry, api_client, "kopf"):
            yield reconciler
    finally:
        reconciler.shutdown()
        kube.close()
