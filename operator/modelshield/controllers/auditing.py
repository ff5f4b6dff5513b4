"""The background audit: every running workload, evaluated again with the same engine.

Admission saw a workload once; keys rotate and signatures get removed afterwards. Every
``--audit-interval`` seconds the audit evaluates each governed workload against the
current policies, the ModelArtifacts' facts and the image verdicts of ``imageverdicts`` (each
image verified again once its cache entry's TTL has run out, with the Secrets the
operator may read), then writes one PolicyReport per namespace and updates the metrics:
violations by policy and reason, last audit time, and the workloads whose NetworkPolicy
failed closed (deny-all). An Audit policy's network block is reported as a ``warn``
result saying what Enforce would narrow (the reconciler worked it out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import time
from collections import Counter
from typing import Any

import kopf
import prometheus_client
from aiohttp import web

from modelshield.controllers import caches, imageverdicts, leadership, reconciling, writing
from modelshield.controllers.builders import ownership, policyreports
from modelshield.engine import decisions, evaluating, workloads

LOGGER = logging.getLogger("modelshield.audit")


class Metrics:
    """The audit's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.violations = prometheus_client.Gauge(
            "modelshield_audit_violations",
            "Violations found by the last background audit, by policy and reason.",
            ["policy", "reason"],
            registry=self.registry,
        )
        self.last_audit = prometheus_client.Gauge(
            "modelshield_audit_last_run_timestamp_seconds",
            "When the last background audit finished (Unix time).",
            registry=self.registry,
        )
        self.duration = prometheus_client.Gauge(
            "modelshield_audit_duration_seconds",
            "How long the last background audit took.",
            registry=self.registry,
        )
        self.audited = prometheus_client.Gauge(
            "modelshield_audit_workloads",
            "Governed workloads evaluated by the last background audit.",
            registry=self.registry,
        )
        self.failed_closed = prometheus_client.Gauge(
            "modelshield_network_policies_failed_closed",
            "Governed workloads whose NetworkPolicy denies all traffic because the one their "
            "policies describe could not be built or was refused by the API server.",
            registry=self.registry,
        )

    def watch(self, controller: reconciling.Controller) -> None:
        """Read the reconciler's fail-closed count at every scrape."""
        self.failed_closed.set_function(lambda: len(controller.failed_closed))

    def record(self, counts: Counter[tuple[str, str]], audited: int, seconds: float) -> None:
        """Publish one audit's figures (series that went to zero are dropped)."""
        self.violations.clear()
        for (policy, reason), count in counts.items():
            self.violations.labels(policy=policy, reason=reason).set(count)
        self.audited.set(audited)
        self.duration.set(seconds)
        self.last_audit.set(time.time())


class Auditor:
    """Runs audits over the reconciler's World and writes PolicyReports."""

    def __init__(
        self,
        controller: reconciling.Controller,
        *,
        max_results: int = policyreports.DEFAULT_MAX_RESULTS,
        metrics: Metrics | None = None,
        leader: leadership.Leadership | None = None,
    ) -> None:
        self.controller = controller
        self.leader = leader
        self.kube: writing.Kube = controller.kube
        self.max_results = max_results
        self.metrics = metrics or Metrics()

    @property
    def world(self) -> caches.World:
        """The reconciler's World (replaced wholesale by a resync)."""
        return self.controller.world

    @property
    def verifications(self) -> imageverdicts.Verifications:
        """The reconciler's image verdicts (one cache for status and audit)."""
        return self.controller.verifications

    async def evaluate(self, now: datetime.datetime) -> dict[str, list[policyreports.Audited]]:
        """Every governed workload's decision, by namespace."""
        # modelshield's own startup init container, judged as admission judges it.
        startup = self.controller.startup
        governed = []
        for key in sorted(self.world.workloads):
            body = self.world.workloads.get(key)
            if body is None:
                continue
            parsed = workloads.parse(body)
            # The World's answer: nothing outside modelshield's scope is governed.
            governing = self.world.governing(key)
            if governing:
                subject = imageverdicts.image_subject(parsed, self.world, startup)
                governed.append((key, body, parsed, subject, governing))
        verifications = self.verifications
        await verifications.verify_all(
            verifications.audit_requests(
                (subject, governing) for _, _, _, subject, governing in governed
            )
        )
        found: dict[str, list[policyreports.Audited]] = {}
        for key, body, parsed, subject, governing in governed:
            looked = verifications.look_up(key, subject, governing, request=False)
            source = looked.source(self.world)
            decision = evaluating.decide(
                parsed, governing, source, now, startup=startup, store=self.controller.store
            )
            ref = ownership.ObjectRef.of(body)
            outcome = self.controller.outcomes.get(key)
            notes = tuple(
                (_policy_name(policy), note.message)
                for policy, messages in sorted(
                    (outcome.notes if outcome else {}).items(), key=lambda item: item[0].display
                )
                for note in messages
            )
            found.setdefault(parsed.namespace, []).append(
                policyreports.Audited(
                    ref.api_version, ref.kind, ref.namespace, ref.name, ref.uid, decision, notes
                )
            )
        return found

    async def run_once(self) -> dict[str, dict[str, Any]]:
        """One audit: evaluate, write the reports, publish metrics. Returns the reports."""
        started = time.monotonic()
        now = datetime.datetime.now(datetime.UTC)
        by_namespace = await self.evaluate(now)
        labels = {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY}
        reports = {
            namespace: policyreports.build(
                namespace, audited, now, max_results=self.max_results, labels=labels
            )
            for namespace, audited in by_namespace.items()
        }
        for namespace, report in reports.items():
            await self._write(namespace, report)
        await self._remove_stale(set(reports))
        counts: Counter[tuple[str, str]] = Counter()
        for audited in by_namespace.values():
            for item in audited:
                for violation in (*item.decision.violations, *item.decision.warnings):
                    counts[(str(violation.policy), violation.code.value)] += 1
        self.metrics.record(
            counts, sum(len(a) for a in by_namespace.values()), time.monotonic() - started
        )
        # The audit refreshed the verifier's cache: policy status may read it differently now.
        self.controller.status_due(list(self.world.policies))
        return reports

    async def _write(self, namespace: str, report: dict[str, Any]) -> None:
        live = await self.kube.get(policyreports.KIND, namespace, policyreports.NAME)
        if live is None:
            await self.kube.create(report)
        elif not policyreports.same_content(live, report):
            await self.kube.replace(report, str(live["metadata"].get("resourceVersion", "")))

    async def _remove_stale(self, keep: set[str]) -> None:
        live = await self.kube.list_all(
            "/apis/wgpolicyk8s.io/v1alpha2/policyreports", ownership.MANAGED_SELECTOR
        )
        for report in live:
            metadata = report.get("metadata") or {}
            if metadata.get("name") == policyreports.NAME and metadata.get("namespace") not in keep:
                await self.kube.delete(
                    policyreports.KIND,
                    str(metadata["namespace"]),
                    policyreports.NAME,
                    str(metadata.get("uid", "")),
                )

    async def run_forever(self, interval: float) -> None:
        """Audit every interval seconds (the first one after a full interval, once settled)."""
        while True:
            await asyncio.sleep(interval)
            if self.leader is not None and not await self.leader.active():
                continue  # a standby instance's view is stale: the active one reports
            try:
                await self.run_once()
            except writing.ApiException as error:
                LOGGER.warning("audit: %s %s", error.status, error.reason)
            except Exception:
                LOGGER.exception("audit failed")


def _policy_name(policy: ownership.ObjectRef) -> str:
    """A policy as the engine's violations name it (``decisions.PolicyRef``)."""
    return str(decisions.PolicyRef(policy.kind, policy.namespace, policy.name))


async def serve_metrics(registry: prometheus_client.CollectorRegistry, port: int) -> web.AppRunner:
    """Serve /metrics on the port."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(registry),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - a pod's own network
    return runner


def register(
    registry: kopf.OperatorRegistry,
    *,
    controller: reconciling.Controller,
    arguments: argparse.Namespace,
    leader: leadership.Leadership | None = None,
) -> Auditor:
    """Start the audit loop and the metrics server with the operator."""
    auditor = Auditor(controller, max_results=arguments.audit_max_results, leader=leader)
    auditor.metrics.watch(controller)
    state: dict[str, Any] = {}

    @kopf.on.startup(registry=registry)
    async def start_audit(**_: Any) -> None:
        loop = asyncio.get_running_loop()
        if arguments.audit_interval > 0:
            state["task"] = loop.create_task(auditor.run_forever(arguments.audit_interval))
        if arguments.metrics_port:
            state["runner"] = await serve_metrics(auditor.metrics.registry, arguments.metrics_port)

    @kopf.on.cleanup(registry=registry)
    async def stop_audit(**_: Any) -> None:
        task = state.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runner = state.pop("runner", None)
        if runner is not None:
            await runner.cleanup()

    return auditor
