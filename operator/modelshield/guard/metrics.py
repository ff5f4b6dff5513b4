"""The guard's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

import prometheus_client

#: Seconds: the guard's own cost is sub-millisecond, the model's can be seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GuardMetrics:
    """Requests by client and decision, refusals by reason, latency."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "modelshield_guard_requests",
            "Requests by client, decision (allowed, refused, audited) and HTTP status.",
            ["client", "decision", "status"],
            registry=self.registry,
        )
        self.refusals = prometheus_client.Counter(
            "modelshield_guard_refusals",
            "Refusals (enforced, or what Audit would have refused) by reason and policy.",
            ["reason", "policy", "enforced"],
            registry=self.registry,
        )
        self.rate_limited = prometheus_client.Counter(
            "modelshield_guard_rate_limited",
            "Requests refused (or, under Audit, reported) for a rate limit or quota, by client.",
            ["client"],
            registry=self.registry,
        )
        self.latency = prometheus_client.Histogram(
            "modelshield_guard_request_seconds",
            "Time from the request's arrival to the response, by decision.",
            ["decision"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = prometheus_client.Counter(
            "modelshield_guard_upstream_errors",
            "Requests the model server did not answer (502/504).",
            registry=self.registry,
        )
        #: (client, decision, status) -> its request counter and latency histogram: one
        #: dict lookup per request instead of two ``labels()`` calls (each a lock and a key).
        #: As many entries as the counter has children.
        self._answered: dict[
            tuple[str, str, int], tuple[prometheus_client.Counter, prometheus_client.Histogram]
        ] = {}

    def answered(self, client: str, decision: str, status: int, seconds: float) -> None:
        """Count one finished request and observe its latency."""
        children = self._answered.get((client, decision, status))
        if children is None:
            children = (
                self.requests.labels(client, decision, str(status)),
                self.latency.labels(decision),
            )
            self._answered[(client, decision, status)] = children
        children[0].inc()
        children[1].observe(seconds)
