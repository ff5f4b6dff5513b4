"""Kubernetes Events on the guarded workload when a client's stream raises a probing alarm.

The guard posts them with its own ServiceAccount token to the API server of its
configuration (``apiServer``), on the workload the operator names in ``workload``; the
operator gives the guard's ServiceAccount ``create`` on ``events`` in its namespace, and
nothing else through that Role. Posting never delays or fails a request: each Event is
sent in the background, at most ``max_pending`` at once (more are dropped and counted);
a failure is logged and counted, and the alarm's metric and log line remain.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import pathlib
import socket
import ssl
from typing import Any

import aiohttp
import prometheus_client

from modelshield.engine.decisions import PolicyRef
from modelshield.guard import probing
from modelshield.guard.config import WorkloadReference

log = logging.getLogger(__name__)
COMPONENT = "modelshield-inference-guard"


def event_body(
    workload: WorkloadReference,
    policy: PolicyRef,
    alarm: probing.Alarm,
    now: datetime.datetime,
    instance: str,
) -> dict[str, Any]:
    """The core/v1 Event for a probing alarm (pure)."""
    involved: dict[str, Any] = {
        "kind": workload.kind,
        "name": workload.name,
        "namespace": workload.namespace,
    }
    if workload.api_version:
        involved["apiVersion"] = workload.api_version
    if workload.uid:
        involved["uid"] = workload.uid
    timestamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{workload.name}.probing-", "namespace": workload.namespace},
        "involvedObject": involved,
        "reason": "ModelProbingDetected",
        "message": (
            f"client {alarm.client[:200]} looks like it is probing the model "
            f"({alarm.detector.value}, {policy}): {alarm.reason}"
        )[:1000],
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": f"modelshield.dev/{COMPONENT}",
        "reportingInstance": instance,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


class EventSink:
    """Posts probing Events in the background."""

    def __init__(
        self,
        url: str,
        token_file: pathlib.Path,
        ca_file: pathlib.Path | None,
        workload: WorkloadReference,
        registry: prometheus_client.CollectorRegistry,
        *,
        max_pending: int = 16,
        timeout: float = 10.0,
    ) -> None:
        self.url = f"{url.rstrip('/')}/api/v1/namespaces/{workload.namespace}/events"
        self.token_file = token_file
        self.ca_file = ca_file
        self.workload = workload
        self.max_pending = max_pending
        self.timeout = timeout
        self._pending: set[asyncio.Task[None]] = set()
        self.outcomes = prometheus_client.Counter(
            "modelshield_guard_probing_events",
            "Probing Events by outcome (sent, dropped, failed).",
            ["outcome"],
            registry=registry,
        )

    def offer(self, policy: PolicyRef, alarm: probing.Alarm) -> None:
        """Post the Event in the background, or drop it when too many are on their way."""
        if len(self._pending) >= self.max_pending:
            self.outcomes.labels("dropped").inc()
            return
        body = event_body(
            self.workload, policy, alarm, datetime.datetime.now(datetime.UTC), socket.gethostname()
        )
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        outcome = "failed"
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.post(
                    self.url,
                    json=body,
                    headers=headers,
                    ssl=context if self.url.startswith("https:") else True,
                ) as response,
            ):
                if response.status < 300:
                    outcome = "sent"
                else:
                    log.warning(
                        "could not write the probing Event: HTTP %d: %.300s",
                        response.status,
                        await response.text(),
                    )
        except (OSError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not write the probing Event: %s", error)
        self.outcomes.labels(outcome).inc()

    async def drain(self) -> None:
        """Wait for the Events on their way (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
