"""The terms of one model fetch, shared by every fetcher: what it may do and how it fails.

``Settings`` (mount roots, credentials, limits, TLS), the ``Budget`` that counts one
fetch's bytes, files and time against them, and ``FetchError`` with the reasons the
ModelArtifact conditions spell. Every fetcher (``fetching`` for http(s) and local paths,
``buckets`` for S3, ``ociartifacts`` for OCI, ``localpaths``) imports these from here and
none imports another's module for them, so the fetchers form no import cycle.
"""

from __future__ import annotations

import os
import pathlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

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
