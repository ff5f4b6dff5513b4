"""The guard's client to its one model server: pooled keep-alive HTTP/1.1 on asyncio.

aiohttp's ``ClientSession`` was most of a bare aiohttp proxy's CPU per request (a proxy
with a minimal client on ``asyncio.Protocol`` spent 0.39x; docs/api-protection.md,
"Measured"). This client does only what the guard needs: one upstream (``http://host:port``,
plain HTTP), whole request bodies out, whole answers in, nothing kept between requests
(no cookies, no redirects followed, no decompression, no headers of its own beyond
``Host`` and ``Content-Length``).

Answers are parsed strictly by llhttp (``httptools``; the parser aiohttp uses in C):
a malformed status line or header, both ``Content-Length`` and ``Transfer-Encoding``, a
wrong chunk size, a header that is not UTF-8, an answer cut short, bytes the server sent
unasked or a ``101`` raise ``BadAnswerError`` and the connection is closed, never reused;
so do a body over ``answer_limit`` (by its ``Content-Length`` at once, else as its bytes
pass it) and more than ``head_limit`` bytes without a byte of body (a head, interim
answers or trailers without end): the guard holds answers whole, so memory stays bounded.
Bodies framed by ``Content-Length``, chunked or ended by the server closing the
connection are read; ``1xx`` interim answers are skipped; ``204``, ``304`` and answers to
``HEAD`` have no body.

Connections: at most ``limit`` at once (more requests wait, within their timeout); an
idle one is reused (last in, first out) unless the server closed it, it has been idle
longer than ``idle_seconds``, its last answer said not to keep it or came before the
request was written whole. A cancelled exchange closes its connection. A request is sent
again, once, on a new connection only when a reused connection turned out closed before
any byte of its answer and its method is idempotent (RFC 9110 9.2.2): a ``POST`` is never
sent twice (a pooled connection is checked for closing as it is taken, in the same turn
as the write). ``timeout`` bounds the whole exchange (waiting for a connection,
connecting, writing, the whole answer); ``connect_timeout`` the connect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import socket
import typing
import urllib.parse
from typing import Final

import httptools

#: Methods that may be sent twice (RFC 9110 9.2.2) when a reused connection was dead.
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Methods whose requests carry a body, so ``Content-Length: 0`` is sent for an empty one.
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_NO_BODY_STATUSES: Final = frozenset({204, 304})
#: The largest answer body the guard takes (it holds answers whole, in a Deployment with
#: 512Mi of memory): larger ones are refused (502) as soon as their length says so or their
#: bytes pass it. A model's answer is its predictions; 16 MiB is ~100,000 rows of ten
#: probabilities in JSON.
DEFAULT_ANSWER_LIMIT: Final = 16 * 1024 * 1024
#: The most an answer may send without a byte of body: its status line and headers, any
#: interim answers before it and its trailers after it (llhttp keeps a header's bytes until
#: it ends, so an endless header would otherwise grow without bound until the timeout).
#: aiohttp's client allowed 8,190 bytes per header line.
DEFAULT_HEAD_LIMIT: Final = 64 * 1024


class UpstreamError(Exception):
    """The model server gave no usable answer; the guard answers 502 (504: ``TimeoutError``)."""


class UpstreamTimeoutError(UpstreamError, TimeoutError):
    """No whole answer within the timeout (or no connection within the connect timeout)."""


class UnreachableError(UpstreamError):
    """No connection could be opened (refused, no route, name not resolved)."""


class ConnectionLostError(UpstreamError):
    """The connection closed before the whole answer came."""


class BadAnswerError(UpstreamError):
    """The answer is not well-formed HTTP/1.1, or larger than allowed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer: status, headers as received (trailers dropped), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _RetryError(UpstreamError):
    """The connection closed before any byte of the answer (internal: maybe sent again)."""


class _HeadDoneError(Exception):
    """Raised in the parser's callback to stop after a HEAD answer's headers (internal)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, pool: Client) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._head = False
        self._limit: int | None = None
        self._head_limit = DEFAULT_HEAD_LIMIT
        self._headless = 0  # bytes received since the answer began or its last body byte
        self._declared: bytes | None = None  # the answer's Content-Length
        self._answered = False  # any byte of the current answer came
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: EOF before the end is a truncation
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = typing.cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Nothing was asked: a server that talks out of turn is not trusted again.
            self._abort()
            return
        self._answered = True
        size = self._size
        try:
            self._parser.feed_data(data)
        except _HeadDoneError:
            pass
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _HeadDoneError):
                return
            cause = error.__context__ if isinstance(error.__context__, UpstreamError) else None
            self._fail(cause or BadAnswerError(f"malformed answer: {error}"))
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswerError("the model server switched protocols"))
        except httptools.HttpParserError as error:
            self._fail(BadAnswerError(f"malformed answer: {error}"))
        else:
            if self._size != size:
                self._headless = 0
            elif not waiter.done():
                self._headless += len(data)
                if self._headless > self._head_limit:
                    self._fail(
                        BadAnswerError(
                            f"the answer's head, interim answers or trailers are longer than "
                            f"{self._head_limit} bytes"
                        )
                    )

    def eof_received(self) -> bool:
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._framed:
                self._finish()  # the body ends where the server closed
            else:
                self._lost()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        if self._waiter is not None and not self._waiter.done():
            self._lost()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            raise BadAnswerError("the model server sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            return  # a trailer: not relayed
        try:
            decoded = (name.decode("ascii"), value.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadAnswerError("a header of the answer is not UTF-8") from None
        lower = decoded[0].lower()
        if lower == "content-length":
            self._framed = True
            self._declared = value
        elif (
            lower == "transfer-encoding" and value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        ):
            self._framed = True
        self._headers.append(decoded)

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # interim: its message completes at once, the real answer follows
        self._headers_done = True
        if self._head:
            self.reusable = False  # llhttp cannot be told the answer has no body: not reused
            self._finish()
            raise _HeadDoneError
        if status in _NO_BODY_STATUSES:
            self._framed = True
        elif (
            self._declared is not None
            and self._limit is not None
            and int(self._declared) > self._limit
        ):
            raise BadAnswerError(f"the answer is larger than {self._limit} bytes (its length)")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._limit is not None and self._size > self._limit:
            raise BadAnswerError(f"the answer is larger than {self._limit} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._headers_done:
            self._headers.clear()  # a 1xx interim answer's headers and framing
            self._framed = False
            self._declared = None
            return
        # An answer that came before the request was written whole (the server answered
        # early, say 413, without reading the body): the rest of the body is still going
        # out and the server would read it as the next request. Never reused.
        transport = self.transport
        self.reusable = (
            self._parser.should_keep_alive()
            and transport is not None
            and not transport.get_write_buffer_size()
        )
        self._finish()

    # the exchange

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result(Answer(self._parser.get_status_code(), self._headers, body))

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._abort()

    def _lost(self) -> None:
        if self._answered:
            self._fail(ConnectionLostError("the model server closed the connection mid-answer"))
        else:
            self._fail(_RetryError())

    def _timed_out(self) -> None:
        self._fail(UpstreamTimeoutError("no whole answer within the timeout"))

    def _abort(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def exchange(
        self, request: bytes, head: bool, deadline: float, limit: int | None, head_limit: int
    ) -> Answer:
        """Send one request, return its whole answer."""
        assert self.transport is not None
        loop = self._pool.loop
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._head, self._limit, self._head_limit = head, limit, head_limit
        self._answered = self._headers_done = self._framed = False
        self._headers, self._body, self._size, self._headless = [], [], 0, 0
        self._declared = None
        self.reusable = False
        if self.closed or self.transport.is_closing():
            # Closed between connecting and this write (the server hung up at once).
            raise _RetryError("the connection closed before the request was written")
        timer = loop.call_at(deadline, self._timed_out)
        try:
            self.transport.write(request)
            return await waiter
        except BaseException:
            # No answer taken (cancelled mid-exchange, or cancelled in the same turn as its
            # answer came: the waiter is done, the task wakes up cancelled): the connection
            # is neither in use nor in the pool, so it is closed, never left open.
            self._abort()
            raise
        finally:
            timer.cancel()
            self._waiter = None


class Client:
    """Pooled keep-alive HTTP/1.1 to one upstream (``http://host[:port][/prefix]``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        limit: int = 256,
        idle_seconds: float = 15.0,
        answer_limit: int | None = DEFAULT_ANSWER_LIMIT,
        head_limit: int = DEFAULT_HEAD_LIMIT,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the upstream must be an http:// URL with a host: {base_url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"the upstream URL must be scheme, host, port and path: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = shown if self.port == 80 else f"{shown}:{self.port}"
        self._prefix = parts.path.rstrip("/")
        self.timeout, self.connect_timeout = timeout, min(connect_timeout, timeout)
        self.idle_seconds = idle_seconds
        self.answer_limit, self.head_limit = answer_limit, head_limit
        self._slots = asyncio.Semaphore(limit)
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False
        self.connections_opened = 0  # how often a new connection was needed (for tests)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the client's connections live on (the first caller's)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> Answer:
        """Send a request (``target``: path and query, as sent to the guard) and return the
        model server's whole answer; ``UpstreamError`` when there is none."""
        if self._closed:
            raise UnreachableError("the client is closed")
        request = self._serialise(method, target, headers, body)
        loop = self.loop
        deadline = loop.time() + self.timeout
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamTimeoutError("no free connection within the timeout") from None
        else:
            await self._slots.acquire()
        try:
            retried = False
            while True:
                connection = self._take_idle(loop.time())
                reused = connection is not None
                if connection is None:
                    connection = await self._connect(deadline)
                try:
                    answer = await connection.exchange(
                        request, method == "HEAD", deadline, self.answer_limit, self.head_limit
                    )
                except _RetryError:
                    # The connection closed before any answer byte: the server dropped an
                    # idle connection as it was reused, or it refused the request unanswered.
                    if reused and not retried and method in IDEMPOTENT:
                        retried = True
                        continue
                    raise ConnectionLostError(
                        "the model server closed the connection without answering"
                    ) from None
                if connection.reusable and not connection.closed and not self._closed:
                    connection.idle_since = loop.time()
                    self._idle.append(connection)
                elif not connection.closed:
                    connection._abort()
                return answer
        finally:
            self._slots.release()

    def _serialise(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body or method in _WITH_BODY:
            lines.append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines)
        # A CR or LF inside a name, value or the target would start a header of its own.
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise ValueError("a request line or header contains CR or LF")
        # surrogateescape: header bytes that are not UTF-8 (obs-text, which aiohttp's server
        # accepted and decoded so) go out exactly as the client sent them.
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape") + body

    def _take_idle(self, now: float) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if (
                connection.closed
                or transport is None
                or transport.is_closing()
                or now - connection.idle_since > self.idle_seconds
            ):
                connection._abort()
                continue
            return connection
        return None

    def _forget(self, connection: _Connection) -> None:
        """A connection closed (by either side): never hand it out again."""
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    async def _connect(self, deadline: float) -> _Connection:
        loop = self.loop
        connect_by = min(deadline, loop.time() + self.connect_timeout)
        try:
            async with asyncio.timeout_at(connect_by):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamTimeoutError("no connection to the model server in time") from None
        except OSError as error:
            raise UnreachableError(
                f"cannot connect to {self._host_header}: {error.strerror or error}"
            ) from error
        self.connections_opened += 1
        return protocol

    async def close(self) -> None:
        """Close every idle connection; those in use close when their exchange ends."""
        self._closed = True
        while self._idle:
            self._idle.pop()._abort()
