"""What KServe's storage initializer downloads: the URI it builds for a ``storage`` spec,
for a model URI the set of files, against what a ModelArtifact of that URI covers, and
the server it downloads them from.

Read from the ``kserve_storage`` package (v0.15.2, v0.17.0) that the storage initializer
runs, and from the operator's fetch (``modelartifacts.fetching``): where the two sets
differ, no verification covers what is served, so the URI is refused with what to write.
The same URI on another S3 server is another model: whatever in the initializer's
environment picks the server is refused too (``endpoint_choices``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from modelshield.modelartifacts import redacting

#: credentials.StorageBucketTypes: the storage types whose URI includes a bucket.
_BUCKET_TYPES = frozenset({"s3"})

#: Where the ``kserve_storage`` package downloads more than the URI's own directory.
_PREFIX_LISTINGS = (
    re.compile(r"https://(.+?)\.blob\.core\.windows\.net/(.+)"),
    re.compile(r"https://(.+?)\.z[0-9]{1,2}\.blob\.storage\.azure\.net/(.+)"),
    re.compile(r"https://(.+?)\.file\.core\.windows\.net/(.+)"),
    re.compile(r"https://(.+?)\.z[0-9]{1,2}\.file\.storage\.azure\.net/(.+)"),
)
_GIT = re.compile(r"https://.+\.git")


def download_boundary_problem(uri: str) -> str | None:
    """Why the storage initializer would download more than a ModelArtifact of this URI
    covers, or None.

    ``Storage._download_s3`` lists ``bucket.objects.filter(Prefix=path)``: without a
    trailing slash every key that merely starts with the path is downloaded too
    (``models/fraud-evil/...`` for ``s3://b/models/fraud``), while the operator verifies
    the directory ``models/fraud/``. Azure URLs are listed by name prefix the same way,
    and a ``.git`` URL is cloned, where the operator fetches one file.
    """
    if uri.startswith("s3://") and not uri.endswith("/"):
        return (
            "KServe's storage initializer downloads every object whose key starts with the "
            "path (siblings such as '<path>-other/' too), not only the directory that a "
            "ModelArtifact covers; end the URI with '/' (here and in the ModelArtifact)"
        )
    if any(pattern.search(uri) for pattern in _PREFIX_LISTINGS):
        return (
            "KServe's storage initializer downloads every Azure blob whose name starts with "
            "the path, which no ModelArtifact verifies; serve the model from s3://, oci:// "
            "or pvc://"
        )
    if _GIT.search(uri):
        return (
            "KServe's storage initializer clones a git repository, which no ModelArtifact verifies"
        )
    return None


def storage_spec_uri(path: str, parameters: Any) -> tuple[str | None, str]:
    """The URI KServe builds for ``storage.path`` (credentials.CreateStorageSpecSecretEnvs).

    ``parameters`` override the storage Secret's ``type`` and ``bucket``; without them the
    Secret decides, which admission does not read: (None, why).
    """
    params = parameters if isinstance(parameters, dict) else {}
    kind, bucket = params.get("type"), params.get("bucket")
    relative = path.removeprefix("/")
    if not isinstance(kind, str) or not kind:
        return None, (
            "its storage type and bucket come from the storage Secret, which admission does "
            "not read; name them in storage.parameters (type, bucket)"
        )
    if kind not in _BUCKET_TYPES:
        return f"{kind}://{relative}", ""
    if not isinstance(bucket, str) or not bucket:
        return None, (
            "its bucket comes from the storage Secret, which admission does not read; name "
            "it in storage.parameters.bucket"
        )
    return f"{kind}://{bucket}/{relative}", ""


#: Read by boto3 (the explicit ``endpoint_url`` that ``_get_s3_client_kwargs`` passes,
#: or botocore's service-specific variable when that is unset): the S3 server.
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
#: An AWS config file (or a profile of one) may name endpoint_url, which botocore reads
#: when no endpoint variable is set. KServe sets neither on its storage initializer.
_CONFIG_VARIABLES = ("AWS_CONFIG_FILE", "AWS_PROFILE")
#: JSON objects ``Storage._update_with_storage_spec`` merges (override last) and whose
#: ``endpoint_url`` it writes into AWS_ENDPOINT_URL before every download.
#: The kubelet substitutes $(NAME) in a container's env values, command and args.
VARIABLE_REFERENCE = "$("
_STORAGE_CONFIG = "STORAGE_CONFIG"
_STORAGE_OVERRIDE_CONFIG = "STORAGE_OVERRIDE_CONFIG"
_STORAGE_JSON_VARIABLES = (_STORAGE_CONFIG, _STORAGE_OVERRIDE_CONFIG)
_NOT_THE_VERIFIED_SERVER = (
    "admission cannot tell that it is the server the operator verified ModelArtifacts "
    "from, and the same URI on another server is another model"
)
#: How KServe's credential builder (pkg/credentials) fills AWS_ENDPOINT_URL.
_KSERVE_CREDENTIALS = (
    "KServe sets it from the S3 credentials of the pod's ServiceAccount (a Secret's "
    "serving.kserve.io/s3-endpoint annotation or S3_ENDPOINT entry, or its ConfigMap's "
    "s3Endpoint)"
)


def _storage_json_choice(name: str, value: Any) -> str | None:
    """Why a literal STORAGE_CONFIG/STORAGE_OVERRIDE_CONFIG picks the server, or None."""
    if isinstance(value, str) and VARIABLE_REFERENCE in value:
        # {"x": "$(V)"} with V = '", "endpoint_url": "http://evil' is another document.
        return (
            f"{name} refers to another variable ($(...)), which the kubelet substitutes "
            "before the storage initializer reads it, so what it sets cannot be told; "
            "write it without $("
        )
    try:
        document = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return f"{name} is not a JSON object, so what it sets cannot be told"
    if "endpoint_url" in document:
        endpoint = redacting.redact(str(document["endpoint_url"]))
        return (
            f"{name} sends the storage initializer to endpoint_url {endpoint!r} "
            f"(KServe copies storage.parameters there); {_NOT_THE_VERIFIED_SERVER}; remove "
            "endpoint_url"
        )
    return None


def _from_elsewhere(name: str, source: Any) -> str:
    """Why a variable set from a ConfigMap or Secret (valueFrom) may pick the server."""
    secret = source.get("secretKeyRef") if isinstance(source, dict) else None
    if name == _STORAGE_CONFIG and isinstance(secret, dict):
        # CreateStorageSpecSecretEnvs: KServe's own way of handing over `storage.key`.
        return (
            f"the storage initializer reads the entry {secret.get('key')!r} of storage "
            f"Secret {secret.get('name')!r} ({name}), whose endpoint_url admission does "
            f"not read; {_NOT_THE_VERIFIED_SERVER}; serve the model by storageUri instead "
            "of a storage spec"
        )
    return (
        f"{name} comes from a ConfigMap or Secret, which admission does not read, and it "
        f"picks the S3 server the storage initializer downloads from; write its value"
    )


def endpoint_choices(container: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, why) for each thing in the storage initializer's environment that picks
    the S3 server it downloads from (``field`` relative to the container).

    The URIs are compared with ModelArtifacts, which the operator fetched from its own
    endpoint: admission does not know that endpoint (it is the operator's setting), so
    any server named here is refused rather than trusted.
    """
    found: list[tuple[str, str]] = []
    if container.get("envFrom"):
        found.append(
            (
                "envFrom",
                "the storage initializer takes variables from a ConfigMap or Secret "
                "(envFrom), which admission does not read; they may set AWS_ENDPOINT_URL "
                f"or {_STORAGE_OVERRIDE_CONFIG} and pick another S3 server",
            )
        )
    env = container.get("env")
    for index, entry in enumerate(env if isinstance(env, list) else ()):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in _ENDPOINT_VARIABLES + _CONFIG_VARIABLES + _STORAGE_JSON_VARIABLES:
            continue
        assert isinstance(entry, dict)
        where = f"env[{index}]"
        if name in _CONFIG_VARIABLES:
            found.append(
                (
                    f"{where}.valueFrom"
                    if entry.get("valueFrom") is not None
                    else f"{where}.value",
                    f"{name} makes the storage initializer read an AWS config whose "
                    f"endpoint_url picks the S3 server, which admission does not read; "
                    "KServe never sets it: remove it",
                )
            )
            continue
        if entry.get("valueFrom") is not None:
            found.append((f"{where}.valueFrom", _from_elsewhere(str(name), entry["valueFrom"])))
            continue
        value = entry.get("value")
        if name in _STORAGE_JSON_VARIABLES:
            if value is None or value == "":
                continue  # unset: kserve_storage reads "{}"
            why = _storage_json_choice(str(name), value)
            if why is not None:
                found.append((f"{where}.value", why))
        elif isinstance(value, str) and value:
            endpoint = redacting.redact(value)
            found.append(
                (
                    f"{where}.value",
                    f"the storage initializer downloads s3:// models from {endpoint!r} "
                    f"({name}; {_KSERVE_CREDENTIALS}); {_NOT_THE_VERIFIED_SERVER}",
                )
            )
    return found


def storage_spec_choice(
    annotations: Mapping[str, Any], spec_key: str, params_key: str
) -> list[tuple[str, str]]:
    """(annotation, why) when KServe's pod mutator will hand the storage initializer a
    storage spec (``storage-spec: "true"``): the storage Secret's entry, and the
    ``storage-spec-param`` JSON as STORAGE_OVERRIDE_CONFIG."""
    if annotations.get(spec_key) != "true":
        return []
    found = [
        (
            spec_key,
            "KServe's pod mutator will hand the storage initializer the storage Secret's "
            f"entry ({_STORAGE_CONFIG}), whose endpoint_url admission does not read; "
            f"{_NOT_THE_VERIFIED_SERVER}; serve the model by storageUri instead of a "
            "storage spec",
        )
    ]
    params = annotations.get(params_key)
    if params is not None:
        why = _storage_json_choice(_STORAGE_OVERRIDE_CONFIG, params)
        if why is not None:
            found.append((params_key, why))
    return found
