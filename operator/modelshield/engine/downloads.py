"""What KServe's storage initializer downloads: the URI it builds for a ``storage`` spec,
for a model URI the set of files, against what a ModelArtifact of that URI covers, and
the server it downloads them from.

Read from the ``kserve_storage`` package (v0.15.2, v0.17.0) that the storage initializer
runs, and from the operator's fetch (``modelartifacts.fetching``): where the two sets
differ, no verification covers what is served, so the URI is refused with what to write.
The same URI on another S3 server is another model: whatever in the initializer's
environment picks the server is refused too (``endpoint_choices``), unless it is a
literal naming the S3 endpoint the operator fetches from (``engine.s3endpoints``); and
so is whatever makes it accept another certificate for that server (verification off, a
CA bundle of the pod's): a man in the middle would be another server under its name.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from modelshield.engine import redacting

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
#: ``get_S3_config``: "true" sends requests to ``<bucket>.<endpoint host>`` (virtual
#: addressing) or to AWS's accelerate endpoint, another host than the one configured.
_ADDRESSING_VARIABLES = ("S3_USER_VIRTUAL_BUCKET", "S3_USE_ACCELERATE")
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
#: ``_get_s3_client_kwargs``: a non-empty value that is "0" or "false" (any case) turns
#: certificate verification off for the S3 server (boto3 ``verify=False``).
_VERIFY_VARIABLE = "S3_VERIFY_SSL"
#: What replaces the trust store the download's certificate is checked against:
#: AWS_CA_BUNDLE (a file; KServe's s3-cabundle annotation), CA_BUNDLE_CONFIGMAP_NAME
#: (then cabundle.crt under CA_BUNDLE_VOLUME_MOUNT_POINT; KServe's pod mutator adds both,
#: and the ConfigMap volume, for AWS_CA_BUNDLE_CONFIGMAP, its s3-cabundle-configmap
#: annotation), and for http(s):// models (requests, which honours them over its own
#: store) REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE.
_TRUST_VARIABLES = (
    "AWS_CA_BUNDLE",
    "AWS_CA_BUNDLE_CONFIGMAP",
    "CA_BUNDLE_CONFIGMAP_NAME",
    "CA_BUNDLE_VOLUME_MOUNT_POINT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)
#: Proxies botocore and requests honour (urllib's getproxies: either case). Over a plain
#: http:// S3 server or model URI the proxy answers the download itself, and the pod names
#: it; KServe sets none on its storage initializer.
_PROXY_VARIABLES = tuple(
    spelling
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    for spelling in (name, name.lower())
)
#: The storage spec's keys ``_update_with_storage_spec`` copies into those variables.
_STORAGE_JSON_TLS_KEYS = {"verify_ssl": _VERIFY_VARIABLE, "ca_bundle": "AWS_CA_BUNDLE"}
_MAN_IN_THE_MIDDLE = (
    "whoever sits between the pod and the S3 server could then serve another model under "
    "the verified URI"
)
#: How KServe's credential builder (pkg/credentials) fills AWS_ENDPOINT_URL.
_KSERVE_CREDENTIALS = (
    "KServe sets it from the S3 credentials of the pod's ServiceAccount (a Secret's "
    "serving.kserve.io/s3-endpoint annotation or S3_ENDPOINT entry, or its ConfigMap's "
    "s3Endpoint)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointChoice:
    """Something that picks the S3 server the storage initializer downloads from."""

    #: Relative to the container (or the annotation key).
    field: str
    why: str
    #: The endpoint as written, when it is a literal that can be compared with the one
    #: ModelArtifacts are fetched from (``s3endpoints.ModelStore.serves``); None when
    #: what it picks cannot be told, which is never admitted.
    endpoint: str | None = None


def _storage_json_choice(name: str, value: Any, field: str) -> EndpointChoice | None:
    """What a literal STORAGE_CONFIG/STORAGE_OVERRIDE_CONFIG picks, or None."""
    if isinstance(value, str) and VARIABLE_REFERENCE in value:
        # {"x": "$(V)"} with V = '", "endpoint_url": "http://evil' is another document.
        return EndpointChoice(
            field,
            f"{name} refers to another variable ($(...)), which the kubelet substitutes "
            "before the storage initializer reads it, so what it sets cannot be told; "
            "write it without $(",
        )
    try:
        document = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return EndpointChoice(field, f"{name} is not a JSON object, so what it sets cannot be told")
    if "endpoint_url" in document:
        written = document["endpoint_url"]
        endpoint = redacting.redact(str(written))
        why = (
            f"{name} sends the storage initializer to endpoint_url {endpoint!r} "
            "(KServe copies storage.parameters there)"
        )
        if isinstance(written, str) and written:
            return EndpointChoice(field, why, written)
        return EndpointChoice(field, f"{why}, which is not a URL; remove endpoint_url")
    for key, variable in _STORAGE_JSON_TLS_KEYS.items():
        if key not in document:
            continue
        value = document[key]
        # A non-string value makes os.environ raise; a string is judged as the variable.
        if key == "verify_ssl" and isinstance(value, str) and not _verification_off(value):
            continue
        return EndpointChoice(
            field,
            f"{name} sets {key} (KServe copies it to {variable}): "
            f"{_tls_problem(variable)}; remove {key}",
        )
    return None


def _verification_off(value: str) -> bool:
    """How ``_get_s3_client_kwargs`` reads S3_VERIFY_SSL (empty: unset, verified)."""
    return bool(value) and value.lower() in ("0", "false")


def _tls_problem(variable: str) -> str:
    if variable == _VERIFY_VARIABLE:
        return f"the storage initializer would not check the S3 server's certificate; {_MAN_IN_THE_MIDDLE}"
    return (
        "the storage initializer would accept certificates from a CA bundle the pod "
        f"supplies instead of the public trust store; {_MAN_IN_THE_MIDDLE}"
    )


def _tls_choice(name: str, entry: Mapping[str, Any], where: str) -> EndpointChoice | None:
    """Verification turned off, or a trust store of the pod's: never admitted."""
    if entry.get("valueFrom") is not None:
        return EndpointChoice(
            f"{where}.valueFrom",
            f"{name} comes from a ConfigMap or Secret, which admission does not read, and "
            f"it decides which certificates the storage initializer accepts; "
            f"{_tls_problem(name)} if it said so: write its value",
        )
    value = entry.get("value")
    if not isinstance(value, str) or value == "":
        return None  # unset
    if name == _VERIFY_VARIABLE and VARIABLE_REFERENCE not in value:
        if not _verification_off(value):
            return None
        return EndpointChoice(
            f"{where}.value", f"{name}={value!r}: {_tls_problem(name)}; remove it"
        )
    if name == _VERIFY_VARIABLE:
        return EndpointChoice(
            f"{where}.value",
            f"{name} refers to another variable ($(...)), which the kubelet substitutes, "
            "so whether certificates are checked cannot be told; write it without $(",
        )
    return EndpointChoice(f"{where}.value", f"{name} is set: {_tls_problem(name)}; remove it")


def _proxy_choice(name: str, entry: Mapping[str, Any], where: str) -> EndpointChoice | None:
    """A proxy for the download: refused whatever it names (empty: unset)."""
    if entry.get("valueFrom") is not None:
        field = f"{where}.valueFrom"
    elif isinstance(entry.get("value"), str) and entry["value"]:
        field = f"{where}.value"
    else:
        return None
    return EndpointChoice(
        field,
        f"{name} sends the storage initializer's download through a proxy the pod names; "
        "over plain HTTP that proxy answers it and could serve another model under the "
        "verified URI; remove it",
    )


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


def endpoint_choices(container: Mapping[str, Any]) -> list[EndpointChoice]:
    """Each thing in the storage initializer's environment that picks the S3 server it
    downloads from (``field`` relative to the container).

    The URIs are compared with ModelArtifacts, which the operator fetched from its own
    endpoint: a literal endpoint is admitted only when it is that one (``endpoint``, for
    ``s3endpoints.ModelStore.serves``); anything whose value cannot be told is refused.
    """
    found: list[EndpointChoice] = []
    if container.get("envFrom"):
        found.append(
            EndpointChoice(
                "envFrom",
                "the storage initializer takes variables from a ConfigMap or Secret "
                "(envFrom), which admission does not read; they may set AWS_ENDPOINT_URL "
                f"or {_STORAGE_OVERRIDE_CONFIG} and pick another S3 server",
            )
        )
    env = container.get("env")
    for index, entry in enumerate(env if isinstance(env, list) else ()):
        name = entry.get("name") if isinstance(entry, dict) else None
        judge_alone = _JUDGED_ALONE.get(name) if isinstance(name, str) else None
        if judge_alone is not None:
            assert isinstance(entry, dict)
            alone = judge_alone(str(name), entry, f"env[{index}]")
            if alone is not None:
                found.append(alone)
            continue
        if name not in _ENDPOINT_VARIABLES + _CONFIG_VARIABLES + _STORAGE_JSON_VARIABLES:
            continue
        assert isinstance(entry, dict)
        where = f"env[{index}]"
        if name in _CONFIG_VARIABLES:
            found.append(
                EndpointChoice(
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
            found.append(
                EndpointChoice(f"{where}.valueFrom", _from_elsewhere(str(name), entry["valueFrom"]))
            )
            continue
        value = entry.get("value")
        if name in _STORAGE_JSON_VARIABLES:
            if value is None or value == "":
                continue  # unset: kserve_storage reads "{}"
            choice = _storage_json_choice(str(name), value, f"{where}.value")
            if choice is not None:
                found.append(choice)
        elif isinstance(value, str) and value:
            found.append(
                EndpointChoice(
                    f"{where}.value",
                    f"the storage initializer downloads s3:// models from "
                    f"{redacting.redact(value)!r} ({name}; {_KSERVE_CREDENTIALS})",
                    value,
                )
            )
    return found


def _addressing_choice(name: str, entry: Mapping[str, Any], where: str) -> EndpointChoice | None:
    """Virtual-hosted or accelerated addressing: another host than the endpoint's."""
    if entry.get("valueFrom") is not None:
        field = f"{where}.valueFrom"
    elif str(entry.get("value", "")).lower() == "true":
        field = f"{where}.value"
    else:
        return None
    return EndpointChoice(
        field,
        f"{name} makes boto3 send the download to another host than the endpoint "
        "(<bucket>.<host>, or AWS's accelerate endpoint), which is not the server the "
        "operator fetched ModelArtifacts from; remove it",
    )


#: Variables judged each on its own value (or valueFrom), by name.
_JUDGED_ALONE: dict[str, Callable[[str, Mapping[str, Any], str], EndpointChoice | None]] = {
    **{name: _tls_choice for name in (_VERIFY_VARIABLE, *_TRUST_VARIABLES)},
    **{name: _proxy_choice for name in _PROXY_VARIABLES},
    **{name: _addressing_choice for name in _ADDRESSING_VARIABLES},
}


def default_endpoint_choice(container: Mapping[str, Any], uris: list[str]) -> EndpointChoice | None:
    """The AWS default, when the storage initializer downloads an s3:// URI and is told
    no endpoint: ``_get_s3_client_kwargs`` passes AWS_ENDPOINT_URL, and without it boto3
    goes to AWS S3, which is another server than a configured ``--s3-endpoint``.

    Of several entries of one name the kubelet keeps the last; an empty value is unset.
    """
    if not any(uri.startswith("s3://") for uri in uris):
        return None
    env = container.get("env")
    last: Mapping[str, Any] | None = None
    for entry in env if isinstance(env, list) else ():
        if isinstance(entry, dict) and entry.get("name") == _ENDPOINT_VARIABLES[0]:
            last = entry
    if last is not None and (last.get("valueFrom") is not None or last.get("value")):
        return None
    return EndpointChoice(
        "env",
        "the storage initializer is told no S3 endpoint (no AWS_ENDPOINT_URL; "
        f"{_KSERVE_CREDENTIALS}), so boto3 downloads s3:// models from AWS S3",
        "",
    )


def storage_spec_choice(
    annotations: Mapping[str, Any], spec_key: str, params_key: str
) -> list[EndpointChoice]:
    """What picks the server when KServe's pod mutator will hand the storage initializer
    a storage spec (``storage-spec: "true"``): the storage Secret's entry, and the
    ``storage-spec-param`` JSON as STORAGE_OVERRIDE_CONFIG (``field``: the annotation)."""
    if annotations.get(spec_key) != "true":
        return []
    found = [
        EndpointChoice(
            spec_key,
            "KServe's pod mutator will hand the storage initializer the storage Secret's "
            f"entry ({_STORAGE_CONFIG}), whose endpoint_url admission does not read; "
            f"{_NOT_THE_VERIFIED_SERVER}; serve the model by storageUri instead of a "
            "storage spec",
        )
    ]
    params = annotations.get(params_key)
    if params is not None:
        choice = _storage_json_choice(_STORAGE_OVERRIDE_CONFIG, params, params_key)
        if choice is not None:
            found.append(choice)
    return found
