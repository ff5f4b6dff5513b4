"""A real, local Kubernetes control plane for the e2e suite.

etcd, kube-apiserver and kube-controller-manager run as child processes on
127.0.0.1, on free ports, with a throwaway CA, token authentication and RBAC,
the way controller-runtime's envtest does. There are no nodes: pods stay
Pending, which is all an admission webhook and an operator need.

For humans:
    python -m e2e.cluster up     # prints the KUBECONFIG path, runs until Ctrl-C
    python -m e2e.cluster up --with-node   # and a node where pods run (e2e/node.py)
    python -m e2e.cluster down   # stops the control plane started by `up`
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from e2e.certificates import ControlPlaneCertificates, generate_certificates
from e2e.toolcache import ControlPlaneBinaries, tools_cache_dir

SERVICE_CLUSTER_IP_RANGE = ipaddress.IPv4Network("10.0.0.0/24")
# The `kubernetes` Service takes the first address of the range; the serving
# certificate must name it for in-cluster clients.
KUBERNETES_SERVICE_IP = next(SERVICE_CLUSTER_IP_RANGE.hosts())
ADMIN_USER = "modelshield-e2e-admin"

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 30

# Where `up` records what it started, so that `down` (another process) can stop it.
STATE_FILE = tools_cache_dir().parent / "e2e-cluster.json"


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message names the log to read."""


def find_free_ports(count: int) -> list[int]:
    """COUNT distinct TCP ports free on 127.0.0.1 right now, picked by the
    kernel. All probes stay bound until every port is picked, so one call
    never returns the same port twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def find_free_port() -> int:
    return find_free_ports(1)[0]


def _die_with_parent() -> None:
    """Runs in the child before exec: if the harness dies without cleaning up
    (SIGKILL, a CI time-out), the kernel sends the component SIGTERM, so no
    etcd or API server outlives the run that started it."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _log_tail(log_file: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(content[-lines:])


@dataclass
class Component:
    """One running control plane process and the log it writes."""

    name: str
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def ensure_running(self) -> None:
        exit_code = self.process.poll()
        if exit_code is not None:
            raise ControlPlaneError(
                f"{self.name} exited with code {exit_code}; last lines of {self.log_file}:\n"
                f"{_log_tail(self.log_file)}"
            )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalControlPlane:
    """Starts and stops etcd, kube-apiserver and kube-controller-manager.

    Use as a context manager, or call start() and stop(). Everything lives in
    `work_dir`; its `logs/` subdirectory has one log per component.
    """

    binaries: ControlPlaneBinaries
    work_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="modelshield-e2e-"))
    )
    components: list[Component] = field(default_factory=list)
    api_server_url: str = ""
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Appended to kube-apiserver's flags (the last of a repeated flag wins); a node adds
    # what pods need (e2e/node.py).
    api_server_extra_args: Sequence[str] = ()

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "admin.kubeconfig"

    @property
    def certificates_dir(self) -> Path:
        return self.work_dir / "pki"

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- starting -------------------------------------------------------------

    def start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        try:
            certificates = generate_certificates(self.certificates_dir, KUBERNETES_SERVICE_IP)
            etcd_url = self._start_etcd()
            self._start_api_server(etcd_url, certificates)
            self._write_kubeconfig(certificates)
            self._start_controller_manager(certificates)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, command: Sequence[str]) -> Component:
        log_file = self.logs_dir / f"{name}.log"
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                # Own process group: a Ctrl-C in the terminal reaches only the
                # harness, which then stops the components in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        component = Component(name, process, log_file)
        self.components.append(component)
        return component

    def _wait_until(
        self, component: Component, description: str, is_ready: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            component.ensure_running()
            if is_ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{component.name} was not {description} after {STARTUP_TIMEOUT_SECONDS:.0f} s; "
            f"last lines of {component.log_file}:\n{_log_tail(component.log_file)}"
        )

    def _start_etcd(self) -> str:
        client_port, peer_port = find_free_ports(2)
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=e2e",
                f"--data-dir={self.work_dir / 'etcd-data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
            ],
        )
        self._wait_until(etcd, "healthy", lambda: _etcd_is_healthy(client_url))
        return client_url

    def _start_api_server(self, etcd_url: str, certificates: ControlPlaneCertificates) -> None:
        token_file = self.work_dir / "tokens.csv"
        # token,user,uid,"groups": system:masters is bound to cluster-admin by
        # the RBAC bootstrap policy and bypasses authorization entirely.
        token_file.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        token_file.chmod(0o600)
        port = find_free_port()
        self.api_server_url = f"https://127.0.0.1:{port}"
        api_server = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.work_dir / 'apiserver-generated'}",
                f"--tls-cert-file={certificates.serving_certificate}",
                f"--tls-private-key-file={certificates.serving_private_key}",
                f"--client-ca-file={certificates.ca_certificate}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certificates.service_account_public_key}",
                f"--service-account-signing-key-file={certificates.service_account_private_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # On loopback the default lease reconciler logs an "invalid
                # endpoint" error every 10 s; nothing needs the endpoints here.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                *self.api_server_extra_args,
            ],
        )
        ca_context = ssl.create_default_context(cafile=str(certificates.ca_certificate))
        self._wait_until(
            api_server,
            "ready (/readyz)",
            lambda: _https_get_ok(f"{self.api_server_url}/readyz", ca_context, self.admin_token),
        )

    def _write_kubeconfig(self, certificates: ControlPlaneCertificates) -> None:
        kubeconfig: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modelshield-e2e",
                    "cluster": {
                        "server": self.api_server_url,
                        "certificate-authority": str(certificates.ca_certificate),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token}}],
            "contexts": [
                {
                    "name": "modelshield-e2e",
                    "context": {"cluster": "modelshield-e2e", "user": ADMIN_USER},
                }
            ],
            "current-context": "modelshield-e2e",
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)

    def _start_controller_manager(self, certificates: ControlPlaneCertificates) -> None:
        port = find_free_port()
        controller_manager = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig_path}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.work_dir / 'controller-manager-generated'}",
                # Without this it reads the request-header CA from a ConfigMap
                # in kube-system and fails to start when that is absent.
                "--authentication-skip-lookup=true",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={certificates.service_account_private_key}",
                f"--root-ca-file={certificates.ca_certificate}",
                f"--cluster-signing-cert-file={certificates.ca_certificate}",
                f"--cluster-signing-key-file={certificates.ca_private_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The default 20 requests/s throttles the controllers for
                # seconds after start; the local API server can take far more.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--profiling=false",
            ],
        )
        # Its serving certificate is self-signed (generated into --cert-dir);
        # only liveness is checked here, over loopback.
        self_signed = ssl.create_default_context()
        self_signed.check_hostname = False
        self_signed.verify_mode = ssl.CERT_NONE
        self._wait_until(
            controller_manager,
            "healthy (/healthz)",
            lambda: _https_get_ok(f"https://127.0.0.1:{port}/healthz", self_signed, None),
        )
        # Pods are refused until their namespace's `default` ServiceAccount
        # exists; it is created by a controller, so wait for the first one.
        ca_context = ssl.create_default_context(cafile=str(certificates.ca_certificate))
        self._wait_until(
            controller_manager,
            "creating ServiceAccounts",
            lambda: _https_get_ok(
                f"{self.api_server_url}/api/v1/namespaces/default/serviceaccounts/default",
                ca_context,
                self.admin_token,
            ),
        )

    # --- stopping -------------------------------------------------------------

    def stop(self) -> None:
        """Stops every component by PID, newest first (the controller manager
        before the API server before etcd)."""
        while self.components:
            self.components.pop().stop()

    def remove_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def remove_all_but_logs(self) -> None:
        """Frees the disk (etcd preallocates a 64 MiB WAL) but keeps the logs."""
        for entry in self.work_dir.iterdir():
            if entry == self.logs_dir:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def resident_memory_kib(self) -> dict[str, int]:
        """VmRSS of each running component, from /proc (for reports)."""
        usage: dict[str, int] = {}
        for component in self.components:
            status = Path(f"/proc/{component.pid}/status")
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        usage[component.name] = int(line.split()[1])
        return usage


def _etcd_is_healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:  # noqa: S310 - our own loopback URL
            body: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:  # unhealthy; the error holds the socket
        error.close()
        return False
    except (OSError, ValueError):
        return False
    return body.get("health") == "true"


def _https_get_ok(url: str, context: ssl.SSLContext, token: str | None) -> bool:
    request = urllib.request.Request(url)  # noqa: S310 - our own loopback URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:  # not ready yet; the error holds the socket
        error.close()
        return False
    except (urllib.error.URLError, OSError):
        return False


# --- command line --------------------------------------------------------------


def _pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cluster_up(stdout: IO[str], with_node: bool = False) -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if _pid_is_alive(int(state["pid"])):
            print(
                f"a control plane is already up (pid {state['pid']}); "
                f"KUBECONFIG={state['kubeconfig']}",
                file=stdout,
            )
            return 1
    started = time.monotonic()
    node_stack = contextlib.ExitStack()
    node_args: Sequence[str] = ()
    if with_node:
        from e2e import node  # imports this module; loaded only when a node is asked for

        node_args = node.api_server_args_for_a_node()
    control_plane = LocalControlPlane(
        ControlPlaneBinaries.locate(), api_server_extra_args=node_args
    )
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        control_plane.start()
        if with_node:
            node_stack.enter_context(node.running_node(control_plane, stdout))
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "kubeconfig": str(control_plane.kubeconfig_path),
                    "work_dir": str(control_plane.work_dir),
                    "components": {c.name: c.pid for c in control_plane.components},
                }
            )
        )
        print(f"control plane ready in {time.monotonic() - started:.1f} s", file=stdout)
        print(f"logs: {control_plane.logs_dir}", file=stdout)
        print(f"export KUBECONFIG={control_plane.kubeconfig_path}", file=stdout)
        print("Ctrl-C or `python -m e2e.cluster down` stops it.", file=stdout, flush=True)
        while not stop_requested:
            for component in control_plane.components:
                component.ensure_running()
            time.sleep(0.5)
    finally:
        node_stack.close()
        control_plane.stop()
        control_plane.remove_all_but_logs()
        STATE_FILE.unlink(missing_ok=True)
        print(f"control plane stopped; logs kept in {control_plane.logs_dir}", file=stdout)
    return 0


def _cluster_down(stdout: IO[str]) -> int:
    if not STATE_FILE.exists():
        print("no control plane is up", file=stdout)
        return 0
    state = json.loads(STATE_FILE.read_text())
    up_pid = int(state["pid"])
    if _pid_is_alive(up_pid):
        # `up` stops its components in order when it gets SIGTERM.
        os.kill(up_pid, signal.SIGTERM)
        deadline = time.monotonic() + 3 * STOP_GRACE_SECONDS + 5
        while _pid_is_alive(up_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # If `up` died uncleanly, its components received SIGTERM from the kernel
    # (parent-death signal); stop any that still run, by the PIDs recorded.
    for name, pid in state.get("components", {}).items():
        if _pid_is_alive(int(pid)) and _is_our_process(int(pid), state["work_dir"]):
            print(f"stopping leftover {name} (pid {pid})", file=stdout)
            os.kill(int(pid), signal.SIGKILL)
    STATE_FILE.unlink(missing_ok=True)
    print(f"control plane stopped; logs in {Path(state['work_dir']) / 'logs'}", file=stdout)
    return 0


def _is_our_process(pid: int, work_dir: str) -> bool:
    """Guards against a recycled PID: our components' command lines name the work dir."""
    try:
        return work_dir.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster", description="A local Kubernetes control plane for e2e tests."
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument(
        "--with-node",
        action="store_true",
        help="also a node that runs pods (root; e2e/tools/build-node-tools.sh builds it)",
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "up":
        return _cluster_up(sys.stdout, with_node=arguments.with_node)
    stopped = _cluster_down(sys.stdout)
    from e2e import node  # imports this module; a node's leftovers go after `up` stopped

    node.remove_node_leftovers(sys.stdout)
    return stopped


if __name__ == "__main__":
    sys.exit(main())
