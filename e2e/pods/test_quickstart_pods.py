"""The quickstart (docs/quickstart.md) against the chart installed on the local node: the
webhook and the operator are the chart's pods running the image built from this tree.

Every block marked ``<!-- quickstart: NAME -->`` runs with bash, in order, verbatim (the
namespace is the page's `ml-demo`): the webhook's rollout and `helm test`, the namespace,
the reference profile, the policy, the unsigned model server (refused, with the denial
message), the signed one (admitted, and its pod Running on the node), its NetworkPolicy and
drift monitor (a pod too), and the policy's status. The page's images are made here: a small
HTTP server built on this tree's image, pushed to a real registry twice with different
content (`v1` and `experimental`, as the page's `crane mutate` makes them differ), and `v1`
signed by digest with the real cosign. The registry is named by the node's address, which
pods reach: the webhook and operator pods verify the signature there, and the node pulls
from it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from e2e.pods.harness import LOCAL_IMAGE, NodeCluster, Release, docker_client
from e2e.pods.workloads import POD_TIMEOUT_SECONDS, get_json
from e2e.quickstartdoc import DOC_NAMESPACE, STEPS, Shell, quickstart_blocks
from tests.support import chartrendering as rendering
from tests.support import localtools

WAIT_SECONDS = 180.0
# The page's model server: any small HTTP server on 8080 that runs as user 101 on a
# read-only root filesystem. This tree's image has Python; nothing else is pullable here.
SERVER_DOCKERFILE = """\
FROM {base}
LABEL modelshield.demo.track={track}
ENTRYPOINT ["python", "-m", "http.server", "8080", "--directory", "/opt/modelshield"]
"""


@dataclass(frozen=True)
class DemoImages:
    registry: str
    signed: str
    public_key: str


def _docker(*arguments: str, stdin: str | None = None) -> str:
    completed = subprocess.run(
        [docker_client(), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"docker {' '.join(arguments)}: {completed.stderr}", pytrace=False)
    return completed.stdout


@pytest.fixture(scope="module")
def demo_images(
    node_cluster: NodeCluster,
    pod_registry: str,
    modelshield_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> DemoImages:
    """demo-model:v1 and :experimental (different digests), v1 signed by digest. Built on
    this tree's image (`modelshield_image` builds it and pushes it for the node)."""
    pushed_to = node_cluster.registry_host  # the same registry, by its loopback name
    digests = {}
    for track in ("v1", "experimental"):
        local = f"{pushed_to}/demo-model:{track}"
        dockerfile = SERVER_DOCKERFILE.format(base=LOCAL_IMAGE, track=track)
        _docker("build", "--quiet", "--tag", local, "-", stdin=dockerfile)
        _docker("push", local)
        repo_digests = json.loads(
            _docker("image", "inspect", "--format", "{{json .RepoDigests}}", local)
        )
        digests[track] = next(d for d in repo_digests if d.startswith(f"{pushed_to}/")).split("@")[
            1
        ]
        _docker("rmi", local)
    assert digests["v1"] != digests["experimental"], digests
    cosign = localtools.Cosign(
        localtools.require_tool("MODELSHIELD_COSIGN"), tmp_path_factory.mktemp("cosign")
    )
    key, public_key = cosign.generate_key_pair("release")
    signed = f"{pod_registry}/demo-model@{digests['v1']}"
    cosign.sign(signed, key)
    return DemoImages(pod_registry, signed, public_key)


@dataclass
class Walk:
    """What a user saw at each step."""

    ready: subprocess.CompletedProcess[str]
    denial: subprocess.CompletedProcess[str]
    admitted: subprocess.CompletedProcess[str]
    controls: str
    status_table: str
    status: dict[str, Any]


def _wait(what: str, probe: Any, diagnose: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT_SECONDS:.0f} s\n{diagnose()}", pytrace=False)
        time.sleep(1)
    return found


@pytest.fixture(scope="module")
def walk(
    node_cluster: NodeCluster,
    installed_chart: Release,
    demo_images: DemoImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Walk]:
    """Every block of the page, in order, verbatim; `ml-demo` is deleted afterwards."""
    kubectl = node_cluster.kubectl
    blocks = quickstart_blocks()
    assert tuple(blocks) == STEPS
    workdir = tmp_path_factory.mktemp("user")
    (workdir / "cosign.pub").write_text(demo_images.public_key)
    shell = Shell(
        node_cluster.control_plane.binaries.kubectl,
        node_cluster.control_plane.kubeconfig_path,
        workdir,
        {"REGISTRY": demo_images.registry, "SIGNED": demo_images.signed},
        tool_dirs=[rendering.helm_path().parent],
        timeout_seconds=WAIT_SECONDS,
    )

    def diagnose() -> str:
        operator = kubectl("-n", installed_chart.namespace, "logs",
                           f"deployment/{installed_chart.name}-operator", check=False)  # fmt: skip
        described = kubectl("-n", DOC_NAMESPACE, "describe", "pods", check=False)
        return operator.stdout[-3000:] + described.stdout[-3000:]

    try:
        ready = shell(blocks["ready"])
        shell(blocks["namespace"])
        shell(blocks["reference"])
        shell(blocks["policy"])
        # The webhook pods see the policy through their watch a moment later: wait until a
        # server-side dry run of the unsigned Deployment is refused, then do it for real.
        dry_run = blocks["unsigned"].replace("apply -f -", "apply --dry-run=server -f -")
        _wait("the webhook enforcing the new policy",
              lambda: shell(dry_run, check=False).returncode != 0, diagnose)  # fmt: skip
        denial = shell(blocks["unsigned"], check=False)
        admitted = shell(blocks["signed"], check=False)

        def controls() -> str | None:
            output = shell(blocks["controls"]).stdout
            # kubectl prints a table's header only when it has rows.
            listed = "POD-SELECTOR" in output and "deployment.apps/" in output
            return output if listed and "service/" in output else None

        shown = _wait("the NetworkPolicy and the drift monitor", controls, diagnose)

        def settled() -> dict[str, Any] | None:
            policy = get_json(kubectl, "-n", DOC_NAMESPACE, "msp", "demo-model")
            status: dict[str, Any] = policy.get("status") or {}
            current = status.get("observedGeneration") == policy["metadata"]["generation"]
            counted = status.get("governed") == 1 and status.get("violating") == 0
            return status if current and counted else None

        status = _wait("the policy's status: one governed workload, none violating",
                       settled, diagnose)  # fmt: skip
        status_table = shell(blocks["status"]).stdout
        yield Walk(ready, denial, admitted, shown, status_table, status)
    finally:
        kubectl("delete", "namespace", DOC_NAMESPACE, "--wait=false", check=False)


def test_the_webhook_pods_roll_out_and_helm_test_passes(walk: Walk) -> None:
    assert 'deployment "modelshield-webhook" successfully rolled out' in walk.ready.stdout
    assert "Phase:          Succeeded" in walk.ready.stdout, walk.ready.stdout


def test_the_unsigned_model_server_is_refused_by_the_webhook_pods(
    walk: Walk, node_cluster: NodeCluster
) -> None:
    assert walk.denial.returncode != 0, walk.denial.stdout
    denial = walk.denial.stderr
    assert 'admission webhook "workloads.validate.modelshield.dev" denied the request' in denial
    assert f"[ModelSecurityPolicy {DOC_NAMESPACE}/demo-model]" in denial, denial
    assert "spec.template.spec.containers[0].image" in denial, denial
    assert "has no signature" in denial, denial
    assert "sign it with the key of one of: release" in denial, denial
    kubectl = node_cluster.kubectl
    missing = kubectl("-n", DOC_NAMESPACE, "get", "deployment", "demo-model-experimental",
                      check=False)  # fmt: skip
    assert missing.returncode != 0
    pods = get_json(kubectl, "-n", DOC_NAMESPACE, "pods", "-l", "track=experimental")
    assert pods["items"] == []


def test_the_signed_model_server_runs_on_the_node(
    walk: Walk, node_cluster: NodeCluster, demo_images: DemoImages
) -> None:
    assert walk.admitted.returncode == 0, walk.admitted.stderr
    assert "deployment.apps/demo-model created" in walk.admitted.stdout
    kubectl = node_cluster.kubectl
    deadline = time.monotonic() + POD_TIMEOUT_SECONDS
    while (
        get_json(kubectl, "-n", DOC_NAMESPACE, "deployment", "demo-model")
        .get("status", {})
        .get("readyReplicas")
        != 1
    ):
        if time.monotonic() > deadline:
            described = kubectl("-n", DOC_NAMESPACE, "describe", "pods", check=False).stdout
            pytest.fail(f"the signed server did not become Ready:\n{described[-4000:]}")
        time.sleep(1)
    (pod,) = get_json(kubectl, "-n", DOC_NAMESPACE, "pods", "-l", "track=stable")["items"]
    assert pod["status"]["phase"] == "Running", pod["status"]
    # $SIGNED, by digest, pulled by the node from the address the webhook verified it at.
    assert pod["spec"]["containers"][0]["image"] == demo_images.signed
    (container,) = pod["status"]["containerStatuses"]
    assert container["imageID"].endswith(demo_images.signed.split("@")[1]), container


def test_switching_the_running_server_to_the_unsigned_image_is_refused(
    walk: Walk, node_cluster: NodeCluster, demo_images: DemoImages
) -> None:
    """An UPDATE, not only a CREATE: `kubectl set image` to the unsigned tag."""
    changed = node_cluster.kubectl(
        "-n", DOC_NAMESPACE, "set", "image", "deployment/demo-model",
        f"server={demo_images.registry}/demo-model:experimental", check=False,
    )  # fmt: skip
    assert changed.returncode != 0, changed.stdout
    assert "has no signature" in changed.stderr, changed.stderr
    deployment = get_json(node_cluster.kubectl, "-n", DOC_NAMESPACE, "deployment", "demo-model")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == demo_images.signed


def test_the_operator_s_controls_appear_and_the_drift_monitor_runs(
    walk: Walk, node_cluster: NodeCluster
) -> None:
    kubectl = node_cluster.kubectl
    (policy,) = yaml.safe_load(
        kubectl("-n", DOC_NAMESPACE, "get", "networkpolicies", "-o", "yaml",
                "-l", "app.kubernetes.io/managed-by=modelshield").stdout
    )["items"]  # fmt: skip
    # The signed server's pods, by their template's labels; not the refused experimental one.
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app": "demo-model",
        "track": "stable",
    }, policy
    ports = [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]]
    assert ports == [8080], policy
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        (monitor,) = get_json(kubectl, "-n", DOC_NAMESPACE, "deployments", "-l",
                              "app.kubernetes.io/component=drift-monitor")["items"]  # fmt: skip
        if monitor.get("status", {}).get("readyReplicas") == 1:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the drift monitor did not become Ready: {monitor.get('status')}")
        time.sleep(1)


def test_the_policy_s_status_is_ready_and_counts_the_workload(walk: Walk) -> None:
    conditions = {condition["type"]: condition for condition in walk.status["conditions"]}
    assert conditions["Ready"]["status"] == "True", conditions
    header, row = walk.status_table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "ENFORCEMENT", "READY", "GOVERNED", "VIOLATING"]
    assert row.split()[:5] == ["demo-model", "Enforce", "True", "1", "0"], walk.status_table
