"""Finds the binaries that e2e/tools/build-tools.sh built into its cache.

The script writes `$CACHE/env.sh` with one `export MODELSHIELD_<TOOL>=<path>`
line per tool; a variable already set in the environment wins, so a developer
can point the suite at a binary of their own.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "tools" / "build-tools.sh"


class MissingToolsError(RuntimeError):
    """A tool the e2e suite needs has not been built yet."""


def tools_cache_dir() -> Path:
    configured = os.environ.get("MODELSHIELD_TOOLS_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "modelshield" / "tools"


def _read_env_file(env_file: Path) -> dict[str, str]:
    """Reads the `export NAME=VALUE` lines of env.sh without running a shell."""
    exported: dict[str, str] = {}
    if not env_file.is_file():
        return exported
    for line in env_file.read_text().splitlines():
        if not line.startswith("export MODELSHIELD_"):
            continue
        name, _, quoted_value = line.removeprefix("export ").partition("=")
        words = shlex.split(quoted_value)
        if len(words) == 1:
            exported[name] = words[0]
    return exported


def tool_path(variable: str) -> Path | None:
    """The path of a cached tool by its env.sh variable (e.g. MODELSHIELD_KUBECTL),
    or None when it is neither in the environment nor in the cache."""
    cache = tools_cache_dir()
    # node-env.sh: what e2e/tools/build-node-tools.sh built for the local node.
    value = (
        os.environ.get(variable)
        or _read_env_file(cache / "env.sh").get(variable)
        or _read_env_file(cache / "node-env.sh").get(variable)
    )
    if value and os.access(value, os.X_OK):
        return Path(value)
    return None


def pinned_kubernetes_version() -> str | None:
    """The Kubernetes release the cached binaries were built from (e.g. v1.36.3)."""
    variable = "MODELSHIELD_KUBERNETES_VERSION"
    return os.environ.get(variable) or _read_env_file(tools_cache_dir() / "env.sh").get(variable)


@dataclass(frozen=True)
class ControlPlaneBinaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @classmethod
    def locate(cls) -> ControlPlaneBinaries:
        variables = {
            "etcd": "MODELSHIELD_ETCD",
            "kube_apiserver": "MODELSHIELD_KUBE_APISERVER",
            "kube_controller_manager": "MODELSHIELD_KUBE_CONTROLLER_MANAGER",
            "kubectl": "MODELSHIELD_KUBECTL",
        }
        found = {field: tool_path(variable) for field, variable in variables.items()}
        missing = sorted(variables[field] for field, path in found.items() if path is None)
        if missing:
            raise MissingToolsError(
                f"the local control plane binaries are not built ({', '.join(missing)} not "
                f"found in the environment or in {tools_cache_dir() / 'env.sh'}); run "
                f"{BUILD_SCRIPT} first (a cold build takes a while), or pass --kubeconfig "
                "to test an existing cluster"
            )
        return cls(
            etcd=_present(found["etcd"]),
            kube_apiserver=_present(found["kube_apiserver"]),
            kube_controller_manager=_present(found["kube_controller_manager"]),
            kubectl=_present(found["kubectl"]),
        )


def _present(path: Path | None) -> Path:
    assert path is not None  # checked by the caller; narrows the type for mypy
    return path
