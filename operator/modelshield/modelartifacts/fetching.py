"""Fetching a ModelArtifact's files from its URI into a local directory, streaming.

Schemes: ``file://`` and ``pvc://`` (a mounted path, used in place, never copied, and
confined by ``localpaths``), ``http(s)://`` (one file, an archive to unpack, or a
directory whose signed manifest lists the files), ``s3://`` (every object under a prefix)
and ``oci://`` (a model pushed as an OCI artifact). Downloads stream within a byte limit,
a file-count limit and an overall deadline; archives are unpacked without links or paths
that leave the directory; credentials never follow a redirect to another origin.
"""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from modelshield.modelartifacts import (
    buckets,
    hashing,
    localpaths,
    ociartifacts,
    streaming,
    transfers,
)

#: ``fetch``'s settings, named here as well for callers that only fetch (the startup
#: check's script in e2e/pods, bench/bench_provenance.py); the type is transfers'.
Settings = transfers.Settings

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


@dataclass(frozen=True)
class FetchedModel:
    """The local directory holding the model, and whether it is a copy to clean up."""

    directory: pathlib.Path
    copied: bool
    bytes: int


def _local(uri: str, settings: transfers.Settings, namespace: str) -> FetchedModel:
    path = localpaths.local_path(uri, settings, namespace)
    if not path.is_dir():
        raise transfers.FetchError(transfers.FETCH_FAILED, f"{uri} is not a directory")
    size = hashing.model_size(path)
    return FetchedModel(path, copied=False, bytes=size)


def _http_get(
    url: str, settings: transfers.Settings, headers: Mapping[str, str] | None = None
) -> BinaryIO:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - http(s) only
    try:
        return streaming.open_url(request, settings)
    except OSError as error:
        raise transfers.FetchError(transfers.FETCH_FAILED, f"GET {url}: {error}") from error


def _http(
    uri: str, destination: pathlib.Path, settings: transfers.Settings, budget: transfers.Budget
) -> None:
    name = urllib.parse.urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1]
    if uri.endswith("/"):
        # A directory: its signed manifest says which files make up the model.
        signature = destination / hashing.DEFAULT_SIGNATURE_NAME
        with _http_get(uri + hashing.DEFAULT_SIGNATURE_NAME, settings) as response:
            streaming.write_stream(streaming.read_chunks(response), signature, budget)
        for resource in _signed_resources(signature):
            target = destination / streaming.safe_relative(resource)
            with _http_get(uri + urllib.parse.quote(resource), settings) as response:
                streaming.write_stream(streaming.read_chunks(response), target, budget)
        return
    if not name:
        raise transfers.FetchError(
            transfers.UNSUPPORTED_URI, f"{uri} names neither a file nor a directory (end it with /)"
        )
    with _http_get(uri, settings) as response:
        if name.endswith(_ARCHIVE_SUFFIXES):
            archive = destination.parent / f".{destination.name}-{name}"
            try:
                streaming.write_stream(streaming.read_chunks(response), archive, budget)
                streaming.unpack(archive, destination, budget)
            finally:
                archive.unlink(missing_ok=True)
        else:
            streaming.write_stream(
                streaming.read_chunks(response), destination / streaming.safe_relative(name), budget
            )


def _signed_resources(signature: pathlib.Path) -> list[str]:
    try:
        bundle = json.loads(signature.read_bytes())
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        resources = [str(item["name"]) for item in statement["predicate"]["resources"]]
    except (KeyError, TypeError, ValueError) as error:
        raise transfers.FetchError(
            transfers.FETCH_FAILED, f"the signature lists no files: {error}"
        ) from error
    # Shard names are "path:start:end"; fetch each file once.
    return sorted({resource.split(":")[0] for resource in resources})


def fetch(
    uri: str,
    destination: pathlib.Path,
    settings: transfers.Settings | None = None,
    namespace: str = "",
) -> FetchedModel:
    """Fetch the model at uri; local schemes are used in place, others go to destination.

    ``namespace`` is the artifact's: a ``pvc://`` claim is looked for there only.
    """
    settings = settings or transfers.Settings()
    split = urllib.parse.urlsplit(uri)
    if split.scheme in ("file", "pvc"):
        return _local(uri, settings, namespace)
    budget = transfers.Budget.of(settings)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if split.scheme in ("http", "https"):
            _http(uri, destination, settings, budget)
        elif split.scheme == "s3":
            buckets.fetch_prefix(
                split.netloc, split.path.lstrip("/"), destination, settings, budget
            )
        elif split.scheme == "oci":
            ociartifacts.fetch_artifact(uri[len("oci://") :], destination, settings, budget)
        else:
            raise transfers.FetchError(
                transfers.UNSUPPORTED_URI, f"scheme {split.scheme}:// is not supported"
            )
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return FetchedModel(destination, copied=True, bytes=budget.used)


def fetch_file(
    uri: str, target: pathlib.Path, settings: transfers.Settings | None = None, namespace: str = ""
) -> pathlib.Path:
    """Fetch one file (a signature bundle kept apart from the model); local files in place."""
    settings = settings or transfers.Settings()
    split = urllib.parse.urlsplit(uri)
    if split.scheme in ("file", "pvc"):
        return localpaths.local_path(uri, settings, namespace)
    budget = transfers.Budget(min(settings.max_bytes, 64 << 20), 1, settings.deadline_seconds)
    if split.scheme in ("http", "https"):
        with _http_get(uri, settings) as response:
            streaming.write_stream(streaming.read_chunks(response), target, budget)
    elif split.scheme == "s3":
        client = buckets.Client(settings)
        with client.get(client.object_url(split.netloc, split.path.lstrip("/"))) as response:
            streaming.write_stream(streaming.read_chunks(response), target, budget)
    else:
        raise transfers.FetchError(
            transfers.UNSUPPORTED_URI, f"a signature cannot be fetched from {split.scheme}://"
        )
    return target
