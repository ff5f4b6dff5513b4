"""The resource webhook: modelshield's own custom resources, validated on the way in.

The rules are ``modelshield.api.v1alpha1.validation``'s (the same ones ``modelshield
test`` and the operator apply); this module only answers AdmissionReviews with them.
"""

from __future__ import annotations

import logging
import time

from modelshield.api.v1alpha1 import validation
from modelshield_webhooks import contexts, responses, reviews

_logger = logging.getLogger(__name__)

ENDPOINT = "validate-resources"


def _answer(request: reviews.Request) -> responses.ReviewResponse:
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return responses.allow(request.uid)
    old = request.old_object
    if (
        request.operation == "UPDATE"
        and old is not None
        and old.get("spec") == request.object.get("spec")
    ):
        # Labels, annotations and finalizers (the operator's bookkeeping) may change on an
        # object that a newer rule would reject; only a spec change is judged again.
        return responses.allow(request.uid)
    found = validation.problems_of(request.object)
    if not found:
        return responses.allow(request.uid)
    where = f"{request.namespace}/" if request.namespace else ""
    lines = "\n".join(f"{path}: {problem}" for path, problem in found)
    return responses.deny(
        request.uid,
        f"{request.kind} {where}{request.name} is not valid:\n{lines}",
        code=422,
        reason="Invalid",
    )


async def review(body: bytes, context: contexts.AdmissionContext) -> responses.ReviewResponse:
    """Answer one AdmissionReview of a modelshield custom resource; never raises."""
    started = time.perf_counter()
    kind = uid = operation = ""
    enforcement = "error"
    try:
        request = reviews.decode(body)
        kind, uid, operation = request.kind, request.uid, request.operation
        response = _answer(request)
        enforcement = "none" if response["response"]["allowed"] else "invalid"
    except reviews.MalformedReviewError as error:
        _logger.warning("malformed AdmissionReview (uid %r): %s", error.uid, error.problem)
        context.metrics.failures.labels("MalformedReview").inc()
        response = responses.malformed(error)
    except Exception:
        _logger.exception("error while validating a custom resource")
        context.metrics.failures.labels("InternalError").inc()
        response = responses.internal_error(uid, "an internal error while validating")
    decision = "allowed" if response["response"]["allowed"] else "denied"
    context.metrics.resource_reviews.labels(
        kind if kind in validation.MODELS else "other", decision
    ).inc()
    context.metrics.review(
        kind, operation, decision, enforcement, time.perf_counter() - started, ENDPOINT
    )
    return response
