"""What a review handler needs: the cached state, the verifier, metrics and the time budget."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from modelshield.modelartifacts import startup
from modelshield_webhooks import caches, facts, metrics, verifiers

#: Default ``timeoutSeconds`` of the webhook configurations.
WEBHOOK_TIMEOUT_SECONDS = 10
#: A cold image verification must finish this long before the API server gives up, so
#: that the answer (a precise "timed out" denial) still reaches it.
VERIFY_MARGIN_SECONDS = 3.0
#: Name of the init container that re-verifies the model files at pod start.
STARTUP_CONTAINER_NAME = startup.CONTAINER_NAME


def utc_now() -> datetime.datetime:
    """The wall clock, timezone-aware (attestation ages are compared with it)."""
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass
class AdmissionContext:
    """Everything the handlers read; one per server process."""

    state: caches.ClusterState
    verifier: verifiers.ImageVerifier
    metrics: metrics.Metrics = dataclasses.field(default_factory=metrics.Metrics)
    #: Deadline of a cold verification on the request path, well inside the timeout.
    verify_deadline_seconds: float = WEBHOOK_TIMEOUT_SECONDS - VERIFY_MARGIN_SECONDS
    #: How long to wait for a namespace created a moment ago to reach the cache.
    namespace_wait_seconds: float = 1.0
    #: The modelshield image the startup init container runs; the validating webhook
    #: exempts exactly this image in exactly that container from image requirements.
    startup_image: str = "ghcr.io/modelshield/modelshield:latest"
    clock: Callable[[], datetime.datetime] = utc_now
    #: Which Secrets cold verifications may read (``secretRef`` signer keys, pull
    #: secrets); none unless ``--read-signer-secrets`` / ``--read-pull-secrets``.
    secrets: facts.SecretAccess = facts.NO_SECRETS
    #: Set on SIGTERM: /readyz fails so that the Service stops sending reviews here,
    #: while the server keeps answering those already on their way.
    draining: bool = False
