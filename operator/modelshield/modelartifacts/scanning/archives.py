"""Zip and tar archives: PyTorch checkpoints, .keras files, .npz, and archives in archives.

Every member is scanned with the same scanners as a file. Tensor storage members of a
PyTorch checkpoint are raw numbers, never unpickled by torch; they are still searched for
pickle starts, so a pickle hidden among them is reported.
"""

from __future__ import annotations

import io
import mmap
import re
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Protocol

from modelshield.modelartifacts.scanning import findings, pickles, scanners

#: Members larger than this are spooled to a temporary file rather than held in memory.
IN_MEMORY_LIMIT = 64 << 20
#: An archive expanding to more than this many times its size is a zip bomb.
MAX_EXPANSION = 200

_TORCH_DATA = re.compile(
    r"(^|/)(\.?data/[0-9A-Za-z_]+|version|byteorder|\.format_version|"
    r"\.storage_alignment|\.data/serialization_id|\.data/version)$"
)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _member_buffer(reader: _Readable, size: int) -> Iterator[scanners.Buffer]:
    read = reader.read
    if size <= IN_MEMORY_LIMIT:
        yield read()
        return
    with tempfile.TemporaryFile(prefix="modelshield-member-") as spool:
        while chunk := read(8 << 20):
            spool.write(chunk)
        spool.flush()
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def _stored_region(data: scanners.Buffer, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    """Where an uncompressed member's bytes are in the archive, or None."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    header = bytes(data[info.header_offset : info.header_offset + 30])
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        return None
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    end = start + info.file_size
    return (start, end) if end <= len(data) else None


def _is_torch_archive(names: list[str]) -> bool:
    return any(name == "data.pkl" or name.endswith("/data.pkl") for name in names)


class ZipScanner:
    """Zip archives of any kind."""

    name = "zip"

    def matches(self, name: str, head: bytes) -> bool:
        """Zip magic (local file header or an empty archive)."""
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Scan each member; flag path tricks and zip bombs."""
        found: list[findings.Finding] = []
        with zipfile.ZipFile(
            io.BytesIO(data) if isinstance(data, bytes) else scanners.MmapFile(data)
        ) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            torch = _is_torch_archive(names)
            if torch:
                context.formats.append("pytorch-zip")
            expanded = sum(info.file_size for info in infos)
            if len(data) and expanded > MAX_EXPANSION * len(data) and expanded > (1 << 30):
                return [
                    findings.Finding(
                        findings.HIGH, name, "", f"archive expands to {expanded} bytes (zip bomb)"
                    )
                ]
            for info in infos:
                member = f"{name}!{info.filename}"
                if info.is_dir():
                    continue
                if info.filename.startswith("/") or ".." in info.filename.split("/"):
                    found.append(
                        findings.Finding(
                            findings.HIGH, member, "", "member path escapes the archive"
                        )
                    )
                region = _stored_region(data, info)
                if torch and region is not None and _TORCH_DATA.search(info.filename):
                    # Tensor bytes stored uncompressed: searched in place, never copied.
                    found.extend(
                        pickles.walk_buffer(
                            data, member, leading=False, start=region[0], end=region[1]
                        )
                    )
                    continue
                with archive.open(info) as reader:
                    for buffer in _member_buffer(reader, info.file_size):
                        if torch and _TORCH_DATA.search(info.filename):
                            found.extend(pickles.walk_buffer(buffer, member, leading=False))
                        else:
                            found.extend(context.scan_member(buffer, member))
        return found


class TarScanner:
    """Tar archives (the oldest PyTorch format was one)."""

    name = "tar"

    def matches(self, name: str, head: bytes) -> bool:
        """The ustar magic at offset 257."""
        return len(head) >= 262 and head[257:262] == b"ustar"

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Scan each regular member; flag links and path tricks."""
        found: list[findings.Finding] = []
        source = io.BytesIO(data) if isinstance(data, bytes) else scanners.MmapFile(data)
        with tarfile.open(fileobj=source, mode="r:") as archive:
            for info in archive:
                member = f"{name}!{info.name}"
                if info.issym() or info.islnk():
                    found.append(
                        findings.Finding(findings.HIGH, member, "", "link inside the archive")
                    )
                    continue
                if not info.isfile():
                    continue
                if info.name.startswith("/") or ".." in info.name.split("/"):
                    found.append(
                        findings.Finding(
                            findings.HIGH, member, "", "member path escapes the archive"
                        )
                    )
                reader = archive.extractfile(info)
                if reader is None:
                    continue
                for buffer in _member_buffer(reader, info.size):
                    if info.name in ("storages", "tensors"):
                        found.extend(pickles.walk_buffer(buffer, member, leading=False))
                    else:
                        found.extend(context.scan_member(buffer, member))
        return found
