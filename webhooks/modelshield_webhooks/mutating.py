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

from modelshield.engine import compiling, evaluating, modelchecks, startup, workloads
from modelshield.supplychain.images import secretreading
from modelshield_webhooks import contexts, responses, reviewfacts, reviews, validating

_logger = logging.getLogger(__name__)

ENDPOINT = "mutate"


#: The ConfigMap (in the workload's namespace, written by the operator) and pod volume
#: holding ``<artifact>.<signer>.pub`` public keys that the startup init container trusts.
MODEL_KEYS = startup.KEYS_CONFIG_MAP


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
    # Two containers cannot share a name: the validating webhook denies the pod unless
    # the one it has is exactly the container built here.
    if any(c.name == startup.CONTAINER_NAME for c in workload.containers):
        return []
    target = modelchecks.startup_target(workload, reviewfacts.ReviewFacts({}, context.state))
    if target is None:
        # Nothing verified to re-verify against; validation denies such a model.
        return []
    artifact, digest, signer = target
    spec = subject.request.object.get("spec") if subject.request.object else None
    pod_spec: Mapping[str, Any] = spec if isinstance(spec, dict) else {}
    container = startup.for_pod(
        pod_spec, image=context.startup_image, digest=digest, artifact=artifact.name, signer=signer
    )
    if container is None:
        raise validating.UndecidableError(
            "NoModelVolume",
            f"{subject.describe()}: a policy asks to re-verify the model at start "
            "(models.verifyAtStartup), but the first container mounts no volume; mount the "
            "model from a volume (its name containing 'model')",
        )
    # What cannot be made to match what the check verifies is denied here, with its path;
    # a writable serving mount of the model volume is made read-only below.
    unbound = [
        f"{path}: {problem}"
        for path, problem in startup.binding_problems(pod_spec)
        if not path.endswith(".readOnly")
    ]
    if unbound:
        raise validating.UndecidableError(
            "ModelMountUnverifiable",
            f"{subject.describe()}: a policy asks to re-verify the model at start "
            f"(models.verifyAtStartup), but {'; '.join(unbound)}",
        )
    patches: list[dict[str, Any]] = startup.read_only_patches(pod_spec)
    # Last: an init container after the check could rewrite the model once it passed.
    if isinstance(pod_spec.get("initContainers"), list):
        patches.append({"op": "add", "path": "/spec/initContainers/-", "value": container})
    else:
        patches.append({"op": "add", "path": "/spec/initContainers", "value": [container]})
    volume = startup.keys_volume()
    volumes = pod_spec.get("volumes")
    if not isinstance(volumes, list):
        patches.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
    elif not any(isinstance(v, dict) and v.get("name") == MODEL_KEYS for v in volumes):
        patches.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    return patches


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
    genuine = modelchecks.startup_containers(
        workload,
        reviewfacts.ReviewFacts({}, context.state),
        validating.startup_check(subject, context),
    )
    # The injected container keeps its image: pinning it would make it another container.
    workload = modelchecks.without_startup_container(workload, genuine)
    images = await reviewfacts.gather_images(
        evaluating.image_requests(workload, pinning),
        context.verifier,
        deadline_seconds=context.verify_deadline_seconds,
        namespace=workload.namespace,
        counters=context.metrics.at(ENDPOINT),
        access=context.secrets,
        pull_secret_names=secretreading.pull_secret_names(workload.containers),
    )
    decision = evaluating.decide(
        workload, policies, reviewfacts.ReviewFacts(images, context.state), context.clock()
    )
    return [p for p in decision.patches if _image_changes(p, subject.request)]


def _pointed_at(document: object, pointer: str) -> object:
    """The value at a JSON pointer (RFC 6901), or None when there is none."""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict):
            document = document.get(token)
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return None
    return document


def _image_changes(patch: Mapping[str, Any], request: reviews.Request) -> bool:
    """Whether a pin belongs in this request: on UPDATE only for an image the update sets.

    Pinning an image the update leaves alone would change a running Pod's container (the
    kubelet restarts it) or roll a Deployment out, because of an unrelated edit such as a
    label that brings the workload under a policy. Those pins wait for the next change of
    the image; the background audit reports the tag meanwhile.
    """
    if request.operation != "UPDATE" or request.old_object is None:
        return True
    path = str(patch.get("path", ""))
    return _pointed_at(request.old_object, path) != _pointed_at(request.object, path)


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
    kind = operation = ""
    patched = "error"
    try:
        request = reviews.decode(body)
    except reviews.MalformedReviewError as error:
        _logger.warning("malformed AdmissionReview (uid %r): %s", error.uid, error.problem)
        counters.failures.labels("MalformedReview").inc()
        response = responses.malformed(error)
    else:
        kind, operation = request.kind, request.operation
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
    allowed = response["response"]["allowed"]
    # The mutating webhook enforces nothing: it denies only when it cannot decide.
    counters.review(
        kind,
        operation,
        "allowed" if allowed else "denied",
        "none" if allowed else "error",
        time.perf_counter() - started,
        ENDPOINT,
    )
    if kind not in workloads.SUPPORTED_KINDS:
        kind = "other"  # bounded label values, whatever the request says
    counters.mutations.labels(kind, patched).inc()
    return response
