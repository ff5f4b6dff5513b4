"""The validating webhook for workloads: admit, warn (Audit) or deny (Enforce).

Fails closed: a review that cannot be read, caches that are not synced, a policy that
does not validate, a verification that does not finish in time and any exception all
deny with a message that says so. Workloads no policy could govern are admitted after
one dictionary lookup.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from modelshield.api.v1alpha1.policies import Enforcement
from modelshield.engine import compiling, decisions, evaluating, modelchecks, workloads
from modelshield.supplychain.images import secretreading
from modelshield_webhooks import contexts, responses, reviewfacts, reviews

_logger = logging.getLogger(__name__)

ENDPOINT = "validate"


class UndecidableError(Exception):
    """The webhook cannot decide now; the request is denied with this message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: A CamelCase reason for the failures metric.
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True)
class Subject:
    """A workload under review, with the namespace the request names."""

    request: reviews.Request
    workload: workloads.Workload

    def describe(self) -> str:
        """kind namespace/name, as messages name it."""
        name = self.workload.name or self.request.name or "(unnamed)"
        return f"{self.workload.kind} {self.workload.namespace}/{name}"


def _parse(obj: Mapping[str, Any], request: reviews.Request) -> workloads.Workload | None:
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in workloads.SUPPORTED_KINDS:
        if request.kind not in workloads.SUPPORTED_KINDS:
            return None
        obj = {**obj, "kind": request.kind}
    header = workloads.read_header(obj)
    return workloads.complete(header, namespace=request.namespace or header.namespace)


def subject_of(request: reviews.Request) -> Subject | None:
    """The workload a CREATE or UPDATE is about; None when it is not about a workload."""
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return None
    workload = _parse(request.object, request)
    return Subject(request, workload) if workload is not None else None


def unchanged(subject: Subject) -> bool:
    """An UPDATE that changes nothing policies look at (labels, pod spec, model).

    Controllers update workloads all the time (revision annotations, owner references,
    finalizers); these are admitted without a new verification, so that a registry
    outage cannot wedge a rollout or a deletion. What runs cannot change this way.
    """
    request = subject.request
    if request.operation != "UPDATE" or request.old_object is None:
        return False
    old = _parse(request.old_object, request)
    if old is None:
        return False
    if subject.workload.kind in workloads.KSERVE_KINDS and (
        request.old_object.get("spec") != (request.object or {}).get("spec")
    ):
        # KServe builds pods from fields no container shows (model.runtime picks the
        # ServingRuntime's image, runtimeVersion its tag...): any spec change is judged.
        return False
    return dataclasses.replace(old, name=subject.workload.name) == subject.workload


def startup_check(subject: Subject, context: contexts.AdmissionContext) -> modelchecks.StartupCheck:
    """How this review judges the init container of ``models.verifyAtStartup``."""
    request = subject.request
    previous: tuple[Mapping[str, Any], ...] = ()
    earlier_ephemeral: tuple[Mapping[str, Any], ...] = ()
    named = any(c.name == contexts.STARTUP_CONTAINER_NAME for c in subject.workload.containers)
    if named and request.operation == "UPDATE" and request.old_object is not None:
        old = _parse(request.old_object, request)
        containers = old.containers if old is not None else ()
        previous = tuple(
            c.spec
            for c in containers
            if c.field == "initContainers" and c.name == contexts.STARTUP_CONTAINER_NAME
        )
        earlier_ephemeral = tuple(c.spec for c in containers if c.field == "ephemeralContainers")
    return modelchecks.StartupCheck(
        image=context.startup_image, previous=previous, earlier_ephemeral=earlier_ephemeral
    )


async def governing(
    subject: Subject, context: contexts.AdmissionContext
) -> tuple[compiling.CompiledPolicy, ...]:
    """The policies that govern the workload; or UndecidableError."""
    state = context.state
    if not state.synced:
        raise UndecidableError(
            "NotSynced",
            "the modelshield webhook has not loaded policies yet (caches not synced: "
            f"{', '.join(state.unsynced())}); retry in a few seconds",
        )
    namespace = subject.workload.namespace
    # A cluster-scoped object (ClusterServingRuntime) has no namespace to look up: it is
    # judged by every cluster policy whose selector picks it (an unknown namespace).
    cluster_scoped = subject.workload.kind in workloads.CLUSTER_SCOPED_KINDS
    broken = state.broken_for(namespace)
    if broken:
        namespace_labels: Mapping[str, str] | None = None
        if not cluster_scoped and any(
            b.scope is not None and b.scope.namespace_selector is not None for b in broken
        ):
            # Unknown after the wait: could_govern fails closed.
            namespace_labels = await state.namespace_labels(
                namespace, context.namespace_wait_seconds
            )
        label_sets = subject.workload.label_sets or (subject.workload.labels,)
        broken = [
            b for b in broken if any(b.could_govern(ls, namespace_labels) for ls in label_sets)
        ]
        if broken:
            raise UndecidableError("BrokenPolicy", "; ".join(b.describe() for b in broken))
    policy_set = state.policy_set
    if cluster_scoped:
        return evaluating.governing_policies(subject.workload, policy_set, {})
    if not policy_set.could_govern(namespace):
        return ()
    labels: Mapping[str, str] = {}
    if policy_set.cluster:
        found = await state.namespace_labels(namespace, context.namespace_wait_seconds)
        if found is None:
            raise UndecidableError(
                "NamespaceUnknown",
                f"namespace {namespace!r} is not in the modelshield webhook's cache yet, so the "
                "cluster policies that apply there cannot be told; retry in a few seconds",
            )
        labels = found
    return evaluating.governing_policies(subject.workload, policy_set, labels)


async def decide(subject: Subject, context: contexts.AdmissionContext) -> decisions.Decision:
    """Gather the facts the governing policies need and ask the engine."""
    policies = await governing(subject, context)
    if not policies:
        return decisions.ALLOWED_UNGOVERNED
    # The named ServingRuntime's containers, when the cache knows it (KServe makes no
    # pod before it exists; the runtime and the pods are judged on their own).
    workload = context.state.runtimes.completed(subject.workload)
    check = startup_check(subject, context)
    genuine = modelchecks.startup_containers(
        workload, reviewfacts.ReviewFacts({}, context.state), check
    )
    images = await reviewfacts.gather_images(
        evaluating.image_requests(
            modelchecks.without_startup_container(workload, genuine), policies
        ),
        context.verifier,
        deadline_seconds=context.verify_deadline_seconds,
        namespace=workload.namespace,
        counters=context.metrics.at(ENDPOINT),
        access=context.secrets,
        pull_secret_names=secretreading.pull_secret_names(workload.containers),
    )
    source = reviewfacts.ReviewFacts(images, context.state)
    return evaluating.decide(
        workload, policies, source, context.clock(), startup=check, store=context.store
    )


def _enforcement(decision: decisions.Decision) -> str:
    if not decision.governed_by:
        return "none"
    if decision.violations:
        return Enforcement.ENFORCE.value
    if decision.warnings:
        return Enforcement.AUDIT.value
    return "compliant"


async def review(body: bytes, context: contexts.AdmissionContext) -> responses.ReviewResponse:
    """Answer one AdmissionReview body; never raises, never admits on error."""
    started = time.perf_counter()
    counters = context.metrics
    try:
        request = reviews.decode(body)
    except reviews.MalformedReviewError as error:
        _logger.warning("malformed AdmissionReview (uid %r): %s", error.uid, error.problem)
        counters.failures.labels("MalformedReview").inc()
        counters.review("", "", "denied", "error", time.perf_counter() - started, ENDPOINT)
        return responses.malformed(error)
    try:
        response, enforcement = await _answer(request, context)
    except UndecidableError as error:
        _logger.warning("%s: undecidable: %s", request.describe, error.message)
        counters.failures.labels(error.reason).inc()
        response = responses.deny(request.uid, error.message, code=responses.FORBIDDEN)
        enforcement = "error"
    except Exception:
        _logger.exception("%s: error while deciding", request.describe)
        counters.failures.labels("InternalError").inc()
        response = responses.internal_error(request.uid, "an internal error")
        enforcement = "error"
    decision = "allowed" if response["response"]["allowed"] else "denied"
    counters.review(
        request.kind,
        request.operation,
        decision,
        enforcement,
        time.perf_counter() - started,
        ENDPOINT,
    )
    return response


async def _answer(
    request: reviews.Request, context: contexts.AdmissionContext
) -> tuple[responses.ReviewResponse, str]:
    subject = subject_of(request)
    if subject is None or unchanged(subject):
        return responses.allow(request.uid), "none"
    decision = await decide(subject, context)
    if not decision.allowed:
        dry = " (dry run)" if request.dry_run else ""
        _logger.info("%s%s denied: %s", request.describe, dry, decision.message())
    return responses.from_decision(request.uid, decision, subject=subject.describe()), _enforcement(
        decision
    )
