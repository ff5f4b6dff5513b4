"""The serving index (status.servedBy): which workloads serve each model and dataset record.

Pure: ``controllers.servingindex.Index`` fed with watch events as dicts, and what it would write.
The same index is written by the operator on a real API server in e2e/test_serving_index.py.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from modelshield.api.v1alpha1 import artifacts, serving
from modelshield.controllers import artifacts as artifact_handlers
from modelshield.controllers import servingindex as recording
from modelshield.controllers.builders import ownership

NS = "ml-prod"
TIME = "2026-11-25T10:00:00Z"
DATA = "s3://data/fraud/transactions/"


def _condition(kind: str, status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": "Ok", "lastTransitionTime": TIME}


def _artifact(
    name: str,
    uri: str,
    *,
    kind: str = "Model",
    trained_on: str | None = None,
    provenance_verified: bool = True,
    namespace: str = NS,
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 1, "conditions": [_condition("Ready")]}
    if trained_on is not None:
        status["conditions"].append(
            _condition("Provenance", "True" if provenance_verified else "False")
        )
        status["provenance"] = {
            "builder": "pipeline",
            "datasets": [{"name": "transactions", "uri": trained_on, "digest": ""}],
        }
    return {
        "apiVersion": "modelshield.dev/v1alpha1",
        "kind": "ModelArtifact",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"uri": uri, "type": kind},
        "status": status,
    }


def _deployment(
    name: str,
    model: str | None = None,
    *,
    env_uri: str | None = None,
    replicas: int | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": "registry.example.com/server:1"}
    if env_uri is not None:
        container["env"] = [{"name": "STORAGE_URI", "value": env_uri}]
    annotations = {"modelshield.dev/model-artifact": model} if model else {}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": annotations},
            "spec": {"containers": [container]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _inference_service(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"predictor": {"sklearn": {"storageUri": uri}}},
    }


def _index(*objects: dict[str, Any]) -> recording.Index:
    return recording.snapshot([objects])


def _served(index: recording.Index, name: str, namespace: str = NS) -> list[tuple[Any, ...]]:
    found = index.desired(namespace)[(namespace, name)]
    return [(w.kind, w.name, w.replicas, w.model) for w in found.workloads]


def test_a_workload_is_recorded_on_the_model_its_annotation_names() -> None:
    index = _index(
        _artifact("fraud-v1", "s3://models/fraud/v1/"),
        _artifact("fraud-v0", "s3://models/fraud/v0/"),
        _deployment("fraud", "fraud-v1"),
        _deployment("canary", "fraud-v1", replicas=3),
    )

    assert _served(index, "fraud-v1") == [
        ("Deployment", "canary", 3, None),
        ("Deployment", "fraud", 1, None),
    ]
    assert _served(index, "fraud-v0") == []
    assert index.desired(NS)[(NS, "fraud-v1")].total == 2


def test_a_model_named_through_another_field_is_recorded_too() -> None:
    # The annotation names the innocent model; STORAGE_URI (what KServe's storage
    # initializer downloads) names the bad one. The engine reads both, so does the index.
    index = _index(
        _artifact("innocent", "s3://models/innocent/"),
        _artifact("bad", "s3://models/bad/"),
        _deployment("sneaky", "innocent", env_uri="s3://models/bad/"),
    )

    assert _served(index, "bad") == [("Deployment", "sneaky", 1, None)]
    assert _served(index, "innocent") == [("Deployment", "sneaky", 1, None)]


def test_an_inference_service_is_recorded_by_its_storage_uri() -> None:
    index = _index(
        _artifact("iris", "s3://models/iris/"),
        _inference_service("iris", "s3://models/iris/"),
    )

    assert _served(index, "iris") == [("InferenceService", "iris", None, None)]


def test_daemon_sets_jobs_and_cron_jobs_are_recorded_even_when_owned() -> None:
    daemon = {**_deployment("node-agent", "fraud"), "kind": "DaemonSet"}
    job = {**_deployment("batch-score", "fraud"), "apiVersion": "batch/v1", "kind": "Job"}
    # An owner reference is the creator's to write: a Job under any CronJob stays listed.
    job["metadata"] = {
        **job["metadata"],
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "x", "uid": "1"}],
    }
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {
            "schedule": "0 2 * * *",
            "jobTemplate": {"spec": _deployment("j", "fraud")["spec"]},
        },
    }
    index = _index(_artifact("fraud", "s3://models/fraud/"), daemon, job, cron)

    assert _served(index, "fraud") == [
        ("CronJob", "nightly", None, None),
        ("DaemonSet", "node-agent", None, None),
        ("Job", "batch-score", None, None),
    ]


def test_a_look_alike_record_of_the_same_uri_does_not_hide_where_the_files_run() -> None:
    # Admission resolves a URI to the first record by name ("aaa"); the files are the same
    # as the flagged "zzz"'s, and "zzz" must still show where they run.
    index = _index(
        _artifact("zzz", "s3://models/flagged/"),
        _artifact("aaa", "s3://models/flagged/"),
        _inference_service("served", "s3://models/flagged/"),
        _deployment("annotated", "aaa"),
    )

    assert _served(index, "zzz") == [
        ("Deployment", "annotated", 1, None),
        ("InferenceService", "served", None, None),
    ]


def test_a_record_of_the_same_name_in_another_namespace_is_not_credited() -> None:
    index = _index(
        _artifact("fraud", "s3://models/fraud/"),
        _artifact("fraud", "s3://models/fraud/", namespace="other"),
        _deployment("elsewhere", "fraud", namespace="other"),
    )

    assert _served(index, "fraud") == []
    assert _served(index, "fraud", "other") == [("Deployment", "elsewhere", 1, None)]


def test_updates_scaling_to_zero_and_deletes_keep_the_index_current() -> None:
    index = _index(
        _artifact("v1", "s3://models/fraud/v1/"),
        _artifact("v2", "s3://models/fraud/v2/"),
    )
    recorder = recording.Recorder(kube=None)  # type: ignore[arg-type]  # no writes here
    recorder.index = index
    recorder.workload_event({"type": "ADDED", "object": _deployment("fraud", "v1")})
    assert recorder.dirty == {NS}
    assert _served(index, "v1") == [("Deployment", "fraud", 1, None)]

    # An UPDATE that switches the model moves the entry.
    recorder.workload_event({"type": "MODIFIED", "object": _deployment("fraud", "v2")})
    assert _served(index, "v1") == []
    assert _served(index, "v2") == [("Deployment", "fraud", 1, None)]

    recorder.workload_event({"type": "MODIFIED", "object": _deployment("fraud", "v2", replicas=0)})
    assert _served(index, "v2") == [("Deployment", "fraud", 0, None)]

    recorder.workload_event({"type": "DELETED", "object": _deployment("fraud", "v2", replicas=0)})
    assert _served(index, "v2") == []


def test_a_status_only_event_marks_nothing() -> None:
    recorder = recording.Recorder(kube=None)  # type: ignore[arg-type]
    body = _deployment("fraud", "v1")
    recorder.workload_event({"type": None, "object": body})
    recorder.dirty.clear()
    recorder.workload_event(
        {"type": "MODIFIED", "object": {**copy.deepcopy(body), "status": {"replicas": 1}}}
    )

    assert recorder.dirty == set()


def test_a_new_record_of_a_served_uri_is_credited_when_it_appears() -> None:
    index = _index(_inference_service("iris", "s3://models/iris/"))
    recorder = recording.Recorder(kube=None)  # type: ignore[arg-type]
    recorder.index = index
    recorder.artifact_event({"type": "ADDED", "object": _artifact("iris", "s3://models/iris/")})

    assert recorder.dirty == {NS}
    assert _served(index, "iris") == [("InferenceService", "iris", None, None)]


def test_a_dataset_lists_the_workloads_serving_models_trained_on_it() -> None:
    index = _index(
        _artifact("transactions", DATA, kind="Dataset"),
        _artifact("fraud-v1", "s3://models/fraud/v1/", trained_on=DATA),
        _artifact("fraud-v0", "s3://models/fraud/v0/", trained_on="s3://data/other/"),
        _artifact("unproven", "s3://models/unproven/", trained_on=DATA, provenance_verified=False),
        _deployment("fraud", "fraud-v1"),
        _deployment("legacy", "fraud-v0"),
        _deployment("unproven", "unproven"),
    )

    # Only a verified statement says what a model was trained on.
    assert _served(index, "transactions") == [("Deployment", "fraud", 1, "fraud-v1")]


def test_the_list_is_bounded_and_the_total_counts_everything() -> None:
    many = [_deployment(f"replica-{i:03d}", "fraud") for i in range(serving.MAX_LISTED + 7)]
    index = _index(_artifact("fraud", "s3://models/fraud/"), *many)

    found = index.desired(NS)[(NS, "fraud")]
    assert found.total == serving.MAX_LISTED + 7
    assert len(found.workloads) == serving.MAX_LISTED
    assert found.workloads[0].name == "replica-000"


def test_the_operators_own_deployments_are_not_workloads() -> None:
    monitor = _deployment("ms-drift-deploy-fraud", "fraud")
    monitor["metadata"]["labels"] = {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY}
    monitor["metadata"]["annotations"] = {
        ownership.HASH_ANNOTATION: "x",
        ownership.WORKLOAD_ANNOTATION: f"Deployment/{NS}/fraud",
    }
    index = _index(_artifact("fraud", "s3://models/fraud/"), monitor)

    assert _served(index, "fraud") == []


def test_a_check_of_the_artifact_does_not_erase_where_it_runs() -> None:
    status = artifacts.ModelArtifactStatus(
        served_by=serving.ServedBy(
            workloads=[serving.ServingWorkload(kind="Deployment", namespace=NS, name="fraud")],
            total=1,
        )
    )

    assert "servedBy" not in artifact_handlers.status_patch(status)


async def test_the_writer_outlives_an_unreachable_api_server() -> None:
    # A real client against a port nothing listens on: the connection error (not an
    # ApiException) must be a failure to retry, not the end of the writer task.
    from kubernetes import client

    from modelshield.controllers import writing

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    configuration.retries = 0
    kube = writing.Kube(client.ApiClient(configuration), max_workers=1)
    recorder = recording.Recorder(kube, delay=0.01)
    recorder.index = _index(_artifact("fraud", "s3://models/fraud/"), _deployment("fraud", "fraud"))
    recorder.start()
    try:
        recorder.mark(NS)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if recorder.failures:
                break
        assert recorder.failures >= 1
        assert all(not task.done() for task in recorder._tasks)
        assert recorder.writes == 0
    finally:
        await recorder.stop()
        kube.close()
