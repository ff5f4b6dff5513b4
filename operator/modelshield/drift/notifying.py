"""Kubernetes Events on the inference workload when an alarm is raised or cleared.

Only in a cluster: the sink exists when the pod's service account is mounted and the
Kubernetes service environment is set, and a workload is configured. The monitor's
service account needs ``create`` on ``events`` (core group) in the workload's namespace;
without it the API answers 403, which is logged and otherwise ignored: a drift alarm is
never lost because its Event could not be written (the log line and the metrics remain).
"""

from __future__ import annotations

import datetime
import logging
import os
import pathlib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelshield.drift import alarms, config, monitoring

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_DIR_ENV = "MODELSHIELD_DRIFT_SERVICE_ACCOUNT_DIR"
"""Where the token, ca.crt and namespace are, when not in the standard place (outside a pod)."""
COMPONENT = "modelshield-drift-monitor"
REQUEST_TIMEOUT_SECONDS = 10


def event_body(
    workload: config.WorkloadReference,
    namespace: str,
    crossing: monitoring.Crossing,
    now: datetime.datetime,
    instance: str,
) -> dict[str, Any]:
    """The core/v1 Event for an alarm crossing (pure, for tests and for posting)."""
    raised = crossing.transition is alarms.Transition.RAISED
    verb = "detected" if raised else "cleared"
    message = (
        f"Drift {verb} on {crossing.stream} feature {crossing.feature!r}: "
        f"{crossing.measure} {crossing.score:.4g} "
        f"{'>' if raised else '<'} threshold {crossing.threshold:.4g} (window {crossing.window})"
    )
    involved: dict[str, Any] = {
        "kind": workload.kind,
        "name": workload.name,
        "namespace": namespace,
    }
    if workload.api_version:
        involved["apiVersion"] = workload.api_version
    if workload.uid:
        involved["uid"] = workload.uid
    timestamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{workload.name}.drift-", "namespace": namespace},
        "involvedObject": involved,
        "reason": "DriftDetected" if raised else "DriftCleared",
        "message": message,
        "type": "Warning" if raised else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": f"modelshield.dev/{COMPONENT}",
        "reportingInstance": instance,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


@dataclass
class EventSink:
    """Posts Events to one API server with a bearer token (re-read each time: it rotates)."""

    server: str
    token_file: pathlib.Path
    ca_file: pathlib.Path | None
    namespace: str
    workload: config.WorkloadReference

    @classmethod
    def in_cluster(
        cls,
        workload: config.WorkloadReference | None,
        environ: Mapping[str, str] | None = None,
        account_dir: pathlib.Path | None = None,
    ) -> EventSink | None:
        """The sink of the pod's service account, or None outside a cluster / without a workload."""
        environ = os.environ if environ is None else environ
        if account_dir is None:
            account_dir = pathlib.Path(environ.get(SERVICE_ACCOUNT_DIR_ENV) or SERVICE_ACCOUNT_DIR)
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = account_dir / "token"
        if workload is None or not host or not token.is_file():
            return None
        namespace_file = account_dir / "namespace"
        namespace = workload.namespace or (
            namespace_file.read_text().strip() if namespace_file.is_file() else "default"
        )
        if ":" in host:
            host = f"[{host}]"
        ca = account_dir / "ca.crt"
        return cls(
            f"https://{host}:{port}", token, ca if ca.is_file() else None, namespace, workload
        )

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    async def post(self, crossing: monitoring.Crossing) -> bool:
        """Write the Event; log and return False on any failure."""
        body = event_body(
            self.workload,
            self.namespace,
            crossing,
            datetime.datetime.now(datetime.UTC),
            socket.gethostname(),
        )
        url = f"{self.server}/api/v1/namespaces/{self.namespace}/events"
        try:
            headers = {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body, headers=headers, ssl=self._ssl()) as response,
            ):
                if response.status >= 300:
                    text = await response.text()
                    log.warning(
                        "could not write the drift Event: HTTP %d: %.300s", response.status, text
                    )
                    return False
        except (OSError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not write the drift Event: %s", error)
            return False
        return True
