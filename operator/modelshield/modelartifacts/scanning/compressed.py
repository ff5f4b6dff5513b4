"""Compressed files (joblib's gzip/bz2/xz/zlib outputs, .pkl.gz): decompressed, then scanned.

Decompression streams into a temporary file with an expansion limit, so a compression
bomb is a finding rather than a full disk or an exhausted memory.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import mmap
import tempfile
import zlib
from collections.abc import Callable
from typing import IO, Protocol, cast

from modelshield.modelartifacts.scanning import findings, scanners

#: Decompressed data may be at most this many times the compressed size (and 1 GiB more).
MAX_RATIO = 200
_CHUNK = 8 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _ZlibReader:
    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._inflater = zlib.decompressobj()

    def read(self, size: int = -1, /) -> bytes:
        while True:
            chunk = self._source.read(_CHUNK)
            if not chunk:
                return self._inflater.flush()
            out = self._inflater.decompress(chunk)
            if out:
                return out


def _source(data: scanners.Buffer) -> IO[bytes]:
    source = io.BytesIO(data) if isinstance(data, bytes) else scanners.MmapFile(data)
    return cast(IO[bytes], source)


_OPENERS: dict[str, Callable[[IO[bytes]], _Readable]] = {
    "gzip": lambda source: gzip.GzipFile(fileobj=source),
    "bzip2": lambda source: bz2.BZ2File(source),
    # The readers are dropped with the buffer they wrap; there is no file to close.
    "xz": lambda source: lzma.LZMAFile(source),  # noqa: SIM115
    "zlib": _ZlibReader,
}


def _kind(name: str, head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if (
        len(head) > 2
        and head[0] == 0x78
        and (head[0] * 256 + head[1]) % 31 == 0
        and name.lower().endswith((".z", ".zlib", ".joblib", ".pkl.z"))
    ):
        return "zlib"
    return None


class CompressedScanner:
    """gzip, bzip2, xz and zlib streams."""

    name = "compressed"

    def matches(self, name: str, head: bytes) -> bool:
        """A compression magic (zlib only with a name that says so)."""
        return _kind(name, head) is not None

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Decompress to a temporary file and scan what comes out."""
        kind = _kind(name, bytes(data[:8]))
        assert kind is not None
        limit = MAX_RATIO * len(data) + (1 << 30)
        reader = _OPENERS[kind](_source(data))
        with tempfile.TemporaryFile(prefix="modelshield-decompressed-") as spool:
            total = 0
            while chunk := reader.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    return [
                        findings.Finding(
                            findings.HIGH, name, "", f"{kind} data expands beyond {limit} bytes"
                        )
                    ]
                spool.write(chunk)
            spool.flush()
            inner = f"{name}!{kind}"
            if total == 0:
                return []
            with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return context.scan_member(mapped, inner)
