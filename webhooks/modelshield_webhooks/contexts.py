"""What a review handler needs: the cached state, the verifier, metrics and the time budget.

The time budget (``request_budget``) is pure: every wait on a review's path, from the
webhook's ``timeoutSeconds``, with a margin left for the answer.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable

from modelshield.engine import s3endpoints, startup
from modelshield.supplychain.images import gathering, verifiers
from modelshield_webhooks import caches, metrics, reviewfacts

#: Default ``timeoutSeconds`` of the webhook configurations.
WEBHOOK_TIMEOUT_SECONDS = 10
#: The ``timeoutSeconds`` the API server accepts.
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 30
#: Part of the timeout no wait may use, so that the answer (a precise "timed out" denial
#: rather than the API server's own timeout) still reaches the API server: TLS, JSON, the
#: network and a busy event loop. At least MIN_MARGIN_SECONDS.
MARGIN_SHARE = 0.3
MIN_MARGIN_SECONDS = 0.5
#: How long to wait for a namespace created a moment ago to reach the cache: a tenth of
#: the timeout, at most NAMESPACE_WAIT_SECONDS.
NAMESPACE_WAIT_SHARE = 0.1
NAMESPACE_WAIT_SECONDS = 1.0
#: Name of the init container that re-verifies the model files at pod start.
STARTUP_CONTAINER_NAME = startup.CONTAINER_NAME


class BudgetError(ValueError):
    """A timeout or verification deadline that leaves no room for the answer."""


@dataclasses.dataclass(frozen=True)
class RequestBudget:
    """How one review call spends the webhook's ``timeoutSeconds``, wait by wait.

    A review waits at most for the namespace cache, then for the image verifications
    (Secret reads included) until the verification deadline, then for a verifier that
    ignores that deadline until the hard stop. What is left is the margin.
    """

    timeout_seconds: float
    namespace_wait_seconds: float
    verify_deadline_seconds: float
    hard_stop_seconds: float

    @property
    def longest_wait_seconds(self) -> float:
        """The longest a handler waits before it answers."""
        return self.namespace_wait_seconds + self.verify_deadline_seconds + self.hard_stop_seconds

    @property
    def margin_seconds(self) -> float:
        """What is left of the timeout for the answer to travel back."""
        return self.timeout_seconds - self.longest_wait_seconds


def _floor(seconds: float) -> float:
    """Down to the hundredth (readable in messages, never above the exact value)."""
    return math.floor(seconds * 100 + 1e-9) / 100


def required_margin_seconds(timeout_seconds: float) -> float:
    """The least margin a timeout must keep for the answer."""
    return max(MIN_MARGIN_SECONDS, MARGIN_SHARE * timeout_seconds)


def _longest_deadline(seconds: float) -> float:
    """The longest verification deadline whose hard stop still ends within seconds."""
    grace = reviewfacts.HARD_STOP_GRACE_SECONDS
    if seconds >= grace / reviewfacts.HARD_STOP_SHARE + grace:
        return _floor(seconds - grace)
    return _floor(seconds / (1 + reviewfacts.HARD_STOP_SHARE))


def request_budget(
    timeout_seconds: float, verify_deadline_seconds: float | None = None
) -> RequestBudget:
    """The budget of a webhook whose configurations say ``timeoutSeconds: timeout_seconds``.

    Without ``verify_deadline_seconds`` the verification gets all the timeout leaves after
    the margin, the namespace wait and the hard stop; a given one must fit there.
    Raises BudgetError with what would fit.
    """
    if not MIN_TIMEOUT_SECONDS <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise BudgetError(
            f"a webhook timeout of {timeout_seconds:g}s is outside the "
            f"{MIN_TIMEOUT_SECONDS}-{MAX_TIMEOUT_SECONDS}s the API server accepts"
        )
    margin = required_margin_seconds(timeout_seconds)
    namespace_wait = _floor(min(NAMESPACE_WAIT_SECONDS, NAMESPACE_WAIT_SHARE * timeout_seconds))
    longest = _longest_deadline(timeout_seconds - margin - namespace_wait)
    deadline = longest if verify_deadline_seconds is None else verify_deadline_seconds
    if not 0 < deadline <= longest:
        raise BudgetError(
            f"a verification deadline of {deadline:g}s does not fit a webhook timeout of "
            f"{timeout_seconds:g}s: at most {longest:g}s is left after the namespace wait "
            f"({namespace_wait:g}s), the hard stop ({reviewfacts.hard_stop_seconds(longest):g}s) "
            f"and the {margin:g}s kept for the answer"
        )
    return RequestBudget(
        timeout_seconds=timeout_seconds,
        namespace_wait_seconds=namespace_wait,
        verify_deadline_seconds=deadline,
        hard_stop_seconds=reviewfacts.hard_stop_seconds(deadline),
    )


#: The budget of the default timeout.
DEFAULT_BUDGET = request_budget(WEBHOOK_TIMEOUT_SECONDS)


def utc_now() -> datetime.datetime:
    """The wall clock, timezone-aware (attestation ages are compared with it)."""
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass
class AdmissionContext:
    """Everything the handlers read; one per server process."""

    state: caches.ClusterState
    verifier: verifiers.Verifier
    metrics: metrics.Metrics = dataclasses.field(default_factory=metrics.Metrics)
    #: Deadline of a cold verification on the request path (``RequestBudget``).
    verify_deadline_seconds: float = DEFAULT_BUDGET.verify_deadline_seconds
    #: How long to wait for a namespace created a moment ago to reach the cache.
    namespace_wait_seconds: float = DEFAULT_BUDGET.namespace_wait_seconds
    #: The modelshield image the startup init container runs; the validating webhook
    #: exempts exactly this image in exactly that container from image requirements.
    startup_image: str = startup.DEFAULT_IMAGE
    clock: Callable[[], datetime.datetime] = utc_now
    #: Which Secrets cold verifications may read (``secretRef`` signer keys, pull
    #: secrets); none unless ``--read-signer-secrets`` / ``--read-pull-secrets``.
    secrets: gathering.SecretAccess = gathering.NO_SECRETS
    #: Where the operator fetches ModelArtifacts from (``--s3-endpoint``): the only S3
    #: server a KServe storage initializer may download a verified model from.
    store: s3endpoints.ModelStore = s3endpoints.DEFAULT
    #: Set on SIGTERM: /readyz fails so that the Service stops sending reviews here,
    #: while the server keeps answering those already on their way, each answer closing
    #: its keep-alive connection.
    draining: bool = False
