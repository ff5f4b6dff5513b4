"""A raw asyncio model server that sends exactly the bytes a test scripts, and the guard's
client (``forwarding``) pointed at it: for the client's tests and its attack tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from modelshield.guard import forwarding

#: Any wait longer than this is a hang (every timeout below is well under it).
HANG = 5.0
BODY = b'{"instances": [[1.0, 2.0]]}'


def upstream_client(base: str, **settings: float | int | None) -> forwarding.Client:
    """The guard's client to ``base`` with short timeouts (``settings`` override them)."""
    options: dict[str, float | int | None] = {"timeout": 2.0, "connect_timeout": 1.0}
    options.update(settings)
    return forwarding.Client(base, **options)  # type: ignore[arg-type]


async def post_predict(client: forwarding.Client, body: bytes = BODY) -> forwarding.Answer:
    """A KServe v1 predict call through ``client``; a hang fails the test."""
    headers = [("Content-Type", "application/json")]
    return await asyncio.wait_for(
        client.request("POST", "/v1/models/m:predict", headers, body), HANG
    )


@dataclasses.dataclass
class Script:
    """What the raw server saw: one list of requests per connection."""

    connections: list[list[bytes]] = dataclasses.field(default_factory=list)

    @property
    def requests(self) -> list[bytes]:
        return [request for connection in self.connections for request in connection]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Script, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, Script]]:
    """Serve ``handler`` (per connection: reader, writer, script, connection index)."""
    script = Script()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections.append([])
        try:
            await handler(reader, writer, script, len(script.connections) - 1)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        listener.close()


def answering(*answers: bytes, then_close: bool = True, later: bytes | None = None) -> Handler:
    """Per request on a connection, the next of ``answers``, then close the connection (or
    wait for the client to). With ``later``: connections after the first answer ``later``
    to every request, keeping the connection."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script, index: int
    ) -> None:
        if index > 0 and later is not None:
            while True:
                script.connections[index].append(await read_request(reader))
                writer.write(later)
                await writer.drain()
        for answer in answers:
            script.connections[index].append(await read_request(reader))
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()

    return handler


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
