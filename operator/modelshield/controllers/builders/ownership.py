"""Who made an owned object and for whom: owner references, labels, and the content hash.

Every object the operator makes carries:

- owner references to the workload (the controller) and to every policy that asked for
  it, so that Kubernetes' garbage collector removes it once all of them are gone (the
  operator itself removes it as soon as any one is);
- labels ``app.kubernetes.io/managed-by: modelshield``, ``modelshield.dev/policy`` and
  ``modelshield.dev/workload`` (who made it, for which policy and workload);
- the annotation ``modelshield.dev/content-hash``: a digest of what the operator wrote.

A hand edit is found by comparing the live object with the desired one (``drift``): every
field the operator sets must hold the value it set, no list may grow or shrink, and the
only fields allowed beyond those are the ones the API server fills in with defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelshield"
COMPONENT_LABEL = "app.kubernetes.io/component"
POLICY_LABEL = "modelshield.dev/policy"
WORKLOAD_LABEL = "modelshield.dev/workload"
HASH_ANNOTATION = "modelshield.dev/content-hash"
POLICIES_ANNOTATION = "modelshield.dev/policies"
WORKLOAD_ANNOTATION = "modelshield.dev/workload"

#: Label selector (string form) of everything the operator made.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

_LABEL_VALUE_MAX = 63
_NAME_MAX = 63
_INVALID_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")

#: Fields the API server fills in with defaults, per kind, as paths with ``*`` for any list
#: index. Only these may appear in a live object without being in the desired one.
SERVER_DEFAULTS: Mapping[str, frozenset[str]] = {
    "NetworkPolicy": frozenset(),
    "ConfigMap": frozenset(),
    "ServiceAccount": frozenset(),
    "Role": frozenset(),
    "RoleBinding": frozenset(),
    "Service": frozenset(
        {
            "spec.clusterIP",
            "spec.clusterIPs",
            "spec.ipFamilies",
            "spec.ipFamilyPolicy",
            "spec.sessionAffinity",
            "spec.type",
            "spec.internalTrafficPolicy",
            "spec.ports[*].targetPort",
            "spec.ports[*].protocol",
        }
    ),
    "Deployment": frozenset(
        {
            "spec.revisionHistoryLimit",
            "spec.progressDeadlineSeconds",
            "spec.strategy",
            "spec.template.spec.restartPolicy",
            "spec.template.spec.terminationGracePeriodSeconds",
            "spec.template.spec.dnsPolicy",
            "spec.template.spec.schedulerName",
            # The deprecated alias of serviceAccountName, filled in from it.
            "spec.template.spec.serviceAccount",
            "spec.template.spec.containers[*].terminationMessagePath",
            "spec.template.spec.containers[*].terminationMessagePolicy",
            "spec.template.spec.containers[*].imagePullPolicy",
            "spec.template.spec.containers[*].ports[*].protocol",
            "spec.template.spec.containers[*].readinessProbe.timeoutSeconds",
            "spec.template.spec.containers[*].readinessProbe.periodSeconds",
            "spec.template.spec.containers[*].readinessProbe.successThreshold",
            "spec.template.spec.containers[*].readinessProbe.failureThreshold",
            "spec.template.spec.containers[*].readinessProbe.httpGet.scheme",
            "spec.template.spec.containers[*].livenessProbe.timeoutSeconds",
            "spec.template.spec.containers[*].livenessProbe.periodSeconds",
            "spec.template.spec.containers[*].livenessProbe.successThreshold",
            "spec.template.spec.containers[*].livenessProbe.failureThreshold",
            "spec.template.spec.containers[*].livenessProbe.httpGet.scheme",
            "spec.template.spec.volumes[*].configMap.defaultMode",
        }
    ),
}

#: The parts of each kind that the operator writes and compares (metadata is handled apart).
CONTENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "NetworkPolicy": ("spec",),
    "ConfigMap": ("data", "binaryData"),
    "ServiceAccount": ("automountServiceAccountToken", "imagePullSecrets", "secrets"),
    "Role": ("rules",),
    "RoleBinding": ("roleRef", "subjects"),
    "Service": ("spec",),
    "Deployment": ("spec",),
}


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to point an owner reference at it."""

    api_version: str
    kind: str
    name: str
    uid: str
    namespace: str = ""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ObjectRef:
        """The reference of a Kubernetes object given as a dict."""
        metadata = body.get("metadata") or {}
        return cls(
            api_version=str(body.get("apiVersion", "")),
            kind=str(body.get("kind", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            namespace=str(metadata.get("namespace") or ""),
        )

    @property
    def display(self) -> str:
        """kind/namespace/name (kind/name for cluster-scoped objects)."""
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclasses.dataclass(frozen=True)
class Governance:
    """An owned object's origin: the workload it serves and the policies that asked for it."""

    workload: ObjectRef
    policies: tuple[ObjectRef, ...]
    component: str


def label_value(text: str) -> str:
    """A valid label value naming ``text``: itself when it fits, else a prefix and a digest."""
    cleaned = _INVALID_LABEL_CHARACTERS.sub("-", text).strip("-_.")
    if cleaned == text and len(text) <= _LABEL_VALUE_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    prefix = cleaned[: _LABEL_VALUE_MAX - len(digest) - 1].rstrip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


_KIND_ABBREVIATIONS = {"Deployment": "deploy", "StatefulSet": "sts", "InferenceService": "isvc"}


def child_name(component: str, workload_kind: str, workload_name: str) -> str:
    """A DNS-label name for an owned object, unique per (component, workload kind, name)."""
    kind = _KIND_ABBREVIATIONS.get(workload_kind, workload_kind.lower())
    name = f"ms-{component}-{kind}-{workload_name}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: _NAME_MAX - len(digest) - 1].rstrip('-.')}-{digest}"


def owner_references(governance: Governance) -> list[dict[str, Any]]:
    """The workload as controller, then each policy; the GC needs all of them gone."""
    references = [_owner_reference(governance.workload, controller=True)]
    references.extend(_owner_reference(policy, controller=False) for policy in governance.policies)
    return references


def _owner_reference(ref: ObjectRef, *, controller: bool) -> dict[str, Any]:
    return {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "name": ref.name,
        "uid": ref.uid,
        "controller": controller,
        # Deleting the owner must never wait on the operator's objects.
        "blockOwnerDeletion": False,
    }


def labels(governance: Governance) -> dict[str, str]:
    """The labels that say who made the object, for which workload and policy."""
    first_policy = governance.policies[0].name if governance.policies else ""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        COMPONENT_LABEL: governance.component,
        WORKLOAD_LABEL: label_value(governance.workload.name),
        POLICY_LABEL: label_value(first_policy),
    }


def stamp(obj: Mapping[str, Any], governance: Governance) -> dict[str, Any]:
    """The object with ownership metadata and its content hash added (a new dict)."""
    # Only metadata is changed: a shallow copy of the rest shares the (fresh) content.
    stamped = dict(obj)
    metadata = stamped["metadata"] = copy.deepcopy(dict(obj.get("metadata") or {}))
    metadata["labels"] = {**metadata.get("labels", {}), **labels(governance)}
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        WORKLOAD_ANNOTATION: governance.workload.display,
        POLICIES_ANNOTATION: ",".join(policy.display for policy in governance.policies),
    }
    metadata["ownerReferences"] = owner_references(governance)
    metadata["annotations"][HASH_ANNOTATION] = content_hash(stamped)
    return stamped


def content_hash(obj: Mapping[str, Any]) -> str:
    """A digest of what the operator writes: content fields, labels and annotations."""
    metadata = obj.get("metadata") or {}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != HASH_ANNOTATION
    }
    kind = str(obj.get("kind", ""))
    hashed = {
        "kind": kind,
        "labels": metadata.get("labels") or {},
        "annotations": annotations,
        "owners": [
            (ref.get("kind"), ref.get("name"), ref.get("uid"))
            for ref in metadata.get("ownerReferences") or []
        ],
        "content": {field: obj.get(field) for field in CONTENT_FIELDS.get(kind, ("spec",))},
    }
    encoded = json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(encoded.encode()).hexdigest()


def drift(live: Mapping[str, Any], desired: Mapping[str, Any]) -> str | None:
    """Why the live object is not what the operator wrote, or None when it is.

    ``desired`` is a stamped object. Fields the API server defaults (``SERVER_DEFAULTS``)
    may appear in ``live``; anything else that differs is an edit to revert.
    """
    live_metadata = live.get("metadata") or {}
    desired_metadata = desired.get("metadata") or {}
    live_annotations = live_metadata.get("annotations") or {}
    for key, value in (desired_metadata.get("annotations") or {}).items():
        if live_annotations.get(key) != value:
            return f"annotation {key} is {live_annotations.get(key)!r}, expected {value!r}"
    live_labels = live_metadata.get("labels") or {}
    for key, value in (desired_metadata.get("labels") or {}).items():
        if live_labels.get(key) != value:
            return f"label {key} is {live_labels.get(key)!r}, expected {value!r}"
    live_owners = {ref.get("uid") for ref in live_metadata.get("ownerReferences") or []}
    for ref in desired_metadata.get("ownerReferences") or []:
        if ref["uid"] not in live_owners:
            return f"owner reference to {ref['kind']} {ref['name']} is missing"
    kind = str(desired.get("kind", ""))
    defaults = SERVER_DEFAULTS.get(kind, frozenset())
    for field in CONTENT_FIELDS.get(kind, ("spec",)):
        difference = _difference(live.get(field), prune(desired.get(field)), field, defaults)
        if difference is not None:
            return difference
    return None


def prune(value: Any) -> Any:
    """The value without empty maps, lists and nulls, as the API server returns objects."""
    if isinstance(value, Mapping):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not _is_empty(v)}
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _allowed_default(path: str, defaults: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in _escaped(defaults))


def _escaped(patterns: Iterable[str]) -> Iterable[str]:
    # fnmatch reads [..] as a character class; the patterns mean list indexes.
    for pattern in patterns:
        yield pattern.replace("[", "[[]")


def _difference(live: Any, desired: Any, path: str, defaults: frozenset[str]) -> str | None:
    if isinstance(desired, Mapping):
        live_map = live if isinstance(live, Mapping) else {}
        if not isinstance(live, Mapping) and not _is_empty(live) and desired:
            return f"{path} is not an object"
        for key, value in desired.items():
            found = _difference(live_map.get(key), value, f"{path}.{key}", defaults)
            if found is not None:
                return found
        for key, value in live_map.items():
            if key in desired or _is_empty(value):
                continue
            if not _allowed_default(f"{path}.{key}", defaults):
                return f"{path}.{key} was added"
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return f"{path} has {len(live) if isinstance(live, list) else 0} entries, expected {len(desired)}"
        for index, (live_item, desired_item) in enumerate(zip(live, desired, strict=True)):
            found = _difference(live_item, desired_item, f"{path}[{index}]", defaults)
            if found is not None:
                return found
        return None
    if _is_empty(desired) and _is_empty(live):
        return None
    if live != desired:
        return f"{path} is {live!r}, expected {desired!r}"
    return None
