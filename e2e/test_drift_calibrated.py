"""The drift monitor the operator deploys for a policy with ``falseAlarmRate`` alarms at the
profile's calibrated thresholds, on a real API server (issue 18).

Real parts: scikit-learn's breast cancer rows (569, 30 features), split once with a fixed
seed into a reference (285 rows) and held-out rows (284); the reference profile built by
``modelshield drift profile`` with a calibration for the policy's window; the policy, its
reference ConfigMap and the workload applied to the API server; ``modelshield operator`` as
a process (the operator fixtures of conftest.py) writing the monitor's ConfigMap and
Deployment; and the monitor started from those objects as read back from the API server:
the Deployment's command and args, its ConfigMap volumes written where it mounts them, its
ServiceAccount's token (a TokenRequest, as kubelet's projected token) and the
``KUBERNETES_SERVICE_*`` environment. It listens on a free loopback port instead of the
container's 8080 (``--port``/``--host`` appended), the one difference from the pod.

Measured before writing the assertions (this split, window 100): on the profile's own bins
the clean held-out windows have PSI up to 0.221 and 0.259 on some feature, over the
policy's default threshold 0.2 on 2 and 5 features (what a monitor without
``falseAlarmRate`` scores). The calibrated monitor merges thin bins for its window (each
of the 285-row reference's tenths expects 9.8 rows of 100: pairs merged), where the same
windows have PSI up to 0.147 and 0.163 and the thresholds at 1 % over 30 features are
0.34 to 0.76, so they stay calm. Malignant tumours only (a label subpopulation) push 22
features over (18 before the merge).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import yaml
from kubernetes import client
from numpy.typing import NDArray
from prometheus_client import parser
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

from e2e.clients import REPOSITORY_ROOT, Cluster, Kubectl
from e2e.operators import OperatorProcess, apply, deployment, get_json, policy, wait_for
from modelshield.api.v1alpha1 import policies
from modelshield.drift import (
    calibration,
    config,
    datasets,
    layouts,
    monitoring,
    notifying,
    payloads,
)
from tests.support import driftprocesses as processes
from tests.support import driftsynthetic as synthetic

pytestmark = pytest.mark.e2e

SEED = 0
REFERENCE_ROWS = 285
WINDOW = 100
FALSE_ALARM_RATE = 0.01
WORKLOAD = "cancer"
MONITOR = f"ms-drift-deploy-{WORKLOAD}"
DRIFT_KINDS = ("deployment", "configmap", "service", "serviceaccount", "role", "rolebinding")
DRIFT = {
    "referenceProfile": {"name": "reference", "key": "profile.json"},
    "falseAlarmRate": FALSE_ALARM_RATE,
    "window": WINDOW,
}
DEFAULT_THRESHOLD = policies.DriftMonitoring.model_fields["threshold"].default
EVENT_MESSAGE = re.compile(
    r"Drift detected on request feature '(?P<feature>[^']+)': PSI (?P<score>\S+) > "
    r"threshold (?P<threshold>\S+) \(window (?P<window>\d+)\)"
)


class Rows:
    """The data set split once: reference CSV written, held-out rows and their labels kept."""

    def __init__(self, directory: pathlib.Path) -> None:
        data = load_breast_cancer()
        names = [name.replace(" ", "_") for name in data.feature_names]
        order = np.random.default_rng(SEED).permutation(len(data.target))
        reference = data.data[order[:REFERENCE_ROWS]]
        self.held_out: NDArray[np.float64] = data.data[order[REFERENCE_ROWS:]]
        self.malignant: NDArray[np.float64] = self.held_out[
            data.target[order[REFERENCE_ROWS:]] == 0
        ]
        self.csv = directory / "reference.csv"
        lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in reference]
        self.csv.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def calibrated_profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, pathlib.Path]:
    """The reference profile, calibrated for the policy's window by the real CLI."""
    directory = tmp_path_factory.mktemp("drift-calibrated")
    rows = Rows(directory)
    out = directory / "profile.json"
    command = [sys.executable, "-m", "modelshield.cli.main", "drift", "profile", str(rows.csv)]
    command += ["--out", str(out), "--window", str(WINDOW), "--false-alarm-rate"]
    made = subprocess.run(
        [*command, str(FALSE_ALARM_RATE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPOSITORY_ROOT,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return rows, out


def _mounted(
    kubectl: Kubectl,
    namespace: str,
    pod: dict[str, Any],
    container: dict[str, Any],
    root: pathlib.Path,
) -> dict[str, pathlib.Path]:
    """Writes each ConfigMap volume the container mounts as kubelet would; mountPath -> host dir."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts: dict[str, pathlib.Path] = {}
    for mount in container["volumeMounts"]:
        directory = root / mount["mountPath"].strip("/")
        directory.mkdir(parents=True)
        mounts[mount["mountPath"]] = directory
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue  # an emptyDir: the empty directory is all there is
        data = get_json(kubectl, namespace, "configmap", source["name"])["data"]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            (directory / item["path"]).write_text(data[item["key"]])
    return mounts


def _on_host(argument: str, mounts: dict[str, pathlib.Path]) -> str:
    for mount_path, directory in mounts.items():
        if argument.startswith(mount_path.rstrip("/") + "/"):
            return str(directory / argument[len(mount_path.rstrip("/")) + 1 :])
    return argument


def _service_account(
    cluster: Cluster, namespace: str, account: str, directory: pathlib.Path
) -> dict[str, str]:
    """The pod's service-account directory (a fresh token of its account) and environment."""
    token = client.CoreV1Api(cluster.api_client).create_namespaced_service_account_token(
        account,
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    assert token.status is not None
    directory.mkdir()
    (directory / "token").write_text(str(token.status.token))
    (directory / "namespace").write_text(namespace)
    url, ca_file = cluster.api_server(directory.parent / "api-server")
    shutil.copy(ca_file, directory / "ca.crt")
    server = urlparse(url)
    return {
        "KUBERNETES_SERVICE_HOST": str(server.hostname),
        "KUBERNETES_SERVICE_PORT": str(server.port),
        notifying.SERVICE_ACCOUNT_DIR_ENV: str(directory),
    }


def _start_as_deployed(
    cluster: Cluster, kubectl: Kubectl, namespace: str, root: pathlib.Path
) -> tuple[processes.MonitorProcess, pathlib.Path]:
    """The monitor Deployment's container run as a host process; (process, its config file)."""
    pod = get_json(kubectl, namespace, "deployment", MONITOR)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = _mounted(kubectl, namespace, pod, container, root)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT / "operator")}
    environment |= {item["name"]: item["value"] for item in container.get("env") or []}
    if pod["automountServiceAccountToken"]:
        account = root / "serviceaccount"
        environment |= _service_account(cluster, namespace, pod["serviceAccountName"], account)
    # The image's entrypoint is this repository's console script; the venv has the same.
    executable = shutil.which(
        container["command"][0], path=str(pathlib.Path(sys.executable).parent)
    )
    assert executable is not None, container["command"]
    args = [_on_host(argument, mounts) for argument in container["args"]]
    port = processes.free_port()
    log = root / "monitor.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [
                executable,
                *container["command"][1:],
                *args,
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=environment,
        )
    monitor = processes.MonitorProcess(process, port, log)
    # Generous: start-up imports took 14 s of a 30 s deadline at load 15 (tests/drift).
    wait_for(
        "the monitor ready or exited", lambda: process.poll() is not None or _ready(monitor), 120
    )
    assert process.poll() is None, f"the monitor exited:\n{log.read_text()}"
    return monitor, pathlib.Path(args[args.index("--config") + 1])


def _ready(monitor: processes.MonitorProcess) -> bool:
    try:
        return monitor.get("/readyz")[0] == 200
    except OSError:
        return False


def _samples(monitor: processes.MonitorProcess, name: str) -> dict[str, float]:
    """One metric's samples keyed by their feature (or stream) label."""
    _, text = monitor.get("/metrics")
    return {
        sample.labels.get("feature") or sample.labels.get("stream", ""): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("statistic", "PSI") == "PSI"
    }


def _send(monitor: processes.MonitorProcess, rows: NDArray[np.float64], windows: int) -> None:
    """Posts rows as the KServe logger does (binary CloudEvents, 25 rows each), then waits
    until the monitor has scored ``windows`` windows in all."""
    for start in range(0, len(rows), 25):
        body = json.dumps({"instances": rows[start : start + 25].tolist()}).encode()
        assert monitor.post(body, synthetic.binary_headers("request"))[0] == 202
    monitor.wait_for('modelshield_drift_windows_total{stream="request"}', windows, timeout=30)


def _drift_events(
    cluster: Cluster, namespace: str, at_least: int = 0
) -> list[client.CoreV1Event] | None:
    """The workload's DriftDetected Events; None while there are fewer than ``at_least``."""
    listed = client.CoreV1Api(cluster.api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={WORKLOAD}"
    )
    found = [event for event in listed.items if event.reason == "DriftDetected"]
    return found if len(found) >= at_least else None


def test_the_operators_monitor_alarms_at_the_calibrated_thresholds(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    calibrated_profile: tuple[Rows, pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    rows, profile_file = calibrated_profile
    kubectl(
        "-n",
        namespace,
        "create",
        "configmap",
        "reference",
        f"--from-file=profile.json={profile_file}",
    )
    spec = {"selector": {"matchLabels": {"governed": "yes"}}, "monitoring": {"drift": DRIFT}}
    apply(kubectl, namespace, policy("calibrated", spec), deployment(WORKLOAD, {"governed": "yes"}))
    operator = start_operator()
    for kind in DRIFT_KINDS:
        wait_for(
            f"{kind} {MONITOR} in {namespace}; operator log:\n{operator.tail()}",
            lambda kind=kind: get_json(kubectl, namespace, kind, MONITOR),  # type: ignore[misc]
        )

    # What the operator wrote: the policy's rate and window, the profile unchanged.
    written = get_json(kubectl, namespace, "configmap", MONITOR)["data"]
    monitor_config = yaml.safe_load(written["config.yaml"])
    assert (monitor_config.get("falseAlarmRate"), monitor_config["window"]) == (
        FALSE_ALARM_RATE,
        WINDOW,
    )
    assert written["profile.json"] == profile_file.read_text()

    monitor, config_file = _start_as_deployed(cluster, kubectl, namespace, tmp_path / "pod")
    try:
        settings = config.load(config_file, {})
        profile = datasets.read_profile(pathlib.Path(settings.profile))
        columns = monitoring.request_columns(settings, profile)
        layout = layouts.build(profile, columns, settings.features)
        # The policy's rate over every watched feature (Bonferroni, as the monitor does).
        tail = FALSE_ALARM_RATE / len(layout.names)
        stored = calibration.stored(profile, layout, settings.window, tail)
        assert stored is not None, "the profile's calibration does not fit the deployed monitor"
        calibrated = dict(
            zip(
                layout.names,
                stored[policies.DriftStatistic.PSI].thresholds(tail).tolist(),
                strict=True,
            )
        )
        assert "(null tables from the profile's calibration)" in monitor.log.read_text()
        assert _samples(monitor, "modelshield_drift_threshold") == pytest.approx(
            calibrated, rel=1e-9
        )
        assert min(calibrated.values()) > DEFAULT_THRESHOLD

        # Clean held-out rows: calm, though a monitor with the default threshold (on the
        # profile's own bins: no falseAlarmRate, no merge) alarms on them.
        assert len(rows.held_out) >= 2 * WINDOW
        fixed = monitoring.Monitor(settings.model_copy(update={"false_alarm_rate": None}), profile)
        for window in (1, 2):
            clean = rows.held_out[(window - 1) * WINDOW : window * WINDOW]
            (unmerged,) = fixed.add(
                [payloads.Batch("request", clean, np.empty((WINDOW, 0), np.intp))]
            )
            assert any(unmerged.active), unmerged.alarm_scores
            _send(monitor, clean, window)
            alarmed = [f for f, on in _samples(monitor, "modelshield_drift_detected").items() if on]
            assert alarmed == [], f"clean window {window} alarmed"
            assert (
                _samples(monitor, "modelshield_drift_dataset_p_value")["request"]
                >= FALSE_ALARM_RATE
            )
        assert _drift_events(cluster, namespace) == []

        # A shifted stream: malignant tumours only (108 of the held-out rows).
        assert len(rows.malignant) >= WINDOW
        _send(monitor, rows.malignant[:WINDOW], 3)
        drifted = _samples(monitor, "modelshield_drift_drifted_features")["request"]
        assert _samples(monitor, "modelshield_drift_dataset_p_value")["request"] < FALSE_ALARM_RATE
        detected = {
            f for f, value in _samples(monitor, "modelshield_drift_detected").items() if value
        }
        assert len(detected) == drifted > 0
        events = wait_for(
            f"{drifted:.0f} DriftDetected Events; monitor log:\n{monitor.log.read_text()}",
            lambda: _drift_events(cluster, namespace, at_least=int(drifted)),
        )
    finally:
        assert monitor.stop() == 0
    uid = get_json(kubectl, namespace, "deployment", WORKLOAD)["metadata"]["uid"]
    seen = set()
    for event in events:
        assert event.source is not None
        assert (event.type, event.source.component) == ("Warning", notifying.COMPONENT)
        involved = event.involved_object
        assert (involved.api_version, involved.kind, involved.name, involved.uid) == (
            "apps/v1",
            "Deployment",
            WORKLOAD,
            uid,
        )
        match = EVENT_MESSAGE.fullmatch(str(event.message))
        assert match is not None, event.message
        feature = match["feature"]
        assert match["window"] == "3"
        assert match["threshold"] == f"{calibrated[feature]:.4g}"
        assert float(match["score"]) > calibrated[feature]
        seen.add(feature)
    assert seen == detected
