"""A real node for the local e2e control plane: pods run.

containerd (Debian's 1.6) with runc, a CNI bridge, kubelet, kube-scheduler, kube-proxy (pods
reach the API server through the `kubernetes` Service) and kube-router's firewall (the
NetworkPolicy implementation) run as child processes, built by e2e/tools/build-node-tools.sh.
The node's address is a /32 on a veth pair; pod IPs live on a bridge inside this machine.

Needs root: it creates links, iptables rules, cgroups and mounts. stop() undoes all of it
(nodeteardown.py). One node per machine: start() waits for a session that has one up to end
(nodelock.py), and refuses to start over what a node that died left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from e2e import nodeconfig, nodelock, nodeteardown
from e2e.cluster import (
    Component,
    ControlPlaneError,
    LocalControlPlane,
    _die_with_parent,
    _log_tail,
    find_free_ports,
)
from e2e.toolcache import MissingToolsError, tool_path, tools_cache_dir

NODE_BUILD_SCRIPT = Path(__file__).resolve().parent / "tools" / "build-node-tools.sh"
READY_TIMEOUT_SECONDS = 90.0
# Host commands the node runs besides the cached binaries (Debian packages).
HOST_COMMANDS = ("runc", "ctr", "ip", "iptables", "iptables-save", "ipset", "umount")


def api_server_args_for_a_node() -> list[str]:
    """kube-apiserver flags pods need: reachable from the pod network (the `kubernetes`
    Service points at the node's address), and webhooks called at their pods' IPs (there
    is no route to Service IPs from the API server otherwise)."""
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={nodeconfig.NODE_IP}",
        "--endpoint-reconciler-type=lease",
        "--enable-aggregator-routing=true",
        # `kubectl logs/exec` reach kubelet at the node's address; its name resolves nowhere.
        "--kubelet-preferred-address-types=InternalIP",
    ]


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    kube_router: Path
    pause: Path
    containerd: Path
    cni_bin_dir: Path

    @classmethod
    def locate(cls) -> NodeBinaries:
        """The cached node tools; MissingToolsError names each missing one and why."""
        variables = {
            "kubelet": "MODELSHIELD_KUBELET",
            "kube_scheduler": "MODELSHIELD_KUBE_SCHEDULER",
            "kube_proxy": "MODELSHIELD_KUBE_PROXY",
            "kube_router": "MODELSHIELD_KUBE_ROUTER",
            "pause": "MODELSHIELD_PAUSE",
            "containerd": "MODELSHIELD_CONTAINERD",
            "cni_bin_dir": "MODELSHIELD_CNI_BIN_DIR",
        }
        found = {name: tool_path(variable) for name, variable in variables.items()}
        problems = [variables[name] for name, path in found.items() if path is None]
        problems += [f"`{command}`" for command in HOST_COMMANDS if shutil.which(command) is None]
        if os.geteuid() != 0:
            problems.append("root (links, iptables, cgroups and mounts)")
        if problems:
            raise MissingToolsError(
                f"the local node cannot start: missing {', '.join(problems)} (looked in the "
                f"environment and {tools_cache_dir() / 'node-env.sh'}); run {NODE_BUILD_SCRIPT} "
                "as root"
            )
        return cls(**{name: path for name, path in found.items() if path is not None})


@dataclass
class LocalNode:
    """One node registered with `control_plane`, whose API server was started with
    api_server_args_for_a_node(). `registry_host` (host:port, plain HTTP) is where pods
    pull their images from."""

    binaries: NodeBinaries
    control_plane: LocalControlPlane
    registry_host: str | None = None
    work_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="msnode-", dir="/tmp"))
    )
    components: list[Component] = field(default_factory=list)
    ready_seconds: float = 0.0
    _teardown: nodeteardown.Teardown | None = None
    _lock: nodelock.NodeLock = field(default_factory=nodelock.NodeLock)

    @property
    def paths(self) -> nodeconfig.NodePaths:
        return nodeconfig.NodePaths(self.work_dir)

    @property
    def logs_dir(self) -> Path:
        return self.control_plane.logs_dir

    def start(self) -> None:
        self._lock.acquire()
        started = time.monotonic()
        try:
            nodeteardown.refuse_when_a_node_is_up()
        except BaseException:
            self._lock.release()
            raise
        self._teardown = nodeteardown.Teardown.before_start(
            self.paths, self.binaries.kube_proxy, self.binaries.kube_router
        )
        try:
            self._set_up_network()
            self._write_configuration()
            self._start_containerd()
            self._start_kubelet()
            self._start_scheduler_proxy_and_firewall()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stops the node's processes and removes what they left (links, rules, ipsets,
        cgroups, mounts, network namespaces, kubelet's fixed paths). Best effort: every step
        runs even when one fails; the failures are printed."""
        teardown = self._teardown
        if teardown is not None:
            teardown.kill_pod_processes()
        while self.components:
            self.components.pop().stop()
        if teardown is not None:
            for failure in teardown.run():
                print(f"node teardown: {failure}", file=sys.stderr)
            self._teardown = None
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self._lock.release()

    # --- starting ---------------------------------------------------------------------

    def _set_up_network(self) -> None:
        run = _run
        run("ip", "link", "add", nodeconfig.NODE_LINK, "type", "veth", "peer", "name",
            nodeconfig.NODE_LINK_PEER)  # fmt: skip
        run("ip", "addr", "add", f"{nodeconfig.NODE_IP}/32", "dev", nodeconfig.NODE_LINK)
        run("ip", "link", "set", nodeconfig.NODE_LINK, "up")
        run("ip", "link", "set", nodeconfig.NODE_LINK_PEER, "up")

    def _write_configuration(self) -> None:
        paths = self.paths
        for directory in (paths.containerd_dir, paths.cni_config_dir, paths.kubelet_dir):
            directory.mkdir(parents=True, exist_ok=True)
        (paths.containerd_dir / "config.toml").write_text(
            nodeconfig.containerd_config(paths, self.binaries.cni_bin_dir)
        )
        for registry_host in nodeconfig.registry_addresses(self.registry_host):
            hosts = paths.registry_hosts_dir / registry_host
            hosts.mkdir(parents=True, exist_ok=True)
            (hosts / "hosts.toml").write_text(nodeconfig.registry_hosts_toml(registry_host))
        (paths.cni_config_dir / "10-modelshield.conflist").write_text(nodeconfig.cni_config(paths))

    def _start_containerd(self) -> None:
        paths = self.paths
        containerd = self._spawn(
            "containerd",
            [str(self.binaries.containerd), f"--config={paths.containerd_dir / 'config.toml'}"],
        )
        self._wait_until(containerd, "serving", paths.containerd_socket.exists)
        archive = self.work_dir / "pause.tar"
        archive.write_bytes(nodeconfig.pause_image_archive(self.binaries.pause))
        _run("ctr", f"--address={paths.containerd_socket}", "--namespace=k8s.io", "images",
             "import", "--no-unpack", str(archive))  # fmt: skip

    def _start_kubelet(self) -> None:
        paths = self.paths
        port, healthz_port = find_free_ports(2)
        config = paths.kubelet_dir / "config.yaml"
        config.write_text(nodeconfig.kubelet_config(paths, port, healthz_port))
        kubelet = self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={config}",
                f"--kubeconfig={self.control_plane.kubeconfig_path}",
                f"--root-dir={paths.kubelet_dir / 'root'}",
                f"--cert-dir={paths.kubelet_dir / 'pki'}",
                f"--node-ip={nodeconfig.NODE_IP}",
                f"--hostname-override={nodeconfig.NODE_NAME}",
                "--v=1",
            ],
        )
        self._wait_until(kubelet, "registered and Ready", self._node_is_ready)
        # No controller allocates pod CIDRs here; kube-router reads the node's.
        self.kubectl("patch", "node", nodeconfig.NODE_NAME, "--type=merge", "-p",
                     json.dumps({"spec": {"podCIDR": str(nodeconfig.POD_CIDR),
                                          "podCIDRs": [str(nodeconfig.POD_CIDR)]}}))  # fmt: skip

    def _start_scheduler_proxy_and_firewall(self) -> None:
        kubeconfig = str(self.control_plane.kubeconfig_path)
        scheduler_port, proxy_health, proxy_metrics, router_health = find_free_ports(4)
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                "--leader-elect=false",
            ],
        )
        proxy = self._spawn(
            "kube-proxy",
            [
                str(self.binaries.kube_proxy),
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={nodeconfig.NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={nodeconfig.POD_CIDR}",
                f"--nodeport-addresses={nodeconfig.NODE_IP}/32",
                # Leave the machine's conntrack settings alone (shared machine).
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                f"--healthz-bind-address=127.0.0.1:{proxy_health}",
                f"--metrics-bind-address=127.0.0.1:{proxy_metrics}",
            ],
        )
        router = self._spawn(
            "kube-router",
            [
                str(self.binaries.kube_router),
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={nodeconfig.NODE_NAME}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                "--metrics-port=0",
                f"--health-port={router_health}",
                "--iptables-sync-period=5s",
            ],
        )
        self._wait_until(proxy, "healthy", lambda: _http_ok(f"127.0.0.1:{proxy_health}/healthz"))
        self._wait_until(router, "healthy", lambda: _http_ok(f"127.0.0.1:{router_health}/healthz"))

    # --- helpers ----------------------------------------------------------------------

    def kubectl(self, *arguments: str) -> str:
        result = subprocess.run(
            [str(self.control_plane.binaries.kubectl),
             f"--kubeconfig={self.control_plane.kubeconfig_path}", *arguments],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(arguments)}: {result.stderr.strip()}")
        return result.stdout

    def _node_is_ready(self) -> bool:
        try:
            node = json.loads(self.kubectl("get", "node", nodeconfig.NODE_NAME, "-o", "json"))
        except ControlPlaneError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _spawn(self, name: str, command: Sequence[str]) -> Component:
        log_file = self.logs_dir / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        component = Component(name, process, log_file)
        self.components.append(component)
        return component

    def _wait_until(
        self, component: Component, description: str, is_ready: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            component.ensure_running()
            if is_ready():
                return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{component.name} was not {description} after {READY_TIMEOUT_SECONDS:.0f} s; "
            f"last lines of {component.log_file}:\n{_log_tail(component.log_file)}"
        )


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise ControlPlaneError(f"{' '.join(command)}: {result.stderr.strip()}")


def _http_ok(host_and_path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_and_path}", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        error.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_node(control_plane: LocalControlPlane, stdout: IO[str]) -> Iterator[LocalNode]:
    """For `python -m e2e.cluster up --with-node`: a node and a registry its pods pull from."""
    from tests.support.localtools import LocalRegistry, require_tool

    registry = LocalRegistry(require_tool("MODELSHIELD_REGISTRY"), control_plane.logs_dir).start()
    node = LocalNode(NodeBinaries.locate(), control_plane, registry.host)
    try:
        node.start()
        print(f"node {nodeconfig.NODE_NAME} Ready in {node.ready_seconds:.1f} s", file=stdout)
        print(f"registry for the node's images: {registry.host} (docker push to it)", file=stdout)
        yield node
    finally:
        node.stop()
        registry.stop()


def remove_node_leftovers(stdout: IO[str]) -> None:
    """For `python -m e2e.cluster down`: removes what a node whose run died left behind."""
    leftovers = nodeteardown.node_leftovers()
    if not leftovers:
        return
    if nodelock.held_by_a_session():
        # A test session's node, up and in use: its own teardown removes all of this.
        print(
            f"a local node is up in another session (it holds {nodelock.NODE_LOCK}); "
            "left alone: its session removes it when it ends",
            file=stdout,
        )
        return
    print(f"removing a local node's leftovers: {', '.join(map(str, leftovers))}", file=stdout)
    binaries = {name: tool_path(f"MODELSHIELD_{name}") for name in ("KUBE_PROXY", "KUBE_ROUTER")}
    failures = nodeteardown.remove_leftovers(
        binaries["KUBE_PROXY"] or Path("kube-proxy"), binaries["KUBE_ROUTER"] or Path("kube-router")
    )
    for failure in failures:
        print(f"node teardown: {failure}", file=stdout)
