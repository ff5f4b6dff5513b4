"""The configuration files of the local e2e node (pure: text in, text out; e2e/node.py
writes them and runs the processes).

Each setting that is not a default is here because the node failed without it on CI's
kind of machine (cgroup v1, root without CAP_SYS_RESOURCE, no Docker Hub); the measurements
behind them are in the design note on the local node.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The node's address: a /32 on one end of a veth pair (kubelet refuses a loopback node IP,
# and this kernel has no dummy links).
NODE_IP = ipaddress.IPv4Address("10.250.0.1")
POD_CIDR = ipaddress.IPv4Network("10.244.0.0/24")
NODE_NAME = "modelshield-e2e-node"
NODE_LINK = "msnode0"
NODE_LINK_PEER = "msnode1"
POD_BRIDGE = "msbr0"
CNI_NETWORK = "modelshield-e2e"
# The sandbox image is never pulled: e2e/node.py imports it into containerd at start.
PAUSE_IMAGE = "modelshield.local/pause:1"


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its state, all under one work directory."""

    work_dir: Path

    @property
    def containerd_dir(self) -> Path:
        return self.work_dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_config_dir(self) -> Path:
        return self.work_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.work_dir / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.work_dir / "kubelet"


def containerd_config(paths: NodePaths, cni_bin_dir: Path) -> str:
    """containerd 1.6's configuration (version 2) for a CRI runtime of its own, apart from
    any other containerd on the machine (Docker's)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{paths.containerd_dir / "root"}"
state = "{paths.containerd_dir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{paths.containerd_socket}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # kubelet asks runc for oom_score_adj -998, which root without CAP_SYS_RESOURCE may not
  # set: every pod sandbox failed ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{paths.cni_config_dir}"

[{cri}.registry]
  config_path = "{paths.registry_hosts_dir}"
"""


def registry_addresses(registry_host: str | None) -> list[str]:
    """The names the node pulls the e2e registry by: its loopback host:port, and the same
    port at the node's address, which pods reach too (an image named so can be verified by
    the webhook's pod and pulled by the node alike)."""
    if not registry_host:
        return []
    _, _, port = registry_host.rpartition(":")
    return [registry_host, f"{NODE_IP}:{port}"]


def registry_hosts_toml(registry_host: str) -> str:
    """containerd's hosts.toml for a plain-HTTP registry on this machine (the e2e one)."""
    return f'server = "http://{registry_host}"\n\n[host."http://{registry_host}"]\n  capabilities = ["pull", "resolve"]\n'


def cni_config(paths: NodePaths) -> str:
    """A bridge network with host-local addresses. The firewall plugin opens the FORWARD
    chain per pod: with Docker running, its policy is DROP and bridge netfilter is on, and
    pod-to-pod traffic was dropped without it."""
    gateway = next(POD_CIDR.hosts())
    config: dict[str, Any] = {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(POD_CIDR), "gateway": str(gateway)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": "iptables"},
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_config(paths: NodePaths, port: int, healthz_port: int) -> str:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": str(NODE_IP),
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # Only the API server reaches this port (on the node's veth address); it presents
        # no client certificate in this harness.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        # cgroup v1 here: kubelet refuses it from 1.35 on unless told otherwise.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        # kube-proxy owns the iptables rules; the node's allocatable is not enforced with
        # cgroups (a shared machine).
        "makeIPTablesUtilChains": False,
        "enforceNodeAllocatable": [],
        # A small, shared disk: never evict or collect images because of it.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "staticPodPath": "",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "nodeStatusUpdateFrequency": "4s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def pause_image_archive(pause_binary: Path) -> bytes:
    """A one-file image (`/pause` as its entrypoint) as a `docker save` archive, which
    `ctr images import` reads: no registry and no Docker needed for the pod sandbox."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as layer_tar:
        info = layer_tar.gettarinfo(str(pause_binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with pause_binary.open("rb") as binary:
            layer_tar.addfile(info, binary)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "e2e/nodeconfig.py pause_image_archive"}],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as image_tar:
        for name, content in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            member = tarfile.TarInfo(name)
            member.size = len(content)
            image_tar.addfile(member, io.BytesIO(content))
    return archive.getvalue()
