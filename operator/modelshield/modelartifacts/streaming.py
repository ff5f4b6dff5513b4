"""Writing what a fetcher receives into the model directory, within its budget.

Streams are written chunk by chunk into files that must not exist yet, counted against
the fetch's ``transfers.Budget`` and checked against an expected sha256; archives are
unpacked member by member (regular files only, every path inside the directory); URLs
are opened with the settings' TLS context, and credentials never follow a redirect to
another origin.
"""

from __future__ import annotations

import hashlib
import pathlib
import tarfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from modelshield.modelartifacts import transfers

CHUNK = 1 << 20


def safe_relative(name: str) -> pathlib.PurePosixPath:
    """A relative path that stays inside the destination, or transfers.FetchError."""
    path = pathlib.PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise transfers.FetchError(
            transfers.FETCH_FAILED, f"refusing path {name!r}: it leaves the model directory"
        )
    return path


def write_stream(
    chunks: Iterator[bytes],
    target: pathlib.Path,
    budget: transfers.Budget,
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
        raise transfers.FetchError(
            transfers.FETCH_FAILED, f"cannot write {target.name}: {error.strerror or error}"
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
        raise transfers.FetchError(
            transfers.FETCH_FAILED, f"{target.name}: content does not match its digest"
        )
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


def unpack(archive: pathlib.Path, destination: pathlib.Path, budget: transfers.Budget) -> None:
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
                raise transfers.FetchError(
                    transfers.FETCH_FAILED, f"archive member {member_info.name} is a link or device"
                )
            target = destination / safe_relative(member_info.name)
            extracted = bundle.extractfile(member_info)
            if extracted is not None:
                write_stream(read_chunks(extracted), target, budget)  # type: ignore[arg-type]


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


def open_url(request: urllib.request.Request, settings: transfers.Settings) -> BinaryIO:
    """Open a request with the settings' TLS context; credentials never cross origins."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=settings.ssl_context()), _CredentialsStayHome()
    )
    response: BinaryIO = opener.open(request, timeout=settings.timeout_seconds)
    return response
