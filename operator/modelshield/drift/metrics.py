"""The monitor's Prometheus metrics, in a registry of their own.

Names and labels (what dashboards and alerts rely on):

- ``modelshield_drift_score{feature,statistic}``: the last full window's score, every
  statistic that applies to the feature.
- ``modelshield_drift_threshold{feature,statistic}``: the alarm's threshold (calibrated when
  ``falseAlarmRate`` is set); with ``statistic="MissingShare"``, the missing-share test's
  threshold on the window's share of missing values (``modelshield.drift.missingshare``:
  numeric features watched by KS or Wasserstein with ``falseAlarmRate``).
- ``modelshield_drift_p_value{feature,statistic}``: the score's upper-tail probability under
  the calibrated null (``modelshield.drift.calibration``); ``MissingShare``: the missing
  count's.
- ``modelshield_drift_dataset_p_value{stream}``: Bonferroni's data-set p-value over every
  watched feature of the model, ``min(1, features x min p)`` of the alarm statistics.
- ``modelshield_drift_drifted_features{stream}``: features over their threshold.
- ``modelshield_drift_detected{feature}``: 1 while the feature's alarm is raised.
- ``modelshield_drift_missing_rate{feature}``, ``modelshield_drift_out_of_range_rate{feature}``.
- ``modelshield_drift_events_total{stream}``: accepted events (``request``, ``response``,
  ``ignored`` for response events when no outputs are watched).
- ``modelshield_drift_rows_total{stream}``, ``modelshield_drift_windows_total{stream}``,
  ``modelshield_drift_window_fill_ratio{stream}``.
- ``modelshield_drift_dropped_total``: events refused with 429 because the queue was full.
- ``modelshield_drift_rejected_total{reason}``: malformed events refused with a 4xx.
- ``modelshield_drift_schema_mismatch_total{feature,problem}``: named inputs where a
  watched feature was ``missing`` or an unknown one was ``extra``.
- ``modelshield_drift_alarms_total{feature,transition}``: ``Raised``/``Cleared`` crossings.
- ``modelshield_drift_queue_depth``: parsed events waiting for the window worker.
"""

from __future__ import annotations

import prometheus_client

from modelshield.drift import missingshare, monitoring, payloads


class Metrics:
    """Every metric of one monitor."""

    def __init__(self) -> None:
        """Create the metric families in a fresh registry."""
        self.registry = prometheus_client.CollectorRegistry()
        r = self.registry
        self.score = prometheus_client.Gauge(
            "modelshield_drift_score",
            "Drift score of the last full window.",
            ["feature", "statistic"],
            registry=r,
        )
        self.threshold = prometheus_client.Gauge(
            "modelshield_drift_threshold",
            "Threshold of the feature's drift alarm.",
            ["feature", "statistic"],
            registry=r,
        )
        self.p_value = prometheus_client.Gauge(
            "modelshield_drift_p_value",
            "Upper-tail probability of the last full window's score under the calibrated null.",
            ["feature", "statistic"],
            registry=r,
        )
        self.dataset_p_value = prometheus_client.Gauge(
            "modelshield_drift_dataset_p_value",
            "Bonferroni data-set p-value of the last full window: min(1, features x min p).",
            ["stream"],
            registry=r,
        )
        self.drifted_features = prometheus_client.Gauge(
            "modelshield_drift_drifted_features",
            "Features whose alarm score is over its threshold in the last full window.",
            ["stream"],
            registry=r,
        )
        self.detected = prometheus_client.Gauge(
            "modelshield_drift_detected",
            "1 while drift is detected on the feature.",
            ["feature"],
            registry=r,
        )
        self.missing_rate = prometheus_client.Gauge(
            "modelshield_drift_missing_rate",
            "Share of missing values in the last full window.",
            ["feature"],
            registry=r,
        )
        self.out_of_range_rate = prometheus_client.Gauge(
            "modelshield_drift_out_of_range_rate",
            "Share of values outside the reference range or categories (for a feature with a "
            "discrete support: not one of its values) in the last full window.",
            ["feature"],
            registry=r,
        )
        self.events = prometheus_client.Counter(
            "modelshield_drift_events", "Events accepted.", ["stream"], registry=r
        )
        self.rows = prometheus_client.Counter(
            "modelshield_drift_rows", "Rows counted into windows.", ["stream"], registry=r
        )
        self.windows = prometheus_client.Counter(
            "modelshield_drift_windows", "Windows completed and scored.", ["stream"], registry=r
        )
        self.window_fill = prometheus_client.Gauge(
            "modelshield_drift_window_fill_ratio",
            "How full the current window is.",
            ["stream"],
            registry=r,
        )
        self.dropped = prometheus_client.Counter(
            "modelshield_drift_dropped", "Events refused because the queue was full.", registry=r
        )
        self.rejected = prometheus_client.Counter(
            "modelshield_drift_rejected", "Malformed events refused.", ["reason"], registry=r
        )
        self.mismatches = prometheus_client.Counter(
            "modelshield_drift_schema_mismatch",
            "Named inputs missing a watched feature or carrying an unknown one.",
            ["feature", "problem"],
            registry=r,
        )
        self.alarms = prometheus_client.Counter(
            "modelshield_drift_alarms", "Alarm transitions.", ["feature", "transition"], registry=r
        )
        self.queue_depth = prometheus_client.Gauge(
            "modelshield_drift_queue_depth",
            "Parsed events waiting for the window worker.",
            registry=r,
        )
        self.event_counters = {
            stream: self.events.labels(stream) for stream in ("request", "response", "ignored")
        }
        self.dropped.inc(0)
        # Bound children: labels() costs microseconds, and a window sets ~8 per feature.
        self._scores: dict[tuple[str, str], prometheus_client.Gauge] = {}
        self._p_values: dict[tuple[str, str], prometheus_client.Gauge] = {}
        self._detected: dict[str, prometheus_client.Gauge] = {}
        self._missing: dict[str, prometheus_client.Gauge] = {}
        self._out_of_range: dict[str, prometheus_client.Gauge] = {}

    def declare(self, monitor: monitoring.Monitor) -> None:
        """Publish thresholds and zeroed alarms before the first window completes."""
        for stream in monitor.layouts_by_stream:
            self.windows.labels(stream).inc(0)
            self.rows.labels(stream).inc(0)
            self.window_fill.labels(stream).set(0)
            for feature, statistic, threshold in monitor.thresholds(stream):
                self.threshold.labels(feature, statistic.value).set(threshold)
                self.detected.labels(feature).set(0)
            for feature, threshold in monitor.missing_thresholds(stream):
                self.threshold.labels(feature, missingshare.NAME).set(threshold)

    def publish(self, result: monitoring.WindowResult) -> None:
        """Export one completed window."""
        scores = result.scores
        self.windows.labels(result.stream).inc()
        for statistic, values in scores.scores.items():
            for feature, value in zip(scores.names, values.tolist(), strict=True):
                if value == value:  # NaN: the statistic does not apply to the feature
                    key = (feature, statistic.value)
                    child = self._scores.get(key)
                    if child is None:
                        child = self._scores[key] = self.score.labels(*key)
                    child.set(value)
        for statistic, values in result.p_values.items():
            for feature, value in zip(scores.names, values.tolist(), strict=True):
                if value == value:
                    key = (feature, statistic.value)
                    child = self._p_values.get(key)
                    if child is None:
                        child = self._p_values[key] = self.p_value.labels(*key)
                    child.set(value)
        if result.missing_p_values is not None:
            for feature, value in zip(scores.names, result.missing_p_values.tolist(), strict=True):
                if value == value:
                    key = (feature, missingshare.NAME)
                    child = self._p_values.get(key)
                    if child is None:
                        child = self._p_values[key] = self.p_value.labels(*key)
                    child.set(value)
        self.dataset_p_value.labels(result.stream).set(result.dataset_p_value)
        self.drifted_features.labels(result.stream).set(result.drifted)
        missing = scores.missing_rate.tolist()
        out_of_range = scores.out_of_range_rate.tolist()
        for i, feature in enumerate(scores.names):
            if feature not in self._detected:
                self._detected[feature] = self.detected.labels(feature)
                self._missing[feature] = self.missing_rate.labels(feature)
                self._out_of_range[feature] = self.out_of_range_rate.labels(feature)
            self._missing[feature].set(missing[i])
            self._out_of_range[feature].set(out_of_range[i])
            self._detected[feature].set(1 if result.active[i] else 0)
        for crossing in result.crossings:
            self.alarms.labels(crossing.feature, crossing.transition.value).inc()

    def counted(self, stream: payloads.Stream, rows: int, fill: float) -> None:
        """Rows went into a stream's window."""
        self.rows.labels(stream).inc(rows)
        self.window_fill.labels(stream).set(fill)
