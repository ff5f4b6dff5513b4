"""The Scanner interface, format detection, and scanning one file of a model.

Each scanner reads one family of formats from a buffer (a file's mmap, or an archive
member's bytes) and returns findings. Detection is by magic bytes first and file name
second; a file no scanner recognises, or one that cannot be read, is a finding itself.
``model_files`` lists a model's files; ``catalog.scan_directory`` scans them all with the
scanners modelshield ships (the catalog imports every format module, and they import
this one: the directory scan lives there so that no import goes back up).
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelshield.modelartifacts.scanning import findings

Buffer = mmap.mmap | bytes

#: How deep archives inside archives are opened.
MAX_DEPTH = 4
#: Formats recognised by name or by being text, not by a magic: probed for a pickle too.
_PROBED = frozenset({"text", "json", "python", "tensorflow-variables", "tensorflow-graph"})


class Scanner(Protocol):
    """One family of formats."""

    #: The format name reported for the files this scanner reads.
    name: str

    def matches(self, name: str, head: bytes) -> bool:
        """Whether this scanner reads a file with this name and these first bytes."""
        ...

    def scan(self, data: Buffer, name: str, context: Context) -> list[findings.Finding]:
        """Findings for the whole buffer (every byte is looked at)."""
        ...


@dataclass
class Context:
    """What a scanner may call back into: scanning archive members with the same scanners."""

    scanners: Sequence[Scanner]
    depth: int = 0
    formats: list[str] = field(default_factory=list)

    def scan_member(self, data: Buffer, name: str) -> list[findings.Finding]:
        """Scan a member of an archive (name like ``model.pt!archive/data.pkl``)."""
        if self.depth >= MAX_DEPTH:
            return [
                findings.Finding(
                    findings.HIGH, name, "", f"archives nested deeper than {MAX_DEPTH} levels"
                )
            ]
        inner = Context(self.scanners, self.depth + 1, self.formats)
        return scan_buffer(data, name, inner)[1]


def detect(name: str, head: bytes, scanners: Sequence[Scanner]) -> Scanner | None:
    """The first scanner that claims the file."""
    for scanner in scanners:
        if scanner.matches(name, head):
            return scanner
    return None


def scan_buffer(data: Buffer, name: str, context: Context) -> tuple[str, list[findings.Finding]]:
    """Detect the format of one buffer and scan it; returns (format, findings)."""
    scanner = detect(name, bytes(data[:512]), context.scanners)
    if scanner is None or scanner.name in _PROBED:
        # A loader may unpickle any file it is handed (torch.load of pytorch_model.bin):
        # what parses as a pickle is walked as one, whatever its name or first byte.
        from modelshield.modelartifacts.scanning import pickles

        if pickles.probe(data):
            scanner = next((s for s in context.scanners if s.name == "pickle"), scanner)
    # Formats a loader finds past the first bytes (an HDF5 superblock after a user block):
    # the file is that format too, to that loader, and is scanned as each of them.
    claimed = [other for other in context.scanners if other is not scanner and _claims(other, data)]
    if scanner is None and claimed:
        scanner = claimed.pop(0)
    if scanner is None:
        return "unknown", [
            findings.Finding(
                findings.MEDIUM, name, "", "unrecognized binary format: it could not be scanned"
            )
        ]
    found = _scan_as(scanner, data, name, context)
    for other in claimed:
        found.extend(_scan_as(other, data, name, context))
    return scanner.name, found


def _claims(scanner: Scanner, data: Buffer) -> bool:
    """Whether a scanner claims a file by its content past the first bytes (optional)."""
    claims: Callable[[Buffer], bool] | None = getattr(scanner, "claims_content", None)
    return claims is not None and claims(data)


def _scan_as(scanner: Scanner, data: Buffer, name: str, context: Context) -> list[findings.Finding]:
    context.formats.append(scanner.name)
    try:
        return scanner.scan(data, name, context)
    except Exception as error:  # noqa: BLE001 - a scanner crash must not pass the file
        return [
            findings.Finding(
                findings.HIGH, name, "", f"could not be scanned as {scanner.name}: {error}"
            )
        ]


class MmapFile(io.RawIOBase):
    """A seekable read-only file over an mmap, without copying it."""

    def __init__(self, data: mmap.mmap) -> None:
        self._data = data
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._position + size
        chunk = bytes(self._data[self._position : end])
        self._position += len(chunk)
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@contextlib.contextmanager
def _mapped(path: pathlib.Path) -> Iterator[Buffer]:
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def scan_file(
    path: pathlib.Path, relative: str, scanners: Sequence[Scanner]
) -> findings.FileRecord:
    """Scan one file: memory-mapped, so a large file costs page cache, not heap."""
    if path.is_symlink():
        return findings.FileRecord(
            relative,
            "symlink",
            0,
            [
                findings.Finding(
                    findings.HIGH, relative, "", "symbolic link: not followed, not scanned"
                )
            ],
        )
    if not path.is_file():
        # A FIFO, socket or device: opening it could block or never end.
        return findings.FileRecord(
            relative,
            "special",
            0,
            [findings.Finding(findings.HIGH, relative, "", "not a regular file: not read")],
        )
    try:
        size = path.stat().st_size
        with _mapped(path) as data:
            context = Context(scanners)
            detected, found = scan_buffer(data, relative, context)
    except OSError as error:
        return findings.FileRecord(
            relative,
            "unreadable",
            0,
            [findings.Finding(findings.HIGH, relative, "", f"could not be read: {error.strerror}")],
        )
    return findings.FileRecord(relative, detected, size, found)


def model_files(model_dir: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """Every file under the model directory (git metadata excluded), sorted."""
    files = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir).as_posix()
        if relative.split("/")[0] == ".git":
            continue
        if not path.is_dir() or path.is_symlink():
            files.append((path, relative))
    return files
