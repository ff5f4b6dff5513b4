"""The init container that re-verifies a model when the pod starts (``models.verifyAtStartup``).

The mutating webhook injects it in front of the model server. It runs
``modelshield model verify`` on the mounted model with the digest and signer the
ModelArtifact's status recorded at admission, so a model swapped after admission fails
the pod instead of being served. Pure builder: returns the container as a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

CONTAINER_NAME = "modelshield-verify-model"
#: The image it runs unless the administrator names one (``--startup-image`` of the
#: webhook, which injects it, and of the operator, which must recognise it).
DEFAULT_IMAGE = "ghcr.io/modelshield/modelshield:latest"
#: The ConfigMap (one per namespace, written by the operator) and pod volume holding the
#: public keys the init container trusts: one file per ModelArtifact and signer.
KEYS_CONFIG_MAP = "modelshield-model-keys"
#: Where the init container mounts that ConfigMap.
KEYS_MOUNT = "/etc/modelshield/model-keys"
#: A ConfigMap key is at most 253 characters of ``[-._a-zA-Z0-9]``.
_MAX_KEY_LENGTH = 253
_KEY_SUFFIX = ".pub"
#: Where the keyless trust root is mounted, when keyless signers are used.
TRUST_ROOT_MOUNT = "/etc/modelshield/trust"
#: Fields the API server fills into a stored container that the builder leaves out, with
#: the only value each may have (what the injected container looks like once created).
_SERVER_DEFAULTS: Mapping[str, Any] = {"terminationMessagePath": "/dev/termination-log"}
_ABSENT = object()
#: Where the API server's ServiceAccount admission mounts the pod's token into every
#: container, the injected one included (it runs again after the mutating webhooks).
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: The volume KServe's storage initializer downloads into and its server reads
#: (StorageInitializerVolumeName in KServe v0.17.0's pkg/constants).
KSERVE_MODEL_VOLUME = "kserve-provision-location"


def key_file_name(artifact: str, signer: str) -> str:
    """The ConfigMap key (and file name under ``KEYS_MOUNT``) of one artifact's signer key.

    ``<artifact>.<signer>.pub``: per artifact, so that two artifacts whose signers share a
    name never share a file, and unambiguous because signer names (DNS labels) hold no dot.
    An artifact name too long for a ConfigMap key is shortened and suffixed with its hash.
    """
    name = f"{artifact}.{signer}{_KEY_SUFFIX}"
    if len(name) <= _MAX_KEY_LENGTH:
        return name
    digest = hashlib.sha256(artifact.encode()).hexdigest()[:16]
    room = _MAX_KEY_LENGTH - len(f"-{digest}.{signer}{_KEY_SUFFIX}")
    return f"{artifact[:room].rstrip('.-')}-{digest}.{signer}{_KEY_SUFFIX}"


def verify_command(
    model_path: str,
    digest: str,
    *,
    key_path: str | None = None,
    policy_path: str | None = None,
    signature_path: str | None = None,
) -> list[str]:
    """The argv of ``modelshield model verify`` for one model."""
    if (key_path is None) == (policy_path is None):
        raise ValueError("give exactly one of key_path and policy_path")
    command = ["modelshield", "model", "verify", model_path, "--digest", digest]
    command += ["--key", key_path] if key_path is not None else ["--policy", str(policy_path)]
    if signature_path is not None:
        command += ["--signature", signature_path]
    return command


def build_init_container(
    *,
    image: str,
    model_volume: str,
    model_mount_path: str,
    digest: str,
    artifact: str,
    signer: str,
    keys_volume: str,
    model_sub_path: str = "",
    resources: dict[str, Any] | None = None,
    signature_path: str | None = None,
) -> dict[str, Any]:
    """The init container spec: read-only mounts, non-root, no privileges, bounded resources.

    ``keys_volume`` holds the PEM public keys the operator publishes, one per artifact and
    signer (``key_file_name``); only the key of the signer the ModelArtifact's status
    recorded is trusted at start. The signature bundle is
    ``model.sig`` in the mounted model unless ``signature_path`` names another mounted file.
    """
    model_path = model_mount_path.rstrip("/") + (
        "/" + model_sub_path.strip("/") if model_sub_path else ""
    )
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": verify_command(
            model_path,
            digest,
            key_path=f"{KEYS_MOUNT}/{key_file_name(artifact, signer)}",
            signature_path=signature_path,
        ),
        "env": [{"name": "MODELSHIELD_EXPECTED_SIGNER", "value": signer}],
        "volumeMounts": [
            {"name": model_volume, "mountPath": model_mount_path, "readOnly": True},
            {"name": keys_volume, "mountPath": KEYS_MOUNT, "readOnly": True},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": resources
        or {
            "requests": {"cpu": "500m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def keys_volume() -> dict[str, Any]:
    """The pod volume of the ``KEYS_CONFIG_MAP`` ConfigMap that the init container mounts."""
    return {"name": KEYS_CONFIG_MAP, "configMap": {"name": KEYS_CONFIG_MAP}}


def model_mount(pod_spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first container's mount that holds the model: one named like it (or KServe's
    model volume), else the first that is not the service account token.

    The mutating webhook sees a pod after the API server's ServiceAccount admission, so the
    token mount comes first in a container that had no mounts of its own: KServe's pod
    mutator appends its model volume to the server container after it.
    """
    containers = pod_spec.get("containers")
    first = containers[0] if isinstance(containers, list) and containers else None
    mounts = first.get("volumeMounts") if isinstance(first, dict) else None
    usable = [
        m
        for m in (mounts if isinstance(mounts, list) else [])
        if isinstance(m, dict)
        and isinstance(m.get("name"), str)
        and isinstance(m.get("mountPath"), str)
        and m["mountPath"].rstrip("/") != SERVICE_ACCOUNT_MOUNT
    ]
    named = [m for m in usable if "model" in m["name"].lower() or m["name"] == KSERVE_MODEL_VOLUME]
    if named:
        return named[0]
    return usable[0] if usable else None


def _listed(pod_spec: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    items = pod_spec.get(field)
    return [c for c in (items if isinstance(items, list) else []) if isinstance(c, Mapping)]


def serving_mounts(pod_spec: Mapping[str, Any]) -> list[tuple[str, int, int, Mapping[str, Any]]]:
    """(field, container index, mount index, mount) of each serving mount of the model volume.

    Serving: the pod's containers and its native sidecars (init containers with
    ``restartPolicy: Always``), which keep running next to them.
    """
    mount = model_mount(pod_spec)
    if mount is None:
        return []
    found = []
    for field in ("containers", "initContainers"):
        for index, container in enumerate(_listed(pod_spec, field)):
            if field == "initContainers" and container.get("restartPolicy") != "Always":
                continue
            mounts = container.get("volumeMounts")
            for at, candidate in enumerate(mounts if isinstance(mounts, list) else []):
                if isinstance(candidate, Mapping) and candidate.get("name") == mount["name"]:
                    found.append((field, index, at, candidate))
    return found


def _under(sub_path: str, verified: str) -> bool:
    parts = [p for p in sub_path.split("/") if p not in ("", ".")]
    root = [p for p in verified.split("/") if p not in ("", ".")]
    return ".." not in parts and parts[: len(root)] == root


def binding_problems(pod_spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON path, problem) wherever what the servers read is not what the check verified.

    The init container verifies the model volume at the model mount's subPath. That binds
    the servers only when every serving mount of that volume is read-only (nothing of
    theirs rewrites it after the check), reads inside the verified path (a ``subPath``
    elsewhere, or a ``subPathExpr`` resolved at run time, reads unverified files), and no
    init container runs after the check (it could rewrite the volume once it passed).
    """
    mount = model_mount(pod_spec)
    if mount is None:
        return []
    verified = str(mount.get("subPath") or "")
    problems = []
    for field, index, at, serving in serving_mounts(pod_spec):
        path = f"spec.{field}[{index}].volumeMounts[{at}]"
        if serving.get("subPathExpr"):
            problems.append(
                (
                    f"{path}.subPathExpr",
                    f"the model volume {mount['name']!r} is mounted with a subPathExpr, "
                    "resolved only when the container starts: the startup check cannot "
                    "verify what it will read; use a fixed subPath",
                )
            )
        elif not _under(str(serving.get("subPath") or ""), verified):
            problems.append(
                (
                    f"{path}.subPath",
                    f"the model volume {mount['name']!r} is mounted at subPath "
                    f"{serving.get('subPath')!r}, outside the verified "
                    f"{verified or '(the whole volume)'!r}: those files are not verified",
                )
            )
        if serving.get("readOnly") is not True:
            problems.append(
                (
                    f"{path}.readOnly",
                    f"the model volume {mount['name']!r} is mounted writable: a serving "
                    "container could change the model after the startup check; set "
                    "readOnly: true",
                )
            )
    inits = _listed(pod_spec, "initContainers")
    ours = [i for i, c in enumerate(inits) if c.get("name") == CONTAINER_NAME]
    if ours and ours[-1] != len(inits) - 1:
        later = inits[ours[-1] + 1].get("name")
        problems.append(
            (
                f"spec.initContainers[{ours[-1] + 1}]",
                f"init container {later!r} runs after {CONTAINER_NAME!r} and could change "
                "the model once it was verified; the startup check must be the last init "
                "container",
            )
        )
    return problems


def ephemeral_problems(
    pod_spec: Mapping[str, Any], earlier: tuple[Mapping[str, Any], ...] = ()
) -> list[tuple[str, str]]:
    """(JSON path, problem) for each writable mount of the model volume in an ephemeral
    container (``kubectl debug``) not among ``earlier`` (those the pod already had).

    Ephemeral containers are added to a running pod, after the startup check passed, and
    init containers do not run again when a server restarts: a writable mount would let a
    debugger rewrite the model the servers load next. Read-only mounts are fine (the API
    server forbids ``subPath`` there, so they see the whole volume, but they read only).
    """
    mount = model_mount(pod_spec)
    if mount is None:
        return []
    twins = _same_storage(pod_spec, mount["name"])
    problems = []
    for index, container in enumerate(_listed(pod_spec, "ephemeralContainers")):
        if container in earlier:
            continue  # ephemeral containers cannot change or go: judged when added
        mounts = container.get("volumeMounts")
        for at, candidate in enumerate(mounts if isinstance(mounts, list) else []):
            if not isinstance(candidate, Mapping) or candidate.get("name") not in twins:
                continue
            if candidate.get("readOnly") is not True:
                also = "" if candidate["name"] == mount["name"] else f" (as {candidate['name']!r})"
                problems.append(
                    (
                        f"spec.ephemeralContainers[{index}].volumeMounts[{at}].readOnly",
                        f"ephemeral container {container.get('name')!r} mounts the model "
                        f"volume {mount['name']!r}{also} writable: it could change the model "
                        "after the startup check, and a restarted server would load it "
                        "unverified; set readOnly: true (kubectl debug --custom)",
                    )
                )
    return problems


def _same_storage(pod_spec: Mapping[str, Any], model_volume: str) -> set[str]:
    """The model volume's name, and those of pod volumes on the same storage (another
    volume of the same claim, host path or source), which write the same files."""
    volumes = [v for v in _listed(pod_spec, "volumes") if isinstance(v.get("name"), str)]
    model = next((v for v in volumes if v["name"] == model_volume), None)
    if model is None:
        return {model_volume}

    def source(volume: Mapping[str, Any]) -> dict[str, Any]:
        found = {k: v for k, v in volume.items() if k != "name"}
        claim = found.get("persistentVolumeClaim")
        if isinstance(claim, Mapping):  # readOnly on the claim does not make it another
            found["persistentVolumeClaim"] = {"claimName": claim.get("claimName")}
        return found

    # An emptyDir is the pod's own: two of them are two directories.
    if "emptyDir" in model:
        return {model_volume}
    return {model_volume} | {v["name"] for v in volumes if source(v) == source(model)}


def read_only_patches(pod_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSONPatch operations making every serving mount of the model volume read-only."""
    patches = []
    for field, index, at, serving in serving_mounts(pod_spec):
        if serving.get("readOnly") is not True:
            pointer = f"/spec/{field}/{index}/volumeMounts/{at}/readOnly"
            patches.append({"op": "add", "path": pointer, "value": True})
    return patches


def for_pod(
    pod_spec: Mapping[str, Any], *, image: str, digest: str, artifact: str, signer: str
) -> dict[str, Any] | None:
    """The init container for this pod spec (its model mount); None when it mounts none."""
    mount = model_mount(pod_spec)
    if mount is None:
        return None
    return build_init_container(
        image=image,
        model_volume=mount["name"],
        model_mount_path=mount["mountPath"],
        model_sub_path=str(mount.get("subPath") or ""),
        digest=digest,
        artifact=artifact,
        signer=signer,
        keys_volume=KEYS_CONFIG_MAP,
    )


def _without_token_mount(
    actual: Mapping[str, Any], pod_spec: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``actual`` without the service account token mount the API server appends, if any."""
    mounts = actual.get("volumeMounts")
    last = mounts[-1] if isinstance(mounts, list) and mounts else None
    if not isinstance(last, dict) or last.get("mountPath") != SERVICE_ACCOUNT_MOUNT:
        return actual
    if set(last) != {"name", "mountPath", "readOnly"} or last["readOnly"] is not True:
        return actual
    volumes = pod_spec.get("volumes")
    volume = next(
        (
            v
            for v in (volumes if isinstance(volumes, list) else [])
            if isinstance(v, dict) and v.get("name") == last["name"]
        ),
        None,
    )
    projected = volume.get("projected") if isinstance(volume, dict) else None
    sources = projected.get("sources") if isinstance(projected, dict) else None
    if set(volume or {}) != {"name", "projected"} or not isinstance(sources, list):
        return actual
    if not any(isinstance(source, dict) and "serviceAccountToken" in source for source in sources):
        return actual
    return {**actual, "volumeMounts": mounts[:-1]}  # type: ignore[index]


def is_built(
    actual: Mapping[str, Any], expected: Mapping[str, Any], pod_spec: Mapping[str, Any]
) -> bool:
    """Whether ``actual`` is exactly ``expected`` as the API server stores it in the pod.

    Every field the builder sets must be equal (image, command, args, env, mounts,
    securityContext, resources...); a field it does not set may only be one the API
    server defaults, with its default value. Anything else (args, a privileged context,
    ``restartPolicy: Always``...) makes it another container. The one mount allowed in
    addition is the pod's service account token, read-only at its standard path, that
    the API server's ServiceAccount admission adds to every container: the command,
    fixed above, does not read it.
    """
    actual = _without_token_mount(actual, pod_spec)
    for key, value in actual.items():
        if key not in expected and _SERVER_DEFAULTS.get(key, _ABSENT) != value:
            return False
    return all(actual.get(key, _ABSENT) == value for key, value in expected.items())


def built_with(actual: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (digest, signer) a container of ours was built with, read back from it."""
    command = actual.get("command")
    env = actual.get("env")
    if not isinstance(command, list) or not isinstance(env, list) or "--digest" not in command:
        return None
    at = command.index("--digest") + 1
    signers = [
        e.get("value")
        for e in env
        if isinstance(e, dict) and e.get("name") == "MODELSHIELD_EXPECTED_SIGNER"
    ]
    if at >= len(command) or len(signers) != 1:
        return None
    digest, signer = command[at], signers[0]
    if not isinstance(digest, str) or not isinstance(signer, str):
        return None
    return digest, signer


def keys_volume_intact(pod_spec: Mapping[str, Any]) -> bool:
    """Whether the pod's volume of that name is the ConfigMap the operator writes.

    Otherwise another volume (an emptyDir, someone else's ConfigMap) could stand in for
    the keys the init container trusts. ``defaultMode: 420`` is the API server's default.
    """
    volumes = pod_spec.get("volumes")
    named = [
        v
        for v in (volumes if isinstance(volumes, list) else [])
        if isinstance(v, dict) and v.get("name") == KEYS_CONFIG_MAP
    ]
    if len(named) != 1:
        return False
    source = named[0].get("configMap")
    if set(named[0]) != {"name", "configMap"} or not isinstance(source, dict):
        return False
    return {k: v for k, v in source.items() if (k, v) != ("defaultMode", 420)} == {
        "name": KEYS_CONFIG_MAP
    }
