"""kopf handlers of the ModelArtifact reconciler: fetch, verify and scan off the event loop.

On create, spec update and resume (and from a timer once ``spec.recheckInterval`` has
passed since ``status.lastChecked``) the artifact is checked in a process pool with
bounded concurrency: a worker process fetches the files (streaming, into a scratch
directory removed afterwards), verifies them against the signers of the policies in the
artifact's namespace (and the cluster policies that select it), scans them, and returns
the new status (``modelartifacts.reconciling``). The handler patches the status through
kopf and posts an Event per condition transition. Nothing here unpickles a model.

The governing policies' models blocks are read from the operator's one ``World``
(``caches``), which the policy reconciler's handlers keep current (registered before
these: kopf runs a resource's event handlers in registration order); the PEM keys of
``secretRef`` signers are read from their Secrets when a Kubernetes client is available.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
import prometheus_client

from modelshield.api.v1alpha1 import artifacts, common, policies
from modelshield.controllers import artifactchecks, caches, kubesecrets
from modelshield.engine import redacting
from modelshield.modelartifacts import reconciling
from modelshield.provenance import checking
from modelshield.supplychain.images import secretreading

LOGGER = logging.getLogger("modelshield.artifacts")
GROUP, VERSION, PLURAL = "modelshield.dev", "v1alpha1", "modelartifacts"


def is_due(status: Mapping[str, Any], spec: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether recheckInterval has passed since status.lastChecked."""
    checked = status.get("lastChecked")
    if not checked:
        return True
    try:
        interval = common.parse_duration(str(spec.get("recheckInterval", "24h")))
        last = datetime.datetime.fromisoformat(str(checked).replace("Z", "+00:00"))
        return now - last >= interval
    except (TypeError, ValueError):
        return True  # an unreadable status or interval: check now (it fails closed)


class Reconciler:
    """Runs checks in a process pool, at most ``max_concurrent`` at a time."""

    def __init__(
        self, settings: artifactchecks.Settings, kube: Any = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.kube = kube
        self._no_client = False
        #: uid -> fingerprint of the policies an artifact was last checked against.
        self.checked_against: dict[str, str] = {}
        #: (uid, generation) of the checks running now.
        self.in_flight: set[tuple[str, Any]] = set()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: never fork an event loop with its threads and sockets.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.settings.max_concurrent,
                mp_context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    def shutdown(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def secret_keys(
        self, namespace: str, requirements: Iterable[policies.ModelRequirements]
    ) -> dict[tuple[str, str], bytes]:
        """The PEM keys that secretRef signers and builders name (missing ones are left out)."""
        requirements = list(requirements)
        refs = reconciling.signer_secret_refs(requirements)
        refs += checking.builder_secret_refs(requirements)
        kube = self._client() if refs else None
        if kube is None:
            return {}
        return await secretreading.key_values(kubesecrets.KubeSecrets(kube), namespace, refs)

    def _client(self) -> Any:
        """The Kubernetes client for Secrets: the operator's, else an in-cluster one."""
        if self.kube is None and not self._no_client:
            try:
                from kubernetes import client, config

                from modelshield.controllers import writing

                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self.kube = writing.Kube(client.ApiClient(), max_workers=2)
            except Exception as error:  # noqa: BLE001 - any failure: secretRef signers skipped
                LOGGER.warning("no Kubernetes client for secretRef signers: %s", error)
                self._no_client = True
        return self.kube

    async def check(self, job: artifactchecks.Job) -> reconciling.Verdict:
        """Run one job in the pool; the event loop only awaits it.

        Whatever goes wrong (the work directory cannot be made, a worker dies, the check
        outlives its deadline) is a failed verdict, never an exception that would leave
        the previous status in place.
        """
        async with self._slots:
            loop = asyncio.get_running_loop()
            try:
                self.settings.work_dir.mkdir(parents=True, exist_ok=True)
                running = loop.run_in_executor(self._executor(), artifactchecks.run_job, job)
                return await asyncio.wait_for(running, self.settings.fetch.deadline_seconds * 2)
            except TimeoutError:
                # The worker ignored its own deadline (a read stuck in a C call): stop it.
                self._terminate_workers()
                waited = self.settings.fetch.deadline_seconds * 2
                return artifactchecks.failed_verdict(
                    job, TimeoutError(f"no verdict within {waited:.0f} s")
                )
            except concurrent.futures.process.BrokenProcessPool as error:
                self._pool = None  # the next check starts a fresh pool
                return artifactchecks.failed_verdict(job, error)
            except Exception as error:  # noqa: BLE001 - fail closed, whatever the error
                return artifactchecks.failed_verdict(job, error)

    def _terminate_workers(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The pool's own API cannot stop a running task: end its processes (our children).
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)


def _previous(status: Mapping[str, Any]) -> artifacts.ModelArtifactStatus | None:
    try:
        return artifacts.ModelArtifactStatus.model_validate(dict(status)) if status else None
    except ValueError:
        return None


class Metrics:
    """The reconciler's Prometheus metrics (in the operator's metrics registry when given)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry or prometheus_client.CollectorRegistry()
        self.checks = prometheus_client.Counter(
            "modelshield_model_artifact_checks",
            "ModelArtifact checks (fetch, verify, scan) finished, by namespace and result.",
            ["namespace", "result"],
            registry=self.registry,
        )
        self.failures = prometheus_client.Counter(
            "modelshield_model_artifact_check_failures",
            "ModelArtifact checks that left the artifact not Ready, by namespace and reason "
            "(FetchFailed, CheckFailed, ContentMismatch, BlockingFindings...).",
            ["namespace", "reason"],
            registry=self.registry,
        )


def failure_reason(status: artifacts.ModelArtifactStatus) -> str | None:
    """Why a check left the artifact not Ready (the most specific reason), or None."""
    by_type = {c.type: c for c in status.conditions}
    ready = by_type.get(artifacts.READY)
    if ready is None:
        return reconciling.CHECK_FAILED
    if ready.status is common.ConditionStatus.TRUE:
        return None
    causes = {
        reconciling.NOT_VERIFIED: artifacts.VERIFIED,
        reconciling.NOT_SCANNED: artifacts.SCANNED,
    }
    cause = by_type.get(causes.get(ready.reason, artifacts.READY))
    return (cause or ready).reason


def fingerprint(requirements: Iterable[policies.ModelRequirements]) -> str:
    """What the governing policies require of models, as a comparable string."""
    return json.dumps([r.model_dump(mode="json", by_alias=True) for r in requirements])


def status_patch(status: artifacts.ModelArtifactStatus) -> dict[str, Any]:
    """The status as a merge patch: cleared fields become nulls so they are removed.

    ``servedBy`` is left out: the serving index (``controllers.servingindex``) owns it, and a
    check must not erase where the model runs.
    """
    return status.model_dump(by_alias=True, mode="json", exclude={"served_by"})


def register(
    registry: kopf.OperatorRegistry,
    *,
    world: caches.World,
    settings: artifactchecks.Settings | None = None,
    kube: Any = None,
    metrics: prometheus_client.CollectorRegistry | None = None,
    arguments: Any = None,
    **_: Any,
) -> Reconciler:
    """Attach the ModelArtifact handlers to a registry; they read policies from ``world``."""
    reconciler = Reconciler(
        settings or artifactchecks.Settings.from_environment(os.environ, arguments),
        kube,
        Metrics(metrics),
    )

    def requirements_of(kwargs: Mapping[str, Any]) -> list[policies.ModelRequirements]:
        return world.model_requirements(str(kwargs["namespace"]))

    async def reconcile_artifact(kwargs: Mapping[str, Any]) -> None:
        body: kopf.Body = kwargs["body"]
        namespace = str(kwargs["namespace"])
        generation = int(body.metadata.get("generation") or 0)
        previous = _previous(body.get("status") or {})
        requirements: list[policies.ModelRequirements] | None = None
        try:
            spec = artifacts.ModelArtifactSpec.model_validate(dict(body.get("spec") or {}))
            requirements = requirements_of(kwargs)
            # A Dataset record is verified against datasetSigners (issue 16).
            checked = checking.for_artifact(spec, requirements)
            keys = await reconciler.secret_keys(namespace, checked)
            signers = reconciling.trusted_signers(checked, keys, reconciler.settings.trust_config)
            job = artifactchecks.Job(
                uid=str(body.metadata.uid),
                spec=spec,
                generation=generation,
                previous=previous,
                signers=tuple(signers),
                threshold=reconciling.blocking_threshold(checked),
                settings=reconciler.settings,
                namespace=namespace,
                provenance=checking.request(spec, checked, keys, reconciler.settings.trust_config),
            )
        except Exception as error:  # noqa: BLE001 - a check that cannot start fails closed
            LOGGER.warning("artifact %s/%s: cannot check", namespace, body.metadata.name)
            verdict = reconciling.failed(
                generation,
                previous,
                now=datetime.datetime.now(datetime.UTC),
                reason=reconciling.CHECK_FAILED,
                message=redacting.redact(f"the check failed: {type(error).__name__}: {error}"),
            )
        else:
            key = (job.uid, job.generation)
            reconciler.in_flight.add(key)
            try:
                verdict = await reconciler.check(job)
            finally:
                reconciler.in_flight.discard(key)
        if requirements is not None:
            reconciler.checked_against[str(body.metadata.uid)] = fingerprint(requirements)
        kwargs["patch"].status.update(status_patch(verdict.status))
        for condition in verdict.transitions:
            healthy = condition.status is common.ConditionStatus.TRUE
            kopf.event(
                body,
                type="Normal" if healthy else "Warning",
                reason=condition.reason,
                message=f"{condition.type}={condition.status.value}: {condition.message}"[:1024],
            )
        reason = failure_reason(verdict.status)
        reconciler.metrics.checks.labels(
            namespace=namespace, result="Ready" if reason is None else "NotReady"
        ).inc()
        if reason is not None:
            reconciler.metrics.failures.labels(namespace=namespace, reason=reason).inc()
            if not verdict.transitions:
                # Still failing: say so on every check, not only when it started failing.
                ready = next(c for c in verdict.status.conditions if c.type == artifacts.READY)
                kopf.event(
                    body,
                    type="Warning",
                    reason=reason,
                    message=f"check failed again: {ready.message}"[:1024],
                )

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    async def artifact_changed(**kwargs: Any) -> None:
        await reconcile_artifact(kwargs)

    @kopf.timer(
        GROUP, VERSION, PLURAL, interval=reconciler.settings.timer_seconds, registry=registry
    )
    async def artifact_recheck(**kwargs: Any) -> None:
        body = kwargs["body"]
        if (str(body.metadata.uid), body.metadata.get("generation")) in reconciler.in_flight:
            return  # the change handler is checking this very generation
        now = datetime.datetime.now(datetime.UTC)
        checked = reconciler.checked_against.get(str(body.metadata.uid))
        # Due by recheckInterval, or the governing policies' models blocks changed (a
        # signer added or rotated, a stricter threshold) since the last check.
        try:
            policies_changed = checked is not None and checked != fingerprint(
                requirements_of(kwargs)
            )
        except Exception:  # noqa: BLE001 - unreadable policies: check now, which fails closed
            policies_changed = True
        status = body.get("status") or {}
        # A spec change whose update handler has not run (or whose status patch was lost).
        stale = status.get("observedGeneration") != body.metadata.get("generation")
        if policies_changed or stale or is_due(status, body.get("spec") or {}, now):
            await reconcile_artifact(kwargs)

    @kopf.on.cleanup(registry=registry)
    async def stop_artifact_workers(**_: Any) -> None:
        reconciler.shutdown()

    return reconciler
