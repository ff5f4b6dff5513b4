"""Reading regions of a buffer for the pickle walker: windows and pickle-start search.

A model file is memory-mapped; the walker reads a region of it (an archive member stored
in place, the bytes after a pickle) through a ``Window`` and searches tensor bytes for
where a pickle may start, chunk by chunk so that a 100 GB checkpoint costs no more RSS.
"""

from __future__ import annotations

import io
import mmap
import re
from collections.abc import Iterator
from typing import BinaryIO

# Where a pickle written by a Pickler can start: PROTO 2 or 3 followed by an opcode that
# opens a pickle's body, or PROTO 4/5 followed by FRAME. Tensor bytes match this about
# once per 2 MB (a bare PROTO byte pair would match every 16 kB).
START = re.compile(rb"\x80[\x02\x03][c}\](Xq)N\x8c\x95BJK]|\x80[\x04\x05][\x95\x8c}\](c]")


#: Tensor bytes are searched in chunks; a chunk of a memory-mapped file is dropped from
#: this process's resident set once searched, so a 100 GB checkpoint costs no more RSS.
SEARCH_CHUNK = 64 << 20


def candidates(data: mmap.mmap | bytes, start: int, end: int) -> Iterator[int]:
    """Positions in data[start:end] where a pickle written by a Pickler may start."""
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(end, (chunk_start // SEARCH_CHUNK + 1) * SEARCH_CHUNK)
        # A match may straddle the chunk's end: let it finish (the pattern is 3 bytes).
        for match in START.finditer(data, chunk_start, min(end, chunk_end + 2)):
            if match.start() < chunk_end:
                yield match.start()
        if isinstance(data, mmap.mmap) and chunk_end - chunk_start == SEARCH_CHUNK:
            data.madvise(mmap.MADV_DONTNEED, chunk_start, SEARCH_CHUNK)
        chunk_start = chunk_end


class Window(io.RawIOBase):
    """A read-only view of buffer[start:end] with positions relative to the buffer."""

    def __init__(self, data: mmap.mmap | bytes, start: int, end: int) -> None:
        self._data = data
        self._position = start
        self._end = end

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._end - self._position
        chunk = bytes(self._data[self._position : min(self._position + size, self._end)])
        self._position += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._end if size is None or size < 0 else min(self._end, self._position + size)
        newline = self._data.find(b"\n", self._position, limit)
        stop = limit if newline == -1 else newline + 1
        return self.read(stop - self._position)

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._end}[whence]
        self._position = min(max(0, base + offset), self._end)
        return self._position


def reader(data: mmap.mmap | bytes, start: int, end: int) -> BinaryIO:
    """A file over data[start:end] whose positions are those of the buffer."""
    # Whole buffers are read through C-implemented files (per-opcode reads dominate the
    # walker's time); a region of a buffer through the Python window.
    if start == 0 and end == len(data):
        if isinstance(data, bytes):
            return io.BytesIO(data)
        data.seek(0)
        return data  # type: ignore[return-value]
    return Window(data, start, end)  # type: ignore[return-value]
