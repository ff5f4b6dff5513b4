"""The admission webhook reading Secrets, against a real API server and a real registry.

``--read-signer-secrets``: a policy's ``secretRef`` image signer is resolved from a real
Secret holding the cosign public key. ``--read-pull-secrets``: a pod's
``imagePullSecrets`` authenticate to a registry that demands Basic auth (``AuthProxy``,
the test front end of tests/supplychain, in front of the real registry). Each is
admitted with its flag and denied without it; the webhook is restarted on the same port
between the two, so the verification cache starts empty each time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.clients import Cluster, Kubectl
from e2e.webhooks import (
    DENIED,
    Images,
    WebhookProcess,
    images,
    running_webhook,
    wait_for,
    workload,
)
from tests.support.authproxy import PASSWORD, USER, AuthProxy

__all__ = ["images"]  # the module-scoped fixture, shared by name

POLICY = "signed-by-secret"


class ProxyThread:
    """``AuthProxy`` (Basic auth) on its own event loop, for these synchronous tests."""

    def __init__(self, upstream: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = asyncio.run_coroutine_threadsafe(
            AuthProxy(upstream, "basic").start(), self.loop
        ).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def private_registry(images: Images) -> Iterator[str]:
    """host:port of a front end of the test registry that demands Basic credentials."""
    running = ProxyThread(images.registry)
    try:
        yield running.proxy.host
    finally:
        running.stop()


@pytest.fixture(scope="module")
def secret_webhook(
    cluster: Cluster,
    kubectl: Kubectl,
    modelshield_crds: list[dict[str, Any]],
    images: Images,
    private_registry: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """The webhook, registered; each test restarts it with the flags it needs."""
    with running_webhook(
        cluster, kubectl, images, tmp_path_factory, f"--insecure-registry={private_registry}"
    ) as process:
        yield process


def _apply_policy(
    kubectl: Kubectl, namespace: str, registry: str, signer: dict[str, Any], probe_image: str
) -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "modelshield.dev/v1alpha1",
            "kind": "ModelSecurityPolicy",
            "metadata": {"name": POLICY, "namespace": namespace},
            "spec": {
                "enforcement": "Enforce",
                "selector": {"matchLabels": {"app": "fraud-detector"}},
                "images": {"allowedRegistries": [f"{registry}/"], "signers": [signer]},
                "runtime": {},
            },
        }
    )
    kubectl("apply", "-n", namespace, "-f", "-", input_text=text)
    probe = workload("Pod", "probe", probe_image)

    def judged() -> bool:
        result = kubectl(
            "create", "--dry-run=server", "-n", namespace, "-f", "-", input_text=probe, check=False
        )
        return f"ModelSecurityPolicy {namespace}/{POLICY}" in result.stderr

    wait_for("the webhook to see the new policy", judged)


def _create_pod(kubectl: Kubectl, namespace: str, image: str, pull_secret: str | None) -> Any:
    pod = yaml.safe_load(workload("Pod", "server", image))
    if pull_secret:
        pod["spec"]["imagePullSecrets"] = [{"name": pull_secret}]
    return kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input_text=yaml.safe_dump(pod),
        check=False,
    )


def test_secret_ref_signer_is_resolved_only_with_read_signer_secrets(
    secret_webhook: WebhookProcess, kubectl: Kubectl, namespace: str, images: Images
) -> None:
    kubectl(
        "create",
        "secret",
        "generic",
        "cosign-key",
        "-n",
        namespace,
        f"--from-literal=cosign.pub={images.public_key}",
    )
    secret_webhook.restart("--read-signer-secrets")
    signer = {"name": "release", "secretRef": {"name": "cosign-key", "key": "cosign.pub"}}
    _apply_policy(kubectl, namespace, images.registry, signer, images.unsigned)

    admitted = _create_pod(kubectl, namespace, images.signed, None)
    assert admitted.returncode == 0, admitted.stderr
    unsigned = _create_pod(kubectl, namespace, images.unsigned, None)
    assert unsigned.returncode != 0
    assert "has no signature" in unsigned.stderr

    secret_webhook.restart()
    denied = _create_pod(kubectl, namespace, images.signed, None)
    assert denied.returncode != 0
    assert DENIED in denied.stderr
    assert f"Secret {namespace}/cosign-key key cosign.pub not found" in denied.stderr
    # The key is public, but the webhook logs no Secret value at all.
    assert images.public_key.splitlines()[1] not in secret_webhook.log_path.read_text()


def test_pod_pull_secrets_authenticate_only_with_read_pull_secrets(
    secret_webhook: WebhookProcess,
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    private_registry: str,
) -> None:
    kubectl(
        "create",
        "secret",
        "docker-registry",
        "registry-auth",
        "-n",
        namespace,
        f"--docker-server={private_registry}",
        f"--docker-username={USER}",
        f"--docker-password={PASSWORD}",
    )
    digest = images.signed.partition("@")[2]
    private = f"{private_registry}/ml/fraud-server@{digest}"
    secret_webhook.restart("--read-pull-secrets")
    signer = {"name": "release", "publicKey": images.public_key}
    _apply_policy(kubectl, namespace, private_registry, signer, images.unsigned)

    admitted = _create_pod(kubectl, namespace, private, "registry-auth")
    assert admitted.returncode == 0, admitted.stderr
    without_secret = _create_pod(kubectl, namespace, f"{private_registry}/ml/fraud-server:v7", None)
    assert without_secret.returncode != 0
    assert DENIED in without_secret.stderr

    secret_webhook.restart()
    denied = _create_pod(kubectl, namespace, private, "registry-auth")
    assert denied.returncode != 0
    assert DENIED in denied.stderr
    assert "access denied (HTTP 401)" in denied.stderr
