"""Prometheus metrics of the admission server, on a registry of its own (one per server)."""

from __future__ import annotations

from typing import Any

import prometheus_client

from modelshield.engine import facts, workloads

#: Up to the longest webhook timeout Kubernetes allows (30 s); the default is 10 s.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    15.0,
    30.0,
)


class Metrics:
    """The server's counters and histograms; ``render()`` is the /metrics body."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "modelshield_admission_requests_total",
            "Admission reviews answered, by kind, operation, decision and the enforcement "
            "that decided (Enforce, Audit, none when no policy governs, error).",
            ("kind", "operation", "decision", "enforcement"),
            registry=self.registry,
        )
        self.duration = prometheus_client.Histogram(
            "modelshield_admission_duration_seconds",
            "Time from reading an AdmissionReview to writing the answer, by endpoint.",
            ("endpoint",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.verification_cache = prometheus_client.Counter(
            "modelshield_admission_verification_cache_total",
            "Image verification lookups on the request path: hit (cached) or miss (verified now).",
            ("result",),
            registry=self.registry,
        )
        self.verification_failures = prometheus_client.Counter(
            "modelshield_admission_verification_failures_total",
            "Image verifications that did not verify, by outcome (NoSignature, TimedOut, ...).",
            ("reason",),
            registry=self.registry,
        )
        self.failures = prometheus_client.Counter(
            "modelshield_admission_failures_total",
            "Reviews denied because the webhook could not decide, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.mutations = prometheus_client.Counter(
            "modelshield_admission_mutations_total",
            "Mutating reviews answered, by kind and whether a patch was returned.",
            ("kind", "patched"),
            registry=self.registry,
        )
        self.resource_reviews = prometheus_client.Counter(
            "modelshield_admission_resource_reviews_total",
            "Reviews of modelshield's own custom resources, by kind and decision.",
            ("kind", "decision"),
            registry=self.registry,
        )

        # labels() validates and locks on every call; on the request path the children
        # are looked up in a plain dict instead (a measurable share of a review's cost).
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def review(
        self,
        kind: str,
        operation: str,
        decision: str,
        enforcement: str,
        seconds: float,
        endpoint: str,
    ) -> None:
        """Count one answered workload review and its duration."""
        # Label values come from the request: bounded, so that whoever can reach the port
        # cannot grow the metrics without limit.
        if kind not in workloads.SUPPORTED_KINDS:
            kind = "other"
        self._child(self.requests, kind, operation, decision, enforcement).inc()
        self._child(self.duration, endpoint).observe(seconds)

    def observe_duration(self, endpoint: str, seconds: float) -> None:
        """The duration of one review at an endpoint."""
        self._child(self.duration, endpoint).observe(seconds)

    def verification(self, found: facts.ImageFacts, *, cached: bool) -> None:
        """Count one lookup on the request path and, when it failed, its reason."""
        self._child(self.verification_cache, "hit" if cached else "miss").inc()
        if found.signature.outcome is not facts.Outcome.VERIFIED:
            self._child(self.verification_failures, found.signature.outcome.value).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return prometheus_client.generate_latest(self.registry)

    CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
