"""Pulling a model pushed as an OCI artifact (ORAS layout): one layer per file, streamed.

Each layer carries its path in the ``org.opencontainers.image.title`` annotation; a layer
marked ``io.deis.oras.content.unpack`` is a tar(.gz) of a directory, unpacked in place of
its title. Blobs are checked against their digests while they stream to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, BinaryIO

from modelshield.modelartifacts import streaming, transfers

TITLE = "org.opencontainers.image.title"
UNPACK = "io.deis.oras.content.unpack"
_MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_REFERENCE = re.compile(
    r"^(?P<host>[^/]+)/(?P<repository>[^:@]+)(:(?P<tag>[^@]+))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def parse_reference(reference: str) -> tuple[str, str, str]:
    """(host, repository, tag or digest) of ``host/repo[:tag][@digest]``."""
    match = _REFERENCE.match(reference)
    if not match:
        raise transfers.FetchError(transfers.UNSUPPORTED_URI, f"not an OCI reference: {reference}")
    return (
        match["host"],
        match["repository"],
        match["digest"] or match["tag"] or "latest",
    )


class _Session:
    """Requests to one registry, answering Bearer and Basic challenges once."""

    def __init__(self, host: str, repository: str, settings: transfers.Settings) -> None:
        scheme = "http" if host in settings.insecure_registries else "https"
        self.base = f"{scheme}://{host}/v2/{repository}"
        self.settings = settings
        self.repository = repository
        self.credentials = settings.registry_credentials.get(host)
        self.authorization: str | None = None

    def open(self, path: str, accept: str | None = None) -> BinaryIO:
        url = f"{self.base}/{path}"
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            if self.authorization:
                headers["Authorization"] = self.authorization
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
            try:
                # A blob redirect to storage elsewhere does not get the registry's token.
                response = streaming.open_url(request, self.settings)
            except urllib.error.HTTPError as error:
                challenge = error.headers.get("WWW-Authenticate", "")
                if error.code == 401 and attempt == 0 and challenge:
                    self.authorization = self._answer(challenge)
                    continue
                raise transfers.FetchError(
                    transfers.FETCH_FAILED, f"GET {url}: HTTP {error.code}"
                ) from error
            except OSError as error:
                raise transfers.FetchError(transfers.FETCH_FAILED, f"GET {url}: {error}") from error
            return response
        raise transfers.FetchError(transfers.FETCH_FAILED, f"GET {url}: unauthorized")

    def _basic(self) -> str | None:
        if self.credentials is None:
            return None
        user, password = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _answer(self, challenge: str) -> str:
        kind, _, rest = challenge.partition(" ")
        if kind.lower() == "basic":
            basic = self._basic()
            if basic is None:
                raise transfers.FetchError(transfers.FETCH_FAILED, "registry wants credentials")
            return basic
        parameters = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        query = {
            "service": parameters.get("service", ""),
            "scope": f"repository:{self.repository}:pull",
        }
        url = f"{parameters['realm']}?{urllib.parse.urlencode(query)}"
        basic = self._basic()
        request = urllib.request.Request(url, headers={"Authorization": basic} if basic else {})  # noqa: S310
        try:
            with streaming.open_url(request, self.settings) as response:
                document: dict[str, Any] = json.loads(response.read())
        except (OSError, ValueError) as error:
            raise transfers.FetchError(
                transfers.FETCH_FAILED, f"token from {url}: {error}"
            ) from error
        return "Bearer " + str(document.get("token") or document.get("access_token"))


def _layers(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "manifests" in manifest:
        raise transfers.FetchError(transfers.FETCH_FAILED, "an image index is not a model artifact")
    layers = manifest.get("layers") or manifest.get("blobs") or []
    if not isinstance(layers, list):
        raise transfers.FetchError(transfers.FETCH_FAILED, "manifest has no layers")
    return layers


_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


def fetch_artifact(
    reference: str,
    destination: pathlib.Path,
    settings: transfers.Settings,
    budget: transfers.Budget,
) -> None:
    """Pull every titled layer of the artifact into destination."""
    host, repository, version = parse_reference(reference)
    session = _Session(host, repository, settings)
    if ":" in version and not _SHA256.match(version):
        # A digest this client cannot check is refused, not trusted unchecked.
        raise transfers.FetchError(
            transfers.NOT_ALLOWED, f"{version}: only sha256 manifest digests can be verified"
        )
    with session.open(f"manifests/{version}", accept=_MANIFEST_TYPES) as response:
        raw = response.read(4 << 20)
    if version.startswith("sha256:") and hashlib.sha256(raw).hexdigest() != version[7:]:
        raise transfers.FetchError(transfers.FETCH_FAILED, "manifest does not match its digest")
    layers = _layers(json.loads(raw))
    for index, layer in enumerate(layers):
        digest = str(layer.get("digest", ""))
        title = (layer.get("annotations") or {}).get(TITLE)
        # A layer a client may pull but this check would not read is refused: skipped, it
        # would be neither verified nor scanned.
        if not title:
            raise transfers.FetchError(
                transfers.NOT_ALLOWED,
                f"layer {index} ({digest}) has no {TITLE} annotation: it cannot be verified",
            )
        if not _SHA256.match(digest):
            raise transfers.FetchError(
                transfers.NOT_ALLOWED,
                f"layer {title!r} has digest {digest!r}: only sha256 digests can be verified",
            )
        relative = streaming.safe_relative(title)
        unpack = (layer.get("annotations") or {}).get(UNPACK) == "true"
        target = destination / (f".{relative.name}.tar" if unpack else relative)
        with session.open(f"blobs/{digest}") as blob:
            streaming.write_stream(streaming.read_chunks(blob), target, budget, digest[7:])
        if unpack:
            staging = destination / f".{relative.name}.unpacked"
            streaming.unpack(target, staging, budget)
            target.unlink()
            # ORAS puts the directory itself at the root of the tarball.
            root = staging / relative.name if (staging / relative.name).is_dir() else staging
            shutil.move(str(root), str(destination / relative))
            shutil.rmtree(staging, ignore_errors=True)
