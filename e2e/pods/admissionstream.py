"""A stream of creates through the fail-closed webhook, for the tests that disturb it.

A thread creates one governed Deployment (replicas 0: nothing is scheduled) after another
in a namespace the webhook intercepts, and records every answer. A create the API server
refuses because no webhook replica answered is lost: with two replicas, a PDB, a
surge-only rollout and a draining shutdown, none should be.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kubernetes import client

from e2e.clients import close_api_client, new_api_client

#: Pause between creates: a steady stream without loading the 2-core machine.
INTERVAL_SECONDS = 0.2


@dataclass(frozen=True)
class Answer:
    at: float
    name: str
    error: str | None


def deployment(name: str) -> client.V1Deployment:
    labels = {"app": name, "stream": "admission"}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=0,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="c", image="registry.invalid/m:1")]
                ),
            ),
        ),
    )


def create(apps: client.AppsV1Api, namespace: str, name: str) -> str | None:
    """Creates one Deployment; None when admitted, else the API server's message."""
    try:
        apps.create_namespaced_deployment(namespace, deployment(name))
    except client.ApiException as error:
        return f"HTTP {error.status}: {error.body}"
    return None


@dataclass
class AdmissionStream:
    """Creates Deployments in `namespace` until closed (a context manager)."""

    kubeconfig: Path
    namespace: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> AdmissionStream:
        self._thread = threading.Thread(target=self._run, name="admission-stream", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        api_client = new_api_client(self.kubeconfig)
        apps = client.AppsV1Api(api_client)
        try:
            index = 0
            while not self._stop.is_set():
                name = f"stream-{index}"
                self.answers.append(
                    Answer(time.monotonic(), name, create(apps, self.namespace, name))
                )
                index += 1
                self._stop.wait(INTERVAL_SECONDS)
        finally:
            close_api_client(api_client)

    @property
    def refused(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.error is not None]

    def admitted_names(self) -> set[str]:
        return {answer.name for answer in self.answers if answer.error is None}
