"""Policy status judges a freshly applied workload's images at once, with the Secrets it may read.

Against a real API server, a real registry and real cosign signatures (behind
``AuthProxy``, a Basic-auth front end, for the pull-secret test). The audit interval
is an hour, so every verdict seen here came from the operator's prompt verification of
new workloads, never from the background audit (no PolicyReport is written either).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from e2e.clients import Kubectl
from e2e.operators import (
    OperatorProcess,
    apply,
    basic_auth_registry,
    conditions,
    deployment,
    get_json,
    policy,
    policy_status,
    wait_for,
)
from e2e.webhooks import Images, images
from tests.support.authproxy import PASSWORD, USER

__all__ = ["images"]  # the module-scoped fixture, shared by name

#: Far beyond the test: a verdict seen here cannot be the audit's.
NO_AUDIT = "--audit-interval=3600"
#: Generous for a shared 2-core machine; a prompt verification takes well under a second.
PROMPT_SECONDS = 30.0


def _workload(name: str, image: str) -> dict[str, Any]:
    body = deployment(name, {"team": "verified"})
    body["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return body


def _signed_images_policy(name: str, registry: str, signer: dict[str, Any]) -> dict[str, Any]:
    return policy(
        name,
        {
            "enforcement": "Audit",
            "selector": {"matchLabels": {"team": "verified"}},
            "images": {"allowedRegistries": [f"{registry}/"], "signers": [signer]},
            "runtime": {},
        },
    )


def _judged(kubectl: Kubectl, namespace: str, name: str, governed: int) -> dict[str, Any] | None:
    """The status once every governed workload is judged (none pending)."""
    status = policy_status(kubectl, namespace, name)
    counted = status.get("governed") == governed and status.get("pending") == 0
    verdict = conditions(status).get("Compliant", {}).get("status") in ("True", "False")
    return status if counted and verdict else None


def _violating(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    """The status once it counts one violating workload."""
    status = policy_status(kubectl, namespace, name)
    return status if status.get("violating") == 1 else None


def test_a_new_workload_is_judged_within_seconds_not_at_the_next_audit(
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator(NO_AUDIT, f"--insecure-registry={images.registry}")
    wait_for("the operator started", lambda: "primed" in operator.log.read_text())
    signer = {"name": "release", "publicKey": images.public_key}
    started = time.monotonic()
    apply(
        kubectl,
        namespace,
        _signed_images_policy("signed-images", images.registry, signer),
        _workload("signed", images.signed),
    )
    status = wait_for(
        f"status counts the signed workload compliant; log:\n{operator.tail()}",
        lambda: _judged(kubectl, namespace, "signed-images", 1),
        timeout=PROMPT_SECONDS,
    )
    took = time.monotonic() - started
    assert (status["compliant"], status["violating"]) == (1, 0), status
    assert conditions(status)["Compliant"]["reason"] == "AllCompliant"

    # A second workload, unsigned: violating, with the reason in the Compliant condition.
    apply(kubectl, namespace, _workload("unsigned", images.unsigned))
    status = wait_for(
        f"status counts the unsigned workload violating; log:\n{operator.tail()}",
        lambda: _judged(kubectl, namespace, "signed-images", 2),
        timeout=PROMPT_SECONDS,
    )
    assert (status["compliant"], status["violating"]) == (1, 1), status
    assert status["violators"] == [f"Deployment/{namespace}/unsigned"]
    compliant = conditions(status)["Compliant"]
    assert (compliant["status"], compliant["reason"]) == ("False", "Violations")
    assert f"Deployment/{namespace}/unsigned: ImageUnsigned" in compliant["message"]
    assert not get_json(kubectl, namespace, "policyreport", "modelshield"), (
        "the audit ran: the test proves nothing"
    )
    print(f"signed workload judged compliant {took:.1f}s after it was applied")


def test_secret_ref_signer_with_and_without_read_signer_secrets(
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    start_operator: Callable[..., OperatorProcess],
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
    signer = {"name": "release", "secretRef": {"name": "cosign-key", "key": "cosign.pub"}}
    apply(
        kubectl,
        namespace,
        _signed_images_policy("signed-by-secret", images.registry, signer),
        _workload("signed", images.signed),
    )
    reading = start_operator(
        NO_AUDIT, f"--insecure-registry={images.registry}", "--read-signer-secrets"
    )
    status = wait_for(
        f"status judged with the Secret's key; log:\n{reading.tail()}",
        lambda: _judged(kubectl, namespace, "signed-by-secret", 1),
        timeout=PROMPT_SECONDS + 15,  # the operator starts within this wait
    )
    assert (status["compliant"], status["violating"]) == (1, 0), status
    # The key is public, but the operator logs no Secret value at all.
    assert images.public_key.splitlines()[1] not in reading.log.read_text()
    reading.stop()

    blind = start_operator(NO_AUDIT, f"--insecure-registry={images.registry}")
    status = wait_for(
        f"status counts the workload violating without the Secret; log:\n{blind.tail()}",
        lambda: _violating(kubectl, namespace, "signed-by-secret"),
        timeout=PROMPT_SECONDS + 15,
    )
    message = conditions(status)["Compliant"]["message"]
    assert f"Deployment/{namespace}/signed: Image" in message, message
    assert f"Secret {namespace}/cosign-key key cosign.pub not found" in message, message


def test_pull_secrets_with_and_without_read_pull_secrets(
    kubectl: Kubectl,
    namespace: str,
    images: Images,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    with basic_auth_registry(images.registry) as private:
        kubectl(
            "create",
            "secret",
            "docker-registry",
            "registry-auth",
            "-n",
            namespace,
            f"--docker-server={private}",
            f"--docker-username={USER}",
            f"--docker-password={PASSWORD}",
        )
        signed = _workload("signed", f"{private}/ml/fraud-server@{images.signed.partition('@')[2]}")
        signed["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "registry-auth"}]
        signer = {"name": "release", "publicKey": images.public_key}
        apply(kubectl, namespace, _signed_images_policy("private-images", private, signer), signed)
        reading = start_operator(NO_AUDIT, f"--insecure-registry={private}", "--read-pull-secrets")
        status = wait_for(
            f"status judged with the pull secret; log:\n{reading.tail()}",
            lambda: _judged(kubectl, namespace, "private-images", 1),
            timeout=PROMPT_SECONDS + 15,
        )
        assert (status["compliant"], status["violating"]) == (1, 0), status
        assert PASSWORD not in reading.log.read_text()
        reading.stop()

        blind = start_operator(NO_AUDIT, f"--insecure-registry={private}")
        status = wait_for(
            f"status counts the workload violating without the pull secret; log:\n{blind.tail()}",
            lambda: _violating(kubectl, namespace, "private-images"),
            timeout=PROMPT_SECONDS + 15,
        )
        message = conditions(status)["Compliant"]["message"]
        assert "HTTP 401" in message, message
