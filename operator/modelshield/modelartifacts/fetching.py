"""Fetching a ModelArtifact's files from its URI into a local directory, streaming.

Schemes: ``file://`` and ``pvc://`` (a mounted path, used in place, never copied, and
confined by ``localpaths``), ``http(s)://`` (one file, an archive to unpack, or a
directory whose signed manifest lists the files), ``s3://`` (every object under a prefix)
and ``oci://`` (a model pushed as an OCI artifact). Downloads stream within a byte limit,
a file-count limit and an overall deadline; archives are unpacked without links or paths
that leave the directory; credentials never follow a redirect to another origin.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import ssl
import tarfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from modelshield.modelartifacts import hashing

CHUNK = 1 << 20

# Reasons, as the conditions spell them.
FETCH_FAILED = "FetchFailed"
UNSUPPORTED_URI = "UnsupportedUri"
TOO_LARGE = "TooLarge"
TOO_MANY_FILES = "TooManyFiles"
DEADLINE_EXCEEDED = "DeadlineExceeded"
NOT_ALLOWED = "NotAllowed"

#: Defaults sized for real models (docs/model-artifacts.md, "Limits"): a 70B-parameter
#: model in 16-bit weights is ~140 GB in a few dozen shards; a repository with tokenizer,
#: configs and shards has tens to hundreds of files.
DEFAULT_MAX_BYTES = 256 << 30
DEFAULT_MAX_FILES = 10_000
DEFAULT_DEADLINE_SECONDS = 3600.0

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


@dataclass
class FetchError(Exception):
    """The model could not be fetched; ``reason`` is a CamelCase code."""

    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Settings:
    """Where and how to fetch: mount roots, credentials, limits, TLS."""

    pvc_root: pathlib.Path = pathlib.Path("/mnt/models")
    #: Directories under which file:// URIs may point; none: file:// is refused.
    file_roots: tuple[pathlib.Path, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES
    #: One check's whole fetch (every request, every byte) must finish within this.
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    timeout_seconds: float = 60.0
    ca_file: pathlib.Path | None = None
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_session_token: str | None = None
    insecure_registries: frozenset[str] = frozenset()
    registry_credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from the usual AWS_* variables and MODELSHIELD_* ones."""
        roots = environ.get("MODELSHIELD_FILE_ROOTS", "")
        return cls(
            pvc_root=pathlib.Path(environ.get("MODELSHIELD_PVC_ROOT", "/mnt/models")),
            file_roots=tuple(pathlib.Path(r) for r in roots.split(os.pathsep) if r),
            max_bytes=int(environ.get("MODELSHIELD_ARTIFACT_MAX_BYTES", DEFAULT_MAX_BYTES)),
            max_files=int(environ.get("MODELSHIELD_ARTIFACT_MAX_FILES", DEFAULT_MAX_FILES)),
            deadline_seconds=float(
                environ.get("MODELSHIELD_ARTIFACT_DEADLINE_SECONDS", DEFAULT_DEADLINE_SECONDS)
            ),
            timeout_seconds=float(environ.get("MODELSHIELD_ARTIFACT_TIMEOUT_SECONDS", 60.0)),
            s3_endpoint=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            s3_region=environ.get("AWS_REGION", environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            s3_access_key=environ.get("AWS_ACCESS_KEY_ID"),
            s3_secret_key=environ.get("AWS_SECRET_ACCESS_KEY"),
            s3_session_token=environ.get("AWS_SESSION_TOKEN"),
            insecure_registries=frozenset(
                host
                for host in environ.get("MODELSHIELD_INSECURE_REGISTRIES", "").split(",")
                if host
            ),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https downloads."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@dataclass(frozen=True)
class FetchedModel:
    """The local directory holding the model, and whether it is a copy to clean up."""

    directory: pathlib.Path
    copied: bool
    bytes: int


class Budget:
    """Counts bytes and files across a whole fetch and stops it at a limit or its deadline."""

    def __init__(
        self,
        limit: int,
        max_files: int = DEFAULT_MAX_FILES,
        deadline_seconds: float | None = None,
    ) -> None:
        self.limit = limit
        self.used = 0
        self.max_files = max_files
        self.files = 0
        self.deadline_seconds = deadline_seconds
        self._ends = None if deadline_seconds is None else time.monotonic() + deadline_seconds

    @classmethod
    def of(cls, settings: Settings) -> Budget:
        """The budget of one check under these settings."""
        return cls(settings.max_bytes, settings.max_files, settings.deadline_seconds)

    def take(self, amount: int) -> None:
        """Account for bytes received; raise when over the limit or past the deadline."""
        self.used += amount
        if self.used > self.limit:
            raise FetchError(TOO_LARGE, f"the model is larger than the limit of {self.limit} bytes")
        self.check_deadline()

    def add_file(self) -> None:
        """Account for one more file; raise past the file-count limit."""
        self.files += 1
        if self.files > self.max_files:
            raise FetchError(
                TOO_MANY_FILES, f"the model has more than the limit of {self.max_files} files"
            )
        self.check_deadline()

    def check_deadline(self) -> None:
        """Raise when the fetch has run past its deadline."""
        if self._ends is not None and time.monotonic() > self._ends:
            raise FetchError(
                DEADLINE_EXCEEDED,
                f"the fetch did not finish within its deadline of {self.deadline_seconds:.0f} s",
            )

    def remaining(self, timeout: float) -> float:
        """A per-request timeout that does not outlast the deadline."""
        self.check_deadline()
        if self._ends is None:
            return timeout
        return max(0.001, min(timeout, self._ends - time.monotonic()))


def safe_relative(name: str) -> pathlib.PurePosixPath:
    """A relative path that stays inside the destination, or FetchError."""
    path = pathlib.PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise FetchError(FETCH_FAILED, f"refusing path {name!r}: it leaves the model directory")
    return path


def write_stream(
    chunks: Iterator[bytes],
    target: pathlib.Path,
    budget: Budget,
    expected_sha256: str | None = None,
) -> int:
    """Write chunks to target, counting bytes and checking a sha256 when one is expected."""
    budget.add_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x" mode: a name given twice (an archive with two members of one name) is an
        # error, never a silent overwrite of what was counted and checked first.
        handle = target.open("xb")
    except OSError as error:  # x and x/y both in one archive, a name given twice...
        raise FetchError(
            FETCH_FAILED, f"cannot write {target.name}: {error.strerror or error}"
        ) from error
    digest = hashlib.sha256()
    written = 0
    with handle:
        for chunk in chunks:
            budget.take(len(chunk))
            digest.update(chunk)
            handle.write(chunk)
            written += len(chunk)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise FetchError(FETCH_FAILED, f"{target.name}: content does not match its digest")
    return written


def read_chunks(response: BinaryIO) -> Iterator[bytes]:
    """Chunks of a response body, each as soon as it arrives.

    ``read1`` returns what is there instead of waiting for a full chunk, so a server that
    trickles a byte at a time cannot hold one read (and the deadline check after it) for
    longer than the socket timeout.
    """
    read = getattr(response, "read1", None) or response.read
    while chunk := read(CHUNK):
        yield chunk


def unpack(archive: pathlib.Path, destination: pathlib.Path, budget: Budget) -> None:
    """Unpack a tar or zip archive: regular files only, every path inside destination.

    A zip is told by its first bytes, not by ``zipfile.is_zipfile``: that finds the end
    record of any zip near the end of a file, so a tar whose last member is a zip (a
    PyTorch checkpoint) was unpacked as that zip's members.
    """
    with archive.open("rb") as handle:
        is_zip = handle.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    if is_zip:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                if info.is_dir():
                    continue
                target = destination / safe_relative(info.filename)
                with bundle.open(info) as member:
                    write_stream(read_chunks(member), target, budget)  # type: ignore[arg-type]
        return
    with tarfile.open(archive) as bundle:
        for member_info in bundle:
            if member_info.isdir():
                continue
            if not member_info.isfile():
                raise FetchError(
                    FETCH_FAILED, f"archive member {member_info.name} is a link or device"
                )
            target = destination / safe_relative(member_info.name)
            extracted = bundle.extractfile(member_info)
            if extracted is not None:
                write_stream(read_chunks(extracted), target, budget)  # type: ignore[arg-type]


def _local(uri: str, settings: Settings, namespace: str) -> FetchedModel:
    from modelshield.modelartifacts import localpaths

    path = localpaths.local_path(uri, settings, namespace)
    if not path.is_dir():
        raise FetchError(FETCH_FAILED, f"{uri} is not a directory")
    size = hashing.model_size(path)
    return FetchedModel(path, copied=False, bytes=size)


#: Headers that carry credentials: never sent on to another origin by a redirect.
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-amz-security-token"}
)


def _origin(url: str) -> tuple[str, str, int | None]:
    split = urllib.parse.urlsplit(url)
    return split.scheme.lower(), (split.hostname or "").lower(), split.port


class _CredentialsStayHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, dropping credential headers when the origin changes.

    urllib copies every header of the request onto the redirected one, so an S3
    ``Authorization`` (or a registry's bearer token) went to whatever host a redirect named.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and _origin(req.full_url) != _origin(redirected.full_url):
            for name in [n for n in redirected.headers if n.lower() in _CREDENTIAL_HEADERS]:
                del redirected.headers[name]
        return redirected


def open_url(request: urllib.request.Request, settings: Settings) -> BinaryIO:
    """Open a request with the settings' TLS context; credentials never cross origins."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=settings.ssl_context()), _CredentialsStayHome()
    )
    response: BinaryIO = opener.open(request, timeout=settings.timeout_seconds)
    return response


def _http_get(url: str, settings: Settings, headers: Mapping[str, str] | None = None) -> BinaryIO:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - http(s) only
    try:
        return open_url(request, settings)
    except OSError as error:
        raise FetchError(FETCH_FAILED, f"GET {url}: {error}") from error


def _http(uri: str, destination: pathlib.Path, settings: Settings, budget: Budget) -> None:
    name = urllib.parse.urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1]
    if uri.endswith("/"):
        # A directory: its signed manifest says which files make up the model.
        signature = destination / hashing.DEFAULT_SIGNATURE_NAME
        with _http_get(uri + hashing.DEFAULT_SIGNATURE_NAME, settings) as response:
            write_stream(read_chunks(response), signature, budget)
        for resource in _signed_resources(signature):
            target = destination / safe_relative(resource)
            with _http_get(uri + urllib.parse.quote(resource), settings) as response:
                write_stream(read_chunks(response), target, budget)
        return
    if not name:
        raise FetchError(
            UNSUPPORTED_URI, f"{uri} names neither a file nor a directory (end it with /)"
        )
    with _http_get(uri, settings) as response:
        if name.endswith(_ARCHIVE_SUFFIXES):
            archive = destination.parent / f".{destination.name}-{name}"
            try:
                write_stream(read_chunks(response), archive, budget)
                unpack(archive, destination, budget)
            finally:
                archive.unlink(missing_ok=True)
        else:
            write_stream(read_chunks(response), destination / safe_relative(name), budget)


def _signed_resources(signature: pathlib.Path) -> list[str]:
    import base64

    try:
        bundle = json.loads(signature.read_bytes())
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        resources = [str(item["name"]) for item in statement["predicate"]["resources"]]
    except (KeyError, TypeError, ValueError) as error:
        raise FetchError(FETCH_FAILED, f"the signature lists no files: {error}") from error
    # Shard names are "path:start:end"; fetch each file once.
    return sorted({resource.split(":")[0] for resource in resources})


def fetch(
    uri: str, destination: pathlib.Path, settings: Settings | None = None, namespace: str = ""
) -> FetchedModel:
    """Fetch the model at uri; local schemes are used in place, others go to destination.

    ``namespace`` is the artifact's: a ``pvc://`` claim is looked for there only.
    """
    from modelshield.modelartifacts import buckets, registries

    settings = settings or Settings()
    split = urllib.parse.urlsplit(uri)
    if split.scheme in ("file", "pvc"):
        return _local(uri, settings, namespace)
    budget = Budget.of(settings)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if split.scheme in ("http", "https"):
            _http(uri, destination, settings, budget)
        elif split.scheme == "s3":
            buckets.fetch_prefix(
                split.netloc, split.path.lstrip("/"), destination, settings, budget
            )
        elif split.scheme == "oci":
            registries.fetch_artifact(uri[len("oci://") :], destination, settings, budget)
        else:
            raise FetchError(UNSUPPORTED_URI, f"scheme {split.scheme}:// is not supported")
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    return FetchedModel(destination, copied=True, bytes=budget.used)


def fetch_file(
    uri: str, target: pathlib.Path, settings: Settings | None = None, namespace: str = ""
) -> pathlib.Path:
    """Fetch one file (a signature bundle kept apart from the model); local files in place."""
    from modelshield.modelartifacts import buckets

    settings = settings or Settings()
    split = urllib.parse.urlsplit(uri)
    if split.scheme in ("file", "pvc"):
        from modelshield.modelartifacts import localpaths

        return localpaths.local_path(uri, settings, namespace)
    budget = Budget(min(settings.max_bytes, 64 << 20), 1, settings.deadline_seconds)
    if split.scheme in ("http", "https"):
        with _http_get(uri, settings) as response:
            write_stream(read_chunks(response), target, budget)
    elif split.scheme == "s3":
        client = buckets.Client(settings)
        with client.get(client.object_url(split.netloc, split.path.lstrip("/"))) as response:
            write_stream(read_chunks(response), target, budget)
    else:
        raise FetchError(UNSUPPORTED_URI, f"a signature cannot be fetched from {split.scheme}://")
    return target
