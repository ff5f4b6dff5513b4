"""Helpers of the model-keys e2e checks: the ConfigMap as the API server holds it, and the
startup init container's command run for real against its keys.

``publishing_model_keys`` runs only the model-keys handlers in a kopf thread of the test
process (for tests that write ModelArtifact status by hand, where the artifact reconciler
would overwrite it); the full operator registers them with the artifact reconciler.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import kopf
from kubernetes import client

from e2e import operators
from e2e.clients import REPOSITORY_ROOT, Cluster
from modelshield.controllers import caches, writing
from modelshield.controllers import modelkeypublishing as modelkeys_handlers
from modelshield.engine import startup

NAME = startup.KEYS_CONFIG_MAP


def config_map(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    """The namespace's modelshield-model-keys ConfigMap as plain JSON, or None."""
    try:
        found = client.CoreV1Api(cluster.api_client).read_namespaced_config_map(NAME, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    document: dict[str, Any] = cluster.api_client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    return document


def data(cluster: Cluster, namespace: str) -> dict[str, str] | None:
    """The ConfigMap's data ({} when it has none), or None when there is no ConfigMap."""
    found = config_map(cluster, namespace)
    return None if found is None else dict(found.get("data") or {})


def run_startup_check(
    keys: dict[str, str],
    workdir: pathlib.Path,
    *,
    model: pathlib.Path,
    digest: str,
    artifact: str,
    signer: str,
) -> subprocess.CompletedProcess[str]:
    """Run the init container's own command, with the ConfigMap projected as the kubelet would.

    The command is the one ``startup.build_init_container`` makes; only the mount point of
    the keys is moved to a local directory (there is no kubelet here).
    """
    mount = workdir / "model-keys"
    mount.mkdir(parents=True, exist_ok=True)
    for stale in mount.iterdir():
        stale.unlink()
    for file_name, value in keys.items():
        (mount / file_name).write_text(value)
    container = startup.build_init_container(
        image="modelshield:e2e",
        model_volume="model",
        model_mount_path=str(model),
        digest=digest,
        artifact=artifact,
        signer=signer,
        keys_volume=NAME,
    )
    command = [
        str(mount) + argument.removeprefix(startup.KEYS_MOUNT)
        if argument.startswith(startup.KEYS_MOUNT + "/")
        else argument
        for argument in container["command"]
    ]
    assert command[0] == "modelshield"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPOSITORY_ROOT / part) for part in ("operator", ".")),
    }
    return subprocess.run(
        [sys.executable, "-m", "modelshield.cli.main", *command[1:]],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


@contextlib.contextmanager
def publishing_model_keys(cluster: Cluster, resync_seconds: float = 2.0) -> Iterator[None]:
    """The model-keys handlers alone, in a kopf thread, for the duration of the block."""
    registry = kopf.OperatorRegistry()
    kube = writing.Kube(cluster.api_client, max_workers=2)
    world = caches.World()
    operators.feed_world(registry, world, kube)
    modelkeys_handlers.register(
        registry, world=world, kube_source=lambda: kube, resync_seconds=resync_seconds
    )
    try:
        with operators.kopf_in_thread(registry, cluster.api_client, "kopf-model-keys"):
            yield
    finally:
        kube.close()
