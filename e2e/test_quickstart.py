"""The quickstart (docs/quickstart.md), walked as a user would, on a real API server.

Pods cannot run on the local control plane, so modelshield's own pods are replaced by
local processes, set up the way the chart sets up its pods: the chart's CRDs, its
ServiceAccounts and RBAC (each process authenticates with a token of its chart
ServiceAccount, so the chart's least-privilege rules are what it runs under), its webhook
configurations (pointed at the local webhook by URL instead of the Service), and the
operator's command line from the chart's Deployment. Images live in a real registry and
are signed by the real cosign.

Then the page's blocks marked ``<!-- quickstart: NAME -->`` are run with bash, in order,
with kubectl and modelshield on PATH: namespace, reference profile, policy, the unsigned
server (refused, with the denial message), the signed one (admitted), its NetworkPolicy
and drift monitor, and the policy's status. The page's first block (`ready`: the webhook's
rollout and `helm test`) needs pods: here the `helm test` pod's command runs as a local
process instead; e2e/pods/test_quickstart_pods.py walks every block against the chart's
pods on a local node.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import yaml

from e2e import clients
from e2e.clients import Cluster, Kubectl
from e2e.quickstartdoc import DOC_NAMESPACE, STEPS, Shell, quickstart_blocks
from modelshield.supplychain.images import registries
from tests.support import chartrendering as rendering
from tests.support import localtools, pki

WAIT_SECONDS = 90.0
#: Seconds between the test operator's audits (the chart's default is minutes).
AUDIT_INTERVAL_SECONDS = 3
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll every half second: the quickstart waits on slower things (audit, rollouts)."""
    return clients.wait_for(what, probe, timeout, interval=0.5)


def test_the_quickstart_has_every_step() -> None:
    blocks = quickstart_blocks()
    assert tuple(blocks) == STEPS
    assert DOC_NAMESPACE in blocks["namespace"]


@dataclass
class Images:
    """The quickstart's two images in a local registry; the released one signed by digest."""

    registry: str
    signed: str
    public_key: str


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    registry = localtools.LocalRegistry(
        localtools.require_tool("MODELSHIELD_REGISTRY"), tmp_path_factory.mktemp("registry")
    ).start()
    cosign = localtools.Cosign(
        localtools.require_tool("MODELSHIELD_COSIGN"), tmp_path_factory.mktemp("cosign")
    )
    key, public_key = cosign.generate_key_pair("release")

    async def push() -> str:
        client = registries.RegistryClient(registry.options())
        try:
            digest = await localtools.push_image(
                client, registry.host, "demo-model", "v1", "demo model v1"
            )
            await localtools.push_image(
                client, registry.host, "demo-model", "experimental", "demo model, unreviewed"
            )
            return digest
        finally:
            await client.close()

    signed = f"{registry.host}/demo-model@{asyncio.run(push())}"
    cosign.sign(signed, key)
    try:
        yield Images(registry.host, signed, public_key)
    finally:
        registry.stop()


class Process:
    """A modelshield process with its log; stopped (then killed) at the end."""

    def __init__(self, name: str, command: list[str], log_path: pathlib.Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def alive(self) -> bool:
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited: {self.log_path.read_text()[-4000:]}")
        return True

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


@dataclass
class Installation:
    """What the chart set up, with local processes standing in for its pods."""

    release: str
    namespace: str
    webhook: Process
    operator: Process
    webhook_url: str
    ca_file: pathlib.Path
    manifests: list[dict[str, Any]]


def _service_account_kubeconfig(
    cluster: Cluster, kubectl: Kubectl, account: str, namespace: str, path: pathlib.Path
) -> pathlib.Path:
    """The cluster's kubeconfig with a token of the ServiceAccount instead of the admin's."""
    token = kubectl("create", "token", account, "--namespace", namespace, "--duration=2h")
    config = yaml.safe_load(cluster.kubeconfig_path.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["users"] = [{"name": account, "user": {"token": token.stdout.strip()}}]
    context["context"]["user"] = account
    config["contexts"] = [context]
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _modelshield(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "modelshield.cli.main", *arguments]


@pytest.fixture(scope="module")
def installation(
    cluster: Cluster,
    kubectl: Kubectl,
    images: Images,
    modelshield_crds: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installation]:
    if not cluster.started_locally:
        # Local processes are reachable only from a local API server; on kind the chart's
        # own pods would run, but the test registry (127.0.0.1) is not reachable from them.
        pytest.skip(
            "the quickstart walk runs modelshield as local processes, which only the local "
            "control plane can call back; the kind variant needs a registry reachable from "
            "the kind node (not set up by e2e/kind.sh yet)"
        )
    suffix = uuid.uuid4().hex[:6]
    release = f"modelshield-qs-{suffix}"
    namespace = f"modelshield-qs-{suffix}"
    directory = tmp_path_factory.mktemp("installation")
    manifests = rendering.parse(rendering.render_text({}, release=release, namespace=namespace))
    kubectl("create", "namespace", namespace)
    applied: list[dict[str, Any]] = []
    processes: list[Process] = []
    try:
        # The chart's CRDs (the same as crds/; server-side: they outgrow the annotation).
        crds = rendering.of_kind(manifests, "CustomResourceDefinition")
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelshield-e2e",
            "--filename=-",
            input_text=yaml.safe_dump_all(crds),
        )
        # The chart's identities and RBAC, exactly as rendered.
        identities = [
            m
            for m in manifests
            if m["kind"]
            in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
            and rendering.hook_of(m) is None
        ]
        kubectl("apply", "--filename=-", input_text=yaml.safe_dump_all(identities))
        applied += identities

        authority = pki.Authority.create("modelshield-quickstart-ca")
        ca_file = directory / "ca.crt"
        ca_file.write_bytes(authority.pem)
        cert_file, key_file = pki.write_serving_pair(authority, directory, f"{release}-webhook")
        port = localtools.free_port()
        webhook_args = rendering.one(manifests, "Deployment", f"{release}-webhook")["spec"][
            "template"
        ]["spec"]["containers"][0]["args"]
        webhook = Process(
            "the webhook",
            _modelshield(
                *[a for a in webhook_args if not a.startswith(("--cert", "--key", "--port"))],
                f"--cert={cert_file}",
                f"--key={key_file}",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--insecure-registry={images.registry}",
                "--kubeconfig="
                + str(
                    _service_account_kubeconfig(
                        cluster, kubectl, f"{release}-webhook", namespace, directory / "webhook.kc"
                    )
                ),
            ),
            directory / "webhook.log",
        )
        processes.append(webhook)
        wait_for(
            f"the webhook to sync its caches (log: {webhook.log_path})",
            lambda: webhook.alive() and "listening on" in webhook.log() and _ready(port, ca_file),
        )

        # The chart's webhook configurations, pointed at the local process by URL.
        ca_bundle = base64.b64encode(authority.pem).decode()
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            configuration = rendering.one(manifests, kind)
            for hook in configuration["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {
                    "url": f"https://127.0.0.1:{port}{path}",
                    "caBundle": ca_bundle,
                }
            kubectl("apply", "--filename=-", input_text=yaml.safe_dump(configuration))
            applied.append(configuration)

        # The operator, with the chart's command line (its ports moved to free ones, and
        # certificates left alone: the local webhook has its own).
        operator_args = rendering.one(manifests, "Deployment", f"{release}-operator")["spec"][
            "template"
        ]["spec"]["containers"][0]["args"]
        operator = Process(
            "the operator",
            _modelshield(
                *[
                    a
                    for a in operator_args
                    if not a.startswith(
                        (
                            "--metrics-port",
                            "--liveness",
                            "--manage-certificates",
                            "--audit-interval",
                        )
                    )
                ],
                f"--metrics-port={localtools.free_port()}",
                # The operator verifies images at its background audit (the first one a full
                # interval after start): seconds here instead of the chart's minutes.
                f"--audit-interval={AUDIT_INTERVAL_SECONDS}",
                # The test's registry speaks plain HTTP, as for the webhook above.
                f"--insecure-registry={images.registry}",
                "--kubeconfig="
                + str(
                    _service_account_kubeconfig(
                        cluster, kubectl, f"{release}-operator", namespace, directory / "op.kc"
                    )
                ),
            ),
            directory / "operator.log",
        )
        processes.append(operator)
        yield Installation(
            release, namespace, webhook, operator, f"https://127.0.0.1:{port}", ca_file, manifests
        )
    finally:
        for obj in reversed(applied):
            if obj["kind"] != "ServiceAccount":
                kubectl(
                    "delete",
                    "--ignore-not-found",
                    "--wait=false",
                    f"{obj['kind']}/{obj['metadata']['name']}",
                    *(["--namespace", namespace] if obj["metadata"].get("namespace") else []),
                    check=False,
                )
        for process in processes:
            process.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _ready(port: int, ca_file: pathlib.Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/readyz", timeout=2, context=context
        ) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError as error:  # 503 until synced; it holds the socket
        error.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Walk:
    """What a user saw at each step of the quickstart."""

    namespace: str
    denial: subprocess.CompletedProcess[str]
    admitted: subprocess.CompletedProcess[str]
    controls: str
    status_table: str
    policy: dict[str, Any]


@pytest.fixture(scope="module")
def walk(
    cluster: Cluster,
    kubectl: Kubectl,
    images: Images,
    installation: Installation,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Walk]:
    """Every step of the page, in order; the namespace is deleted afterwards."""
    demo = f"qs-demo-{uuid.uuid4().hex[:6]}"
    blocks = {name: body.replace(DOC_NAMESPACE, demo) for name, body in quickstart_blocks().items()}
    workdir = tmp_path_factory.mktemp("user")
    (workdir / "cosign.pub").write_text(images.public_key)
    shell = Shell(
        cluster.kubectl_path,
        cluster.kubeconfig_path,
        workdir,
        {"REGISTRY": images.registry, "SIGNED": images.signed},
    )
    try:
        yield _walk(shell, kubectl, blocks, demo, installation)
    finally:
        kubectl("delete", "namespace", demo, "--wait=false", check=False)


def _walk(
    shell: Shell, kubectl: Kubectl, blocks: dict[str, str], demo: str, installation: Installation
) -> Walk:
    shell(blocks["namespace"])
    shell(blocks["reference"])
    shell(blocks["policy"])
    # The webhook sees the policy through its watch a moment later: wait until a
    # server-side dry run of the unsigned Deployment is refused, then do it for real.
    dry_run = blocks["unsigned"].replace("apply -f -", "apply --dry-run=server -f -")
    wait_for(
        f"the webhook to enforce the new policy (log: {installation.webhook.log_path})",
        lambda: shell(dry_run, check=False).returncode != 0,
    )
    denial = shell(blocks["unsigned"], check=False)
    admitted = shell(blocks["signed"], check=False)

    def controls() -> str | None:
        installation.operator.alive()
        output = shell(blocks["controls"]).stdout
        # Each of the block's commands must show its own rows: counting lines alone
        # passed with the drift monitor's three kinds before the NetworkPolicy existed.
        # (kubectl prints a table's header only when it has rows.)
        network_policy_listed = "POD-SELECTOR" in output
        drift_monitor_listed = "deployment.apps/" in output and "service/" in output
        return output if network_policy_listed and drift_monitor_listed else None

    shown = wait_for(
        f"the NetworkPolicy and the drift monitor (log: {installation.operator.log_path})",
        controls,
    )

    def reported() -> dict[str, Any] | None:
        installation.operator.alive()
        policy: dict[str, Any] = yaml.safe_load(
            kubectl("get", "msp", "demo-model", "--namespace", demo, "--output=yaml").stdout
        )
        state = policy.get("status") or {}
        current = state.get("observedGeneration") == policy["metadata"]["generation"]
        return policy if current and state.get("governed") == 1 else None

    policy = wait_for(
        f"the policy's status to count the workload (log: {installation.operator.log_path})",
        reported,
    )
    status_table = shell(blocks["status"]).stdout
    return Walk(demo, denial, admitted, shown, status_table, policy)


def test_unsigned_model_server_is_refused_with_a_message_that_says_why(
    walk: Walk, kubectl: Kubectl
) -> None:
    assert walk.denial.returncode != 0, walk.denial.stdout
    denial = walk.denial.stderr
    assert 'admission webhook "workloads.validate.modelshield.dev" denied the request' in denial
    assert f"[ModelSecurityPolicy {walk.namespace}/demo-model]" in denial, denial
    assert "spec.template.spec.containers[0].image" in denial, denial
    assert "has no signature" in denial, denial
    assert "sign it with the key of one of: release" in denial, denial
    missing = kubectl(
        "get", "deployment", "demo-model-experimental", "--namespace", walk.namespace, check=False
    )
    assert missing.returncode != 0


def test_signed_model_server_is_admitted(walk: Walk) -> None:
    assert walk.admitted.returncode == 0, walk.admitted.stderr
    assert "deployment.apps/demo-model created" in walk.admitted.stdout


def test_network_policy_and_drift_monitor_appear(walk: Walk, kubectl: Kubectl) -> None:
    """What the operator made: a NetworkPolicy selecting the model server's pods and a
    drift monitor running the configured image with the quickstart's profile."""
    assert "networkpolicy" in walk.controls.lower() or "POD-SELECTOR" in walk.controls
    policies = yaml.safe_load(
        kubectl(
            "get",
            "networkpolicies",
            "--namespace",
            walk.namespace,
            "--selector=app.kubernetes.io/managed-by=modelshield",
            "--output=yaml",
        ).stdout
    )["items"]
    selecting = [p for p in policies if p["spec"]["podSelector"].get("matchLabels", {}).get("app")]
    assert selecting, policies
    ports = [
        port["port"]
        for rule in selecting[0]["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    ]
    assert 8080 in ports, selecting[0]
    monitors = yaml.safe_load(
        kubectl(
            "get",
            "deployments",
            "--namespace",
            walk.namespace,
            "--selector=app.kubernetes.io/component=drift-monitor",
            "--output=yaml",
        ).stdout
    )["items"]
    assert len(monitors) == 1
    container = monitors[0]["spec"]["template"]["spec"]["containers"][0]
    assert "drift-monitor" in container.get("args", []) + container.get("command", [])


def test_policy_status_is_ready_and_counts_the_workload(walk: Walk) -> None:
    status = walk.policy["status"]
    conditions = {condition["type"]: condition for condition in status["conditions"]}
    assert conditions["Ready"]["status"] == "True", conditions
    assert status["governed"] == 1
    header, row = walk.status_table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "ENFORCEMENT", "READY", "GOVERNED", "VIOLATING"]
    assert row.split()[:4] == ["demo-model", "Enforce", "True", "1"], walk.status_table


def test_policy_status_counts_no_violation_for_the_signed_server(
    walk: Walk, kubectl: Kubectl, installation: Installation
) -> None:
    """Until the operator's own verifier has checked the signed server's image (at its first
    audit, as the quickstart says), the status may count it as violating; after, never."""

    def settled() -> dict[str, Any] | None:
        installation.operator.alive()
        policy: dict[str, Any] = yaml.safe_load(
            kubectl(
                "get", "msp", "demo-model", "--namespace", walk.namespace, "--output=yaml"
            ).stdout
        )
        status = policy.get("status") or {}
        return status if status.get("violating") == 0 else None

    status = wait_for(
        "the policy's status to count no violation once the operator verified the signed image "
        f"(log: {installation.operator.log_path})",
        settled,
    )
    assert status["governed"] == 1, status
    assert not status.get("violators"), status


def test_helm_test_pod_passes_against_the_running_webhook(
    installation: Installation, walk: Walk
) -> None:
    """The `helm test` pod's own command, run here against the local webhook (its URL and
    CA file swapped for the local ones), after the quickstart put a policy in place."""
    pod = next(m for m in installation.manifests if rendering.hook_of(m) == "test")
    container = pod["spec"]["containers"][0]
    environment = {variable["name"]: variable["value"] for variable in container["env"]}
    environment["MODELSHIELD_WEBHOOK_URL"] = installation.webhook_url
    environment["MODELSHIELD_CA_FILE"] = str(installation.ca_file)
    environment["MODELSHIELD_TEST_NAMESPACE"] = walk.namespace
    completed = subprocess.run(
        [sys.executable, *container["command"][1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), **environment},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "/readyz: 200" in completed.stdout
    assert "/validate answered: allowed=" in completed.stdout
