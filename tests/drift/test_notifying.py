"""The Kubernetes Event a crossing becomes, and when the monitor posts Events at all."""

from __future__ import annotations

import datetime
import math
import pathlib

from modelshield.drift import alarms, config, monitoring, notifying, statistics

WORKLOAD = config.WorkloadReference(
    api_version="serving.kserve.io/v1beta1",
    kind="InferenceService",
    name="iris",
    namespace="models",
)


def _crossing(transition: alarms.Transition, score: float = 0.31) -> monitoring.Crossing:
    return monitoring.Crossing(
        stream="request",
        window=7,
        feature="petal_length",
        statistic=statistics.Statistic.PSI,
        score=score,
        threshold=0.2,
        transition=transition,
    )


def test_a_raised_alarm_is_a_warning_on_the_workload() -> None:
    now = datetime.datetime(2026, 11, 26, 1, 2, 3, tzinfo=datetime.UTC)
    body = notifying.event_body(
        WORKLOAD, "models", _crossing(alarms.Transition.RAISED), now, "monitor-0"
    )
    assert body["involvedObject"] == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": "iris",
        "namespace": "models",
    }
    assert (body["type"], body["reason"]) == ("Warning", "DriftDetected")
    assert body["message"] == (
        "Drift detected on request feature 'petal_length': PSI 0.31 > threshold 0.2 (window 7)"
    )
    assert body["metadata"] == {"generateName": "iris.drift-", "namespace": "models"}
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-26T01:02:03Z"


def test_a_cleared_alarm_is_normal() -> None:
    now = datetime.datetime.now(datetime.UTC)
    body = notifying.event_body(
        WORKLOAD, "models", _crossing(alarms.Transition.CLEARED, 0.1), now, "m"
    )
    assert (body["type"], body["reason"]) == ("Normal", "DriftCleared")
    assert "0.1 < threshold 0.2" in body["message"]
    nan_body = notifying.event_body(
        WORKLOAD, "models", _crossing(alarms.Transition.CLEARED, math.nan), now, "m"
    )
    assert "nan" in nan_body["message"]


def test_events_only_in_a_cluster_with_a_workload(tmp_path: pathlib.Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    # No token mounted: not in a cluster.
    assert notifying.EventSink.in_cluster(WORKLOAD, environ, account) is None
    (account / "token").write_text("t")
    (account / "namespace").write_text("inference\n")
    assert notifying.EventSink.in_cluster(None, environ, account) is None
    assert notifying.EventSink.in_cluster(WORKLOAD, {}, account) is None
    workload = WORKLOAD.model_copy(update={"namespace": None})
    sink = notifying.EventSink.in_cluster(
        workload, {**environ, notifying.SERVICE_ACCOUNT_DIR_ENV: str(account)}
    )
    assert sink is not None
    assert (sink.server, sink.namespace, sink.ca_file) == (
        "https://10.0.0.1:443",
        "inference",
        None,
    )
    sink = notifying.EventSink.in_cluster(WORKLOAD, {"KUBERNETES_SERVICE_HOST": "fd00::1"}, account)
    assert sink is not None
    assert (sink.server, sink.namespace) == ("https://[fd00::1]:443", "models")
