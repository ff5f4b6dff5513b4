"""The ``modelshield-model-keys`` ConfigMap of a namespace: which public keys it holds.

The startup re-verification init container (``engine.startup``) reads the key of
the signer a ModelArtifact's status recorded from ``<artifact>.<signer>.pub`` in this
ConfigMap. What goes in it, per verified artifact, is the public key that the governing
policies give that signer *now* (inline ``publicKey``, or the ``secretRef`` Secret's
value): a key rotated out of the policies stops being trusted at pod start at once.

Only public keys ever go in: every PEM is parsed as a public key and written back in its
canonical SubjectPublicKeyInfo form, so a Secret holding anything else (a private key, a
bundle with extra blocks) contributes nothing but a problem report. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import exceptions
from cryptography.hazmat.primitives import serialization

from modelshield.api.v1alpha1 import artifacts, policies
from modelshield.controllers.builders import ownership
from modelshield.engine import startup

NAME = startup.KEYS_CONFIG_MAP
COMPONENT = "model-keys"
ARTIFACT_API_VERSION = "modelshield.dev/v1alpha1"

# Reasons of the Warning Events posted on a ModelArtifact whose key is not published.
CONFLICT = "ModelKeysConfigMapNotManaged"
AMBIGUOUS = "SignerKeyAmbiguous"
UNAVAILABLE = "SignerKeyUnavailable"
NAME_CLASH = "ModelKeyNameClash"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """What the ConfigMap needs of one ModelArtifact."""

    name: str
    uid: str
    #: The signer its status recorded, when the Verified condition is True.
    signer: str | None


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why an artifact's key is not published (posted as a Warning Event on it)."""

    artifact: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class SignerKeys:
    """What the governing policies say about one signer name."""

    #: The distinct canonical public keys given under this name.
    keys: frozenset[str] = frozenset()
    #: Why some definitions of this name gave no usable key (keyless, Secret missing...).
    unusable: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Contents:
    """The ConfigMap's data, and the artifacts whose key could not go in."""

    data: dict[str, str]
    problems: tuple[Problem, ...]


def artifact_of(body: Mapping[str, Any]) -> Artifact:
    """The artifact's name, uid and verified signer, read leniently from its body."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    verified = any(
        isinstance(c, Mapping) and c.get("type") == artifacts.VERIFIED and c.get("status") == "True"
        for c in conditions
    )
    signer = status.get("signer")
    return Artifact(
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        signer=signer if verified and isinstance(signer, str) and signer else None,
    )


def canonical_public_key(pem: bytes) -> str | None:
    """The PEM's public key as canonical SubjectPublicKeyInfo PEM; None if it holds none."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, exceptions.UnsupportedAlgorithm):
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def signer_keys(
    requirements: Iterable[policies.ModelRequirements],
    secret_keys: Mapping[tuple[str, str], bytes],
) -> dict[str, SignerKeys]:
    """Every signer name of the governing policies, with the public keys given for it.

    ``secret_keys`` holds the values of the ``secretRef`` keys that could be read, by
    (Secret name, key); a reference missing from it could not be read.
    """
    keys: dict[str, set[str]] = {}
    unusable: dict[str, list[str]] = {}
    for requirement in requirements:
        for signer in requirement.signers:
            keys.setdefault(signer.name, set())
            problem: str | None = None
            if signer.public_key is not None:
                canonical = canonical_public_key(signer.public_key.encode())
                problem = None if canonical else "its publicKey is not a PEM public key"
            elif signer.secret_ref is not None:
                reference = f"Secret {signer.secret_ref.name} key {signer.secret_ref.key}"
                value = secret_keys.get((signer.secret_ref.name, signer.secret_ref.key))
                canonical = canonical_public_key(value) if value is not None else None
                if value is None:
                    problem = f"{reference} could not be read"
                elif canonical is None:
                    problem = f"{reference} does not hold a PEM public key"
            else:
                canonical = None
                problem = (
                    "it is a keyless identity: there is no public key to re-verify with at "
                    "pod start"
                )
            if canonical is not None:
                keys[signer.name].add(canonical)
            if problem is not None:
                unusable.setdefault(signer.name, []).append(problem)
    return {
        name: SignerKeys(frozenset(found), tuple(unusable.get(name, ())))
        for name, found in keys.items()
    }


def _key_for(artifact: Artifact, signer: str, known: Mapping[str, SignerKeys]) -> str | Problem:
    found = known.get(signer)
    what = f"the public key of signer {signer!r} (which verified {artifact.name!r})"
    if found is None:
        return Problem(
            artifact.name,
            UNAVAILABLE,
            f"{what} is not published: no policy governing this namespace names that signer "
            "any more",
        )
    if len(found.keys) > 1:
        return Problem(
            artifact.name,
            AMBIGUOUS,
            f"{what} is not published: the governing policies give {len(found.keys)} "
            "different keys under that name; give each key its own signer name",
        )
    if found.unusable:
        return Problem(
            artifact.name,
            UNAVAILABLE,
            f"{what} is not published: {'; '.join(found.unusable)}",
        )
    if not found.keys:
        return Problem(artifact.name, UNAVAILABLE, f"{what} is not published: no key given")
    return next(iter(found.keys))


def contents(artifacts_: Iterable[Artifact], known: Mapping[str, SignerKeys]) -> Contents:
    """The data the ConfigMap should hold: one key file per verified artifact."""
    data: dict[str, str] = {}
    claimed: dict[str, str] = {}
    clashing: set[str] = set()
    problems: list[Problem] = []
    for artifact in sorted(artifacts_, key=lambda a: a.name):
        if artifact.signer is None:
            continue
        file_name = startup.key_file_name(artifact.name, artifact.signer)
        if file_name in claimed:
            # Only a crafted name can do this (see key_file_name): publish neither.
            clashing.add(file_name)
            for name in (claimed[file_name], artifact.name):
                problems.append(
                    Problem(
                        name,
                        NAME_CLASH,
                        f"the key file name {file_name!r} is shared by ModelArtifacts "
                        f"{claimed[file_name]!r} and {artifact.name!r}; rename one",
                    )
                )
            continue
        claimed[file_name] = artifact.name
        key = _key_for(artifact, artifact.signer, known)
        if isinstance(key, Problem):
            problems.append(key)
        else:
            data[file_name] = key
    for file_name in clashing:
        data.pop(file_name, None)
    return Contents(data, tuple(dict.fromkeys(problems)))


def is_managed(config_map: Mapping[str, Any]) -> bool:
    """Whether modelshield manages this ConfigMap (it never touches one it does not)."""
    labels = (config_map.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(ownership.MANAGED_BY_LABEL) == ownership.MANAGED_BY)


def build(namespace: str, data: Mapping[str, str], owners: Iterable[Artifact]) -> dict[str, Any]:
    """The ConfigMap, owned by the namespace's ModelArtifacts.

    The owner references let the garbage collector remove it once the last artifact is
    gone, even while the operator is down; none is a controller or blocks deletion.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {
                ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY,
                ownership.COMPONENT_LABEL: COMPONENT,
            },
            "ownerReferences": [
                {
                    "apiVersion": ARTIFACT_API_VERSION,
                    "kind": "ModelArtifact",
                    "name": owner.name,
                    "uid": owner.uid,
                }
                for owner in sorted(owners, key=lambda a: a.name)
                if owner.uid
            ],
        },
        "data": dict(sorted(data.items())),
    }


@dataclasses.dataclass(frozen=True)
class Action:
    """What to do with the ConfigMap: ``create``, ``replace``, ``delete``, ``conflict`` or
    ``none``; ``body`` for create and replace, ``uid`` and ``resource_version`` of the live
    object where it matters."""

    verb: str
    body: dict[str, Any] | None = None
    resource_version: str = ""
    uid: str = ""


def _differs(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    live_metadata = live.get("metadata") or {}
    desired_metadata = desired["metadata"]
    labels = live_metadata.get("labels") or {}
    owners = [
        {key: reference.get(key) for key in ("apiVersion", "kind", "name", "uid")}
        for reference in live_metadata.get("ownerReferences") or []
    ]
    return bool(
        (live.get("data") or {}) != desired["data"]
        or live.get("binaryData")
        or any(labels.get(k) != v for k, v in desired_metadata["labels"].items())
        or owners != desired_metadata["ownerReferences"]
    )


def plan(
    namespace: str,
    live: Mapping[str, Any] | None,
    artifacts_: Iterable[Artifact],
    data: Mapping[str, str],
) -> Action:
    """Compare the live ConfigMap (None when absent) with what the artifacts call for.

    It exists while the namespace has ModelArtifacts (empty when none is verified, so a pod
    admitted meanwhile fails in its init container, with a message, rather than waiting
    for a volume), and is removed with the last one. One modelshield does not manage is
    left alone and reported.
    """
    present = list(artifacts_)
    metadata = (live or {}).get("metadata") or {}
    if live is not None and not is_managed(live):
        return Action("conflict") if present else Action("none")
    if not present:
        return Action("delete", uid=str(metadata.get("uid", ""))) if live else Action("none")
    desired = build(namespace, data, present)
    if live is None:
        return Action("create", desired)
    if _differs(live, desired):
        # Labels and annotations others added are kept; the content is ours.
        merged = {
            **desired,
            "metadata": {
                **{k: v for k, v in metadata.items() if k in ("labels", "annotations")},
                **desired["metadata"],
                "labels": {**(metadata.get("labels") or {}), **desired["metadata"]["labels"]},
            },
        }
        return Action("replace", merged, str(metadata.get("resourceVersion", "")))
    return Action("none")


def conflict_problems(artifacts_: Iterable[Artifact]) -> tuple[Problem, ...]:
    """What to tell each verified artifact when a ConfigMap we do not manage has the name."""
    return tuple(
        Problem(
            artifact.name,
            CONFLICT,
            f"ConfigMap {NAME} exists in this namespace but is not managed by modelshield "
            f"(no label {ownership.MANAGED_BY_LABEL}={ownership.MANAGED_BY}); it is left as "
            "it is, so pods that re-verify this model at start cannot read its key: delete "
            "or rename that ConfigMap",
        )
        for artifact in sorted(artifacts_, key=lambda a: a.name)
        if artifact.signer is not None
    )
