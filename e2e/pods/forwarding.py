"""A TCP forwarder from the node's address to a server that listens on loopback only.

go-containerregistry's `registry` listens on 127.0.0.1, which pods cannot reach. Forwarded
from the node's address (same port), an image has one name that the node pulls by and that
the webhook and operator pods verify by (the signature's docker-reference names it).
Bytes are copied as they are, both ways: the registry behind it is the real one.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import Iterator

BUFFER_BYTES = 64 * 1024


class _Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(listen, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    server: _Forwarder

    def handle(self) -> None:
        client: socket.socket = self.request
        with socket.create_connection(self.server.target, timeout=30) as upstream:
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(BUFFER_BYTES)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)


@contextlib.contextmanager
def forwarded(listen_host: str, target: str) -> Iterator[str]:
    """Forwards `listen_host`:port to `target` (host:port, the same port) while in the
    block; yields the forwarded address (listen_host:port)."""
    host, _, port = target.rpartition(":")
    server = _Forwarder((listen_host, int(port)), (host, int(port)))
    thread = threading.Thread(target=server.serve_forever, name="forwarder", daemon=True)
    thread.start()
    try:
        yield f"{listen_host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
