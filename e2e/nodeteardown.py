"""What a local e2e node leaves on the machine, and removing it.

A node changes the host, not only its work directory: links (the node's veth pair, the pod
bridge), iptables chains (kube-proxy's KUBE-*, the CNI plugins' CNI-*, kube-router's) and
ipsets, cgroups (`kubepods` in every hierarchy), network namespaces (/var/run/netns/cni-*),
mounts (kubelet's root dir, pod volumes, sandbox shm) and kubelet's fixed paths. Teardown
removes each of them, one step at a time, every step even when another failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e import nodeconfig
from e2e.cluster import ControlPlaneError

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")
# Paths kubelet and the CNI plugins write whatever their configuration says; removed when
# the node created them.
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/run/containerd/runc/k8s.io"),
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
IPSET_PREFIXES = ("KUBE-", "kube-router")
IPTABLES_TABLES = ("filter", "nat", "mangle")


class NodeAlreadyUpError(ControlPlaneError):
    """A node's links or cgroups exist already: another node is up on this machine."""


def kubepods_cgroups() -> list[Path]:
    return sorted(CGROUP_ROOT.glob("*/kubepods")) + sorted(CGROUP_ROOT.glob("kubepods"))


def refuse_when_a_node_is_up() -> None:
    leftovers = [
        str(path)
        for path in (
            Path("/sys/class/net") / nodeconfig.NODE_LINK,
            Path("/sys/class/net") / nodeconfig.POD_BRIDGE,
            *kubepods_cgroups(),
        )
        if path.exists()
    ]
    if leftovers:
        raise NodeAlreadyUpError(
            f"a local node is up or was not torn down ({', '.join(leftovers)} exist); stop it "
            "with `python -m e2e.cluster down`"
        )


@dataclass
class Teardown:
    paths: nodeconfig.NodePaths
    kube_proxy: Path
    kube_router: Path
    netns_before: frozenset[str] = frozenset()
    created_paths: list[Path] = field(default_factory=list)

    @classmethod
    def before_start(
        cls, paths: nodeconfig.NodePaths, kube_proxy: Path, kube_router: Path
    ) -> Teardown:
        """Records what exists before the node starts, so that only its own is removed."""
        netns = (
            frozenset(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.is_dir() else frozenset()
        )
        created = [path for path in FIXED_PATHS if not path.exists()]
        return cls(paths, kube_proxy, kube_router, netns, created)

    def kill_pod_processes(self) -> None:
        """SIGKILL every process in the node's pod cgroups (before kubelet stops, which
        would otherwise leave them running under their shims)."""
        for cgroup in kubepods_cgroups():
            for directory in _subdirectories(cgroup):
                procs = directory / "cgroup.procs"
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(int(pid), signal.SIGKILL)

    def run(self) -> list[str]:
        failures: list[str] = []
        steps: list[tuple[str, Callable[[], None]]] = [
            ("containerd shims", self._kill_shims),
            ("pod processes", self.kill_pod_processes),
            ("kube-proxy rules", lambda: _best_effort(str(self.kube_proxy), "--cleanup")),
            ("kube-router rules", lambda: _best_effort(str(self.kube_router), "--cleanup-config")),
            ("iptables chains", _remove_chains),
            ("ipsets", _remove_ipsets),
            ("network namespaces", self._remove_netns),
            ("mounts", self._unmount_work_dir),
            ("cgroups", _remove_kubepods_cgroups),
            ("links", _remove_links),
            ("fixed paths", self._remove_created_paths),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - every step runs; the caller prints failures
                failures.append(f"{name}: {error}")
        return failures

    def _kill_shims(self) -> None:
        marker = str(self.paths.containerd_socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
                if arguments and b"containerd-shim" in arguments[0] and marker in arguments:
                    os.kill(int(entry.name), signal.SIGKILL)

    def _remove_netns(self) -> None:
        if not NETNS_DIR.is_dir():
            return
        for entry in NETNS_DIR.glob("cni-*"):
            if entry.name in self.netns_before:
                continue
            _best_effort("umount", "-l", str(entry))
            entry.unlink(missing_ok=True)

    def _unmount_work_dir(self) -> None:
        # Deepest first; lazily, so that a busy mount does not stop the rest.
        for mount_point in sorted(_mounts_under(self.paths.work_dir), key=len, reverse=True):
            _best_effort("umount", "-l", mount_point)

    def _remove_created_paths(self) -> None:
        for path in self.created_paths:
            for mount_point in sorted(_mounts_under(path), key=len, reverse=True):
                _best_effort("umount", "-l", mount_point)
            shutil.rmtree(path, ignore_errors=True)


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory)
    mount_points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and the like octal-escaped.
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
        if mount_point == prefix or mount_point.startswith(prefix + "/"):
            mount_points.append(mount_point)
    return mount_points


def _remove_chains() -> None:
    for table in IPTABLES_TABLES:
        dump = _output("iptables-save", "-t", table)
        chains = re.findall(r"^:(\S+)", dump, re.M)
        ours = [chain for chain in chains if chain.startswith(CHAIN_PREFIXES)]
        # Jumps into our chains from the built-in (or anyone's) chains go first.
        for rule in re.findall(r"^-A (.*)$", dump, re.M):
            chain, _, rest = rule.partition(" ")
            target = re.search(r"-j (\S+)", rest)
            if not chain.startswith(CHAIN_PREFIXES) and target and target[1] in ours:
                _best_effort("sh", "-c", f"iptables -t {table} -D {chain} {rest}")
        for chain in ours:
            _best_effort("iptables", "-t", table, "-F", chain)
        for chain in ours:
            _best_effort("iptables", "-t", table, "-X", chain)


def _remove_ipsets() -> None:
    for name in _output("ipset", "list", "-n").split():
        if name.startswith(IPSET_PREFIXES):
            _best_effort("ipset", "destroy", name)


def _subdirectories(top: Path) -> list[Path]:
    """top and every directory below it; cgroups that vanish meanwhile (kubelet removes
    them as pods go) are skipped, where Path.rglob raises FileNotFoundError."""
    return [Path(root) for root, _, _ in os.walk(top, onerror=lambda error: None)]


def _remove_kubepods_cgroups() -> None:
    # A cgroup is removed with rmdir once empty; give killed processes a moment to exit.
    deadline = time.monotonic() + 10
    for top in kubepods_cgroups():
        for cgroup in sorted(_subdirectories(top), key=lambda p: -len(p.parts)):
            while time.monotonic() < deadline:
                try:
                    cgroup.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        with contextlib.suppress(OSError):
            top.rmdir()


def _remove_links() -> None:
    for link in (nodeconfig.POD_BRIDGE, nodeconfig.NODE_LINK):
        if (Path("/sys/class/net") / link).exists():
            _best_effort("ip", "link", "delete", link)


def _output(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60).stdout


def _best_effort(*command: str) -> None:
    subprocess.run(command, capture_output=True, check=False, timeout=60)


def node_leftovers() -> list[Path]:
    """Work directories of local nodes on this machine, and their links and cgroups."""
    found = sorted(Path("/tmp").glob("msnode-*"))
    found += [
        path
        for path in (
            Path("/sys/class/net") / nodeconfig.NODE_LINK,
            Path("/sys/class/net") / nodeconfig.POD_BRIDGE,
            *kubepods_cgroups(),
        )
        if path.exists()
    ]
    return found


def remove_leftovers(kube_proxy: Path, kube_router: Path) -> list[str]:
    """What a node whose run died before its teardown left (its kubelet, containerd and the
    rest die with their parent; pods and shims do not): removed as stop() would. Kubelet's
    fixed paths and every cni-* network namespace go too, since which of them that node
    created is no longer known."""
    work_dirs = sorted(Path("/tmp").glob("msnode-*")) or [Path("/tmp/msnode-none")]
    failures: list[str] = []
    for work_dir in work_dirs:
        teardown = Teardown(
            nodeconfig.NodePaths(work_dir), kube_proxy, kube_router, frozenset(), list(FIXED_PATHS)
        )
        teardown.kill_pod_processes()
        _kill_processes_naming(str(work_dir))
        failures += teardown.run()
        shutil.rmtree(work_dir, ignore_errors=True)
    return failures


def _kill_processes_naming(work_dir: str) -> None:
    marker = work_dir.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
