"""Prometheus metrics of the admission server, on a registry of its own (one per server)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import core, registry

from modelshield.engine import facts, workloads

#: The kinds a review may be labelled with; anything else is "other", and a review that
#: could not be read is "unknown" (label values must stay bounded whatever is sent).
KINDS = frozenset(
    (
        *workloads.SUPPORTED_KINDS,
        "ModelSecurityPolicy",
        "ClusterModelSecurityPolicy",
        "ModelArtifact",
    )
)
OPERATIONS = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))
UNKNOWN = "unknown"

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
            "Admission reviews answered, by endpoint (validate, mutate, validate-resources), "
            "kind (unknown when unreadable), operation, decision and the enforcement that "
            "decided (Enforce, Audit, compliant, none, invalid, error).",
            ("endpoint", "kind", "operation", "decision", "enforcement"),
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
            "Image verification lookups on the request path, by endpoint: hit (cached) or "
            "miss (verified now). With mutateToDigest an image is looked up by mutate, then "
            "(usually a hit) by validate.",
            ("endpoint", "result"),
            registry=self.registry,
        )
        self.verification_failures = prometheus_client.Counter(
            "modelshield_admission_verification_failures_total",
            "Image verifications run on the request path that did not verify, by outcome "
            "(NoSignature, TimedOut, ...); cached verdicts are not counted again.",
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
        #: The endpoint whose verifications this view counts (see ``at``).
        self.endpoint = ""
        self._views: dict[str, Metrics] = {}
        self._cache_ages: _CacheAges | None = None

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def at(self, endpoint: str) -> Metrics:
        """The same metrics, counting verification lookups under that endpoint."""
        view = self._views.get(endpoint)
        if view is None:
            view = copy.copy(self)  # shares the collectors and the children
            view.endpoint = endpoint
            self._views[endpoint] = view
        return view

    def review(
        self,
        kind: str,
        operation: str,
        decision: str,
        enforcement: str,
        seconds: float,
        endpoint: str,
    ) -> None:
        """Count one answered review and its duration; kind "" is a review not read."""
        # Label values come from the request: bounded, so that whoever can reach the port
        # cannot grow the metrics without limit.
        if not kind:
            kind = UNKNOWN
        elif kind not in KINDS:
            kind = "other"
        if operation not in OPERATIONS:
            operation = UNKNOWN
        self._child(self.requests, endpoint, kind, operation, decision, enforcement).inc()
        self._child(self.duration, endpoint).observe(seconds)

    def observe_duration(self, endpoint: str, seconds: float) -> None:
        """The duration of one review at an endpoint."""
        self._child(self.duration, endpoint).observe(seconds)

    def verification(self, found: facts.ImageFacts, *, cached: bool) -> None:
        """Count one lookup on the request path and, when verified now and failed, why."""
        self._child(self.verification_cache, self.endpoint, "hit" if cached else "miss").inc()
        # A cached failure is the same failure again: counting it per lookup would make one
        # unsigned image reviewed N times (or by two webhooks) look like N failures.
        if not cached and found.signature.outcome is not facts.Outcome.VERIFIED:
            self._child(self.verification_failures, found.signature.outcome.value).inc()

    def track_caches(self, last_heard: Callable[[], Mapping[str, float]]) -> None:
        """Export, per cached kind, the seconds since the API server was last heard from.

        ``last_heard`` gives ``time.monotonic()`` instants by kind; it is read at scrape time.
        """
        if self._cache_ages is None:
            self._cache_ages = _CacheAges(last_heard)
            self.registry.register(self._cache_ages)
        else:
            self._cache_ages.last_heard = last_heard

    def render(self) -> bytes:
        """The text exposition format."""
        return prometheus_client.generate_latest(self.registry)

    CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _CacheAges(registry.Collector):
    """``modelshield_admission_cache_age_seconds``, computed when scraped."""

    NAME = "modelshield_admission_cache_age_seconds"

    def __init__(self, last_heard: Callable[[], Mapping[str, float]]) -> None:
        self.last_heard = last_heard

    def collect(self) -> Iterator[core.Metric]:
        """One gauge sample per kind."""
        family = core.GaugeMetricFamily(
            self.NAME,
            "Seconds since the webhook's cache of each kind last heard from the API server "
            "(a list, a watch event, a bookmark or a quiet watch that ended cleanly); since "
            "the start when never.",
            labels=("kind",),
        )
        now = time.monotonic()
        for kind, instant in sorted(self.last_heard().items()):
            family.add_metric((kind,), max(0.0, now - instant))
        yield family

    def describe(self) -> Iterator[core.Metric]:
        """Without samples: registering must not call last_heard()."""
        yield core.GaugeMetricFamily(self.NAME, "", labels=("kind",))
