"""Raw HTTP/1.1 from a client's side: bytes sent as they are, answers read as they come
(for tests of servers' framing: the guard's own server, the guard process)."""

from __future__ import annotations

import asyncio
import dataclasses

#: How long a test waits for an answer or a close that must come.
WAIT = 3.0


async def exchange(port: int, data: bytes, *, quiet: float = 0.5) -> tuple[bytes, bool]:
    """Send bytes as they are; read until the server closes (True) or stays quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received, closed = await read_all(reader, quiet)
    writer.close()
    return received, closed


async def read_all(reader: asyncio.StreamReader, quiet: float) -> tuple[bytes, bool]:
    """Read until the server closes (True) or stays quiet for `quiet` seconds."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), quiet):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionError:
        pass
    return received, True


@dataclasses.dataclass
class Parsed:
    """One answer: status, headers by lower-case name, body."""

    status: int
    headers: dict[str, str]
    body: bytes


def answers(data: bytes) -> list[Parsed]:
    """Answers one after another (every answer of this server has a Content-Length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name, line
            assert name == name.strip(), line
            headers[name.lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        found.append(Parsed(status, headers, rest[:length]))
        data = rest[length:]
    return found


def answered(reader: asyncio.StreamReader) -> bool:
    """Whether the server has answered (or closed) while the client is still sending."""
    return reader.at_eof() or bool(getattr(reader, "_buffer", b""))
