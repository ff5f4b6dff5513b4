"""The mutating webhook: pin verified tags to digests, inject the startup re-verification.

It only adds what policies ask for and never denies on a policy violation (the
validating webhook, which runs after it, does that); when it cannot decide it denies,
like everything else here, rather than let an unpatched workload through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from modelshield.engine import compiling, evaluating, modelchecks
from modelshield.engine import facts as engine_facts
from modelshield_webhooks import contexts, facts, responses, reviews, validating

_logger = logging.getLogger(__name__)

ENDPOINT = "mutate"


def startup_container(
    artifact: engine_facts.ArtifactFacts,
    image: str,
    volume_mounts: list[Any],
) -> dict[str, Any]:
    """The init container that re-verifies the model files before the server starts.

    Built here until ``modelshield.modelartifacts.startup`` provides the canonical one.
    It sees the same volumes as the first container, read-only, and is hardened so that
    runtime requirements hold for it too.
    """
    arguments = ["model", "verify", "--uri", artifact.uri]
    if artifact.expected_digest:
        arguments += ["--digest", artifact.expected_digest]
    mounts = [
        {**mount, "readOnly": True}
        for mount in volume_mounts
        if isinstance(mount, Mapping) and isinstance(mount.get("name"), str)
    ]
    return {
        "name": contexts.STARTUP_CONTAINER_NAME,
        "image": image,
        "command": ["modelshield"],
        "args": arguments,
        "env": [
            {"name": "MODELSHIELD_MODEL_ARTIFACT", "value": f"{artifact.namespace}/{artifact.name}"}
        ],
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    }


def _startup_patches(
    subject: validating.Subject,
    policies: tuple[compiling.CompiledPolicy, ...],
    context: contexts.AdmissionContext,
) -> list[dict[str, Any]]:
    workload = subject.workload
    # Init containers of a pod are immutable after creation; templates are left alone
    # so that GitOps tools see no drift: the pods made from them get the container.
    if subject.request.operation != "CREATE" or workload.kind != "Pod":
        return []
    if not any(p.models is not None and p.models.verify_at_startup for p in policies):
        return []
    if any(c.name == contexts.STARTUP_CONTAINER_NAME for c in workload.containers):
        return []
    artifact = None
    source = facts.ReviewFacts({}, context.state)
    for reference in workload.models:
        artifact = modelchecks.find_artifact(workload, reference, source)
        if artifact is not None:
            break
    if artifact is None:
        return []  # nothing to re-verify; validation reports the missing model
    spec = subject.request.object.get("spec") if subject.request.object else None
    pod_spec: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
    containers = pod_spec.get("containers")
    first = containers[0] if isinstance(containers, list) and containers else {}
    mounts = first.get("volumeMounts") if isinstance(first, Mapping) else None
    container = startup_container(
        artifact, context.startup_image, mounts if isinstance(mounts, list) else []
    )
    if isinstance(pod_spec.get("initContainers"), list):
        return [{"op": "add", "path": "/spec/initContainers/0", "value": container}]
    return [{"op": "add", "path": "/spec/initContainers", "value": [container]}]


async def _digest_patches(
    subject: validating.Subject,
    policies: tuple[compiling.CompiledPolicy, ...],
    context: contexts.AdmissionContext,
) -> list[dict[str, Any]]:
    pinning = tuple(
        p for p in policies if p.images is not None and p.images.source.mutate_to_digest
    )
    if not pinning:
        return []
    workload = subject.workload
    images = await facts.gather_images(
        evaluating.image_requests(workload, pinning),
        context.verifier,
        deadline_seconds=context.verify_deadline_seconds,
        namespace=workload.namespace,
        counters=context.metrics,
    )
    decision = evaluating.decide(
        workload, policies, facts.ReviewFacts(images, context.state), context.clock()
    )
    return list(decision.patches)


async def patches_for(
    subject: validating.Subject, context: contexts.AdmissionContext
) -> list[dict[str, Any]]:
    """The JSONPatch operations the governing policies ask for (empty when none)."""
    policies = await validating.governing(subject, context)
    if not policies:
        return []
    digest = await _digest_patches(subject, policies, context)
    return digest + _startup_patches(subject, policies, context)


async def review(body: bytes, context: contexts.AdmissionContext) -> responses.ReviewResponse:
    """Answer one mutating AdmissionReview; never raises, never admits on error."""
    started = time.perf_counter()
    counters = context.metrics
    kind = ""
    patched = "error"
    try:
        request = reviews.decode(body)
    except reviews.MalformedReviewError as error:
        _logger.warning("malformed AdmissionReview (uid %r): %s", error.uid, error.problem)
        counters.failures.labels("MalformedReview").inc()
        response = responses.malformed(error)
    else:
        kind = request.kind
        try:
            subject = validating.subject_of(request)
            patches: list[dict[str, Any]] = []
            if subject is not None and not validating.unchanged(subject):
                patches = await patches_for(subject, context)
            response = responses.allow(request.uid, patches=patches)
            patched = "true" if patches else "false"
        except validating.UndecidableError as error:
            _logger.warning("%s: undecidable: %s", request.describe, error.message)
            counters.failures.labels(error.reason).inc()
            response = responses.deny(request.uid, error.message)
        except Exception:
            _logger.exception("%s: error while mutating", request.describe)
            counters.failures.labels("InternalError").inc()
            response = responses.internal_error(request.uid, "an internal error while mutating")
    counters.mutations.labels(kind, patched).inc()
    counters.observe_duration(ENDPOINT, time.perf_counter() - started)
    return response
