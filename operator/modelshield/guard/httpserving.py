"""The guard's HTTP/1.1 server for its clients' port: ``asyncio.Protocol`` and llhttp.

aiohttp's server machinery (``Request`` objects, the router, ``prepare``/``write_eof``,
``StreamReader``) was a large share of the guard's work per request
(docs/api-protection.md, "Measured"). This server does only what the guard needs, the way
``forwarding`` does for the guard's client: it reads requests, hands each one
(``Request``: method, target as sent, headers as received, peer address, a body to
read with a ceiling) to one handler, and writes the handler's ``Answer`` whole, in one
write. What a request means is the handler's business (``server.Pipeline``); this module
is framing only.

Requests are parsed strictly by llhttp (``httptools``, no leniency switched on), and at
least as strictly as aiohttp's server did. Refused with a well-formed ``400`` and the
connection closed: a malformed request line or header (whitespace before the colon,
obs-fold, a bare LF, a control character), ``Content-Length`` and ``Transfer-Encoding``
together, two ``Content-Length`` headers, a ``Transfer-Encoding`` whose last coding is not
``chunked`` (``chunked, identity``, ``xchunked``), a malformed chunk size or extension,
a header that is not UTF-8 is taken as it came (surrogate escapes), a protocol upgrade or
``CONNECT``, and more than ``MAX_PIPELINED`` requests waiting behind the one being handled.
``505`` for a version other than 1.1 and 1.0 (HTTP/0.9 among them), ``414`` for a request target over ``MAX_TARGET`` bytes, ``431`` for a header over
``MAX_FIELD`` bytes, more than ``MAX_HEADERS`` headers or a head over ``MAX_HEAD`` bytes
(counted as it comes, before it ends), ``417`` for an ``Expect`` other than
``100-continue``.

Bodies: a declared ``Content-Length`` over the body limit is never read; a body
(chunked or not) is counted as it comes and no more than the limit is kept; reading stops
at the limit and ``Request.body`` raises ``BodyTooLargeError``. Trailers of a chunked body are
dropped (never handed over), and what a body's reads bring without adding to it (trailers,
chunk extensions) is bounded like a head (431). ``Expect: 100-continue``
is answered only when the handler asks for the body, so a request refused on its head
never has its body sent.

Connections: requests on one connection are handled one at a time, in order (pipelined
ones wait, and the connection is not read while one waits); ``HTTP/1.0`` and
``Connection: close`` end the connection after the answer, as does an ``Answer`` with
``close`` (a refusal whose body may be unread) or an answer sent before its request's
body came whole. Closing is lingering: the answer, then a FIN, then what the client still
sends is read and dropped for at most ``LINGER_SECONDS`` (a close with unread bytes would
send a reset that may destroy the answer before the client reads it). Time limits: a head
must come whole within ``HEAD_TIMEOUT`` of its first byte, a body within ``BODY_TIMEOUT``
of its head, and an idle keep-alive connection is closed after ``IDLE_TIMEOUT`` (checked
every ``TICK`` seconds, so each may end up to a tick late); at most ``max_connections``
at once, the next ones are answered ``503`` and closed. A client that goes away
mid-body makes ``Request.body`` raise ``ClientGoneError``; one that goes away mid-answer
loses the answer and nothing else: no handler is cancelled (each is bounded by its own
timeouts, the model server's client among them).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.utils
import http
import json
import logging
import socket
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Final

import httptools

LOGGER = logging.getLogger(__name__)

#: A request line's target, as nginx's and aiohttp's default line limit (8 KiB - 2).
MAX_TARGET: Final = 8190
#: One header's name and value.
MAX_FIELD: Final = 8190
MAX_HEADERS: Final = 100
#: The whole head (request line and headers).
MAX_HEAD: Final = 32 * 1024
#: Requests parsed and waiting behind the one being handled, per connection.
MAX_PIPELINED: Final = 16
HEAD_TIMEOUT: Final = 10.0
BODY_TIMEOUT: Final = 30.0
IDLE_TIMEOUT: Final = 60.0
#: How often a connection's deadline is checked (one timer per connection per tick).
TICK: Final = 2.0
#: Each connection may hold an unfinished head of up to ``MAX_HEAD`` bytes: 4,096 of them
#: are 128 MiB, under the guard container's default 512Mi with room for the rest (10,000
#: slow heads were +328 MiB in the second review round).
MAX_CONNECTIONS: Final = 4096
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 1024 * 1024

_NO_BODY_STATUSES: Final = frozenset({204, 304})
_JSON: Final = "application/json; charset=utf-8"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyTooLargeError(Exception):
    """The body is over the server's limit (``size``: its declared length or what came)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the body is larger than the limit ({size} bytes or more)")
        self.size = size


class ClientGoneError(ConnectionError):
    """The body did not come whole: the client left, ran out of time or sent it malformed
    (the message says which)."""


class Request:
    """One request as the handler sees it. ``target`` is the request target exactly as
    sent (undecoded; absolute-form too); ``headers`` are as received, in order, values
    decoded as UTF-8 with surrogate escapes; ``content_type`` and ``content_encoding``
    are their headers' values (repeated headers joined by ``", "``), None when absent."""

    __slots__ = (
        "content_encoding",
        "content_length",
        "content_type",
        "headers",
        "method",
        "peer",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        peer: str,
        content_length: int | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.peer = peer
        self.content_length = content_length
        self.content_type = content_type
        self.content_encoding = content_encoding

    async def body(self) -> bytes:
        """The whole body; ``BodyTooLargeError`` over the limit, ``ClientGoneError``."""
        raise NotImplementedError


@dataclasses.dataclass(slots=True)
class Answer:
    """What the handler answers: the server adds ``Content-Length`` and ``Connection``.
    ``close``: end the connection after it. ``done`` is called once the answer is written
    (or could not be: the client is gone)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    close: bool = False
    done: Callable[[], None] | None = None


Handler = Callable[[Request], Awaitable[Answer]]

_dates: list[tuple[int, str]] = [(0, "")]


def http_date() -> str:
    """The ``Date`` header's value now (formatted once a second)."""
    now = int(time.time())
    second, text = _dates[0]
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _dates[0] = (now, text)
    return text


def error_answer(status: int, reason: str, code: str = "Malformed") -> Answer:
    """A JSON refusal the server itself sends (the request never reached the handler)."""
    body = json.dumps({"error": reason, "reason": code}).encode()
    headers = [("Content-Type", _JSON), ("Date", http_date())]
    return Answer(status, headers, body, close=True)


_STATUS_LINES: dict[int, str] = {}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = f"HTTP/1.1 {status} {phrase}\r\n"
        _STATUS_LINES[status] = line
    return line


#: Header names the server reads (lower case).
_SPECIAL_NAMES: Final = frozenset({"content-length", "content-type", "content-encoding", "expect"})
#: Header name as received -> (the name as text, its lower-case form when the server reads
#: it, else ""): names repeat from request to request. Bounded: names past the bound are
#: decoded on every request, never remembered.
_NAMES_SEEN: dict[bytes, tuple[str, str]] = {}
_REMEMBERED_NAMES: Final = 1024


def _name(name: bytes) -> tuple[str, str]:
    text = name.decode("latin-1")  # llhttp lets only token characters (ASCII) through
    lower = text.lower()
    known = (text, lower if lower in _SPECIAL_NAMES else "")
    if len(_NAMES_SEEN) < _REMEMBERED_NAMES:
        _NAMES_SEEN[name] = known
    return known


class _HeadError(Exception):
    """A request the server refuses itself (raised in a parser callback)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Incoming(Request):
    """A request read by this server: its body comes in as the connection reads it."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_connection",
        "_expect_continue",
        "_failure",
        "_size",
        "_too_large",
        "_waiter",
        "http10",
        "keep_alive",
    )

    def __init__(
        self,
        connection: _Connection,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        peer: str,
    ) -> None:
        super().__init__(method, target, headers, peer)
        self._connection = connection
        self._chunks: list[bytes | bytearray] = []  # one piece, or all joined
        self._size = 0
        self._complete = False
        self._too_large: int | None = None
        self._failure = ""  # why the body will not come whole
        self._expect_continue = False
        self._waiter: asyncio.Future[None] | None = None
        self.keep_alive = True
        self.http10 = False

    async def body(self) -> bytes:
        while True:
            if self._too_large is not None:
                raise BodyTooLargeError(self._too_large)
            if self._complete:
                chunks = self._chunks
                return bytes(chunks[0]) if chunks else b""  # bytes(bytes) is no copy
            if self._failure:
                raise ClientGoneError(self._failure)
            if self._expect_continue:
                self._expect_continue = False
                self._connection._write(_CONTINUE)
            waiter = self._connection._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def _fail(self, why: str) -> None:
        if not self._complete and not self._failure:
            self._failure = why
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One client connection: parse, hand requests over in order, write answers."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server.loop
        self._max_head = server.max_head
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._closed = False
        self._paused = False
        self._eof = False
        # The message being parsed.
        self._in_head = False
        self._target = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._unparsed_head = 0  # bytes of reads that ended inside a head
        self._bodyless = 0  # bytes of reads inside a body that added nothing to it
        self._declared: int | None = None
        self._content_type: str | None = None
        self._content_encoding: str | None = None
        self._expect: str | None = None
        self._parsing: _Incoming | None = None  # head done, body still coming
        # Requests in their turn.
        self._handling: _Incoming | None = None
        self._waiting: collections.deque[_Incoming] = collections.deque()
        self._broken: Answer | None = None  # what to answer once those before are answered
        self._lingering = False
        self._lingered = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None  # set while waiting for the client

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = typing.cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        server = self._server
        server.connections.add(self)
        if len(server.connections) > server.max_connections:
            self._send(error_answer(503, "too many connections", "Unavailable"), http10=False)
            self._close()
            return
        self._deadline = self._loop.time() + server.idle_timeout
        self._timer = self._loop.call_later(server.tick, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self._abort()
            return
        if self._broken is not None or self._closed:
            return
        parsing = self._parsing
        size_before = parsing._size if parsing is not None else 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _HeadError):
                self._refuse(cause.status, cause.reason)
            else:
                LOGGER.exception("the guard's HTTP server failed on a request")
                self._refuse(400, "malformed request")
            return
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not accepted")
            return
        except httptools.HttpParserError as error:
            self._refuse(400, f"malformed request: {error}")
            return
        if self._in_head:
            # llhttp keeps a header's bytes until it ends: every byte since the head began
            # is counted as it comes (once: finished headers are not added again), so an
            # endless header never grows past the limit, also within the read it began in
            # (counted whole: an over-estimate by the bytes of the requests before it).
            self._unparsed_head += len(data)
            if self._unparsed_head > self._max_head:
                self._refuse(431, "the request's head is too large")
        elif parsing is not None and parsing is self._parsing and parsing._too_large is None:
            # Bytes of a body that add nothing to it (trailers, chunk extensions) are
            # bounded like a head: llhttp keeps a trailer's bytes until it ends.
            if parsing._size == size_before:
                self._bodyless += len(data)
                if self._bodyless > self._max_head:
                    self._refuse(431, "the request's trailers or chunk extensions are too large")
            else:
                self._bodyless = 0

    def eof_received(self) -> bool:
        self._eof = True
        if self._parsing is not None:
            self._parsing._fail("the client closed the connection before its body came whole")
        if self._handling is None:
            self._close()
            return False
        return True  # answer what is being handled, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for request in (self._parsing, self._handling, *self._waiting):
            if request is not None:
                request._fail("the connection closed before the body came whole")
        self._wake_drained()

    def pause_writing(self) -> None:
        # The client is not reading its answers: no next request is handled (nor read)
        # until it does, so answers cannot pile up in memory.
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drained()

    def _wake_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if len(self._waiting) >= MAX_PIPELINED:
            raise _HeadError(400, "too many pipelined requests")
        self._in_head = True
        self._target = bytearray()
        self._headers = []
        self._head_size = 0
        self._unparsed_head = 0
        self._declared = None
        self._content_type = self._content_encoding = self._expect = None
        self._deadline = self._loop.time() + self._server.head_timeout

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > MAX_TARGET:
            raise _HeadError(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_size += size + 4
        headers = self._headers
        if size > MAX_FIELD or self._head_size > self._max_head or len(headers) >= MAX_HEADERS:
            if size > MAX_FIELD:
                raise _HeadError(431, "a request header is too large")
            if len(headers) >= MAX_HEADERS:
                raise _HeadError(431, "too many request headers")
            raise _HeadError(431, "the request's head is too large")
        if not self._in_head:
            return  # a trailer of a chunked body: counted above, never read nor forwarded
        known = _NAMES_SEEN.get(name)
        if known is None:
            known = _name(name)
        text = value.decode("utf-8", "surrogateescape")
        headers.append((known[0], text))
        if known[1]:
            self._special_header(known[1], text)

    def _special_header(self, name: str, value: str) -> None:
        if name == "content-length":
            # llhttp refuses a second one and one beside Transfer-Encoding; digits only.
            try:
                self._declared = int(value)
            except ValueError:
                raise _HeadError(400, "the Content-Length is not a number") from None
        elif name == "content-type":
            # One media type only: joined, "application/json; x=1, text/plain" reads as
            # JSON to the guard while a server taking the last header reads text/plain
            # (aiohttp's parser refuses a repeated Content-Type as well).
            if self._content_type is not None:
                raise _HeadError(400, "more than one Content-Type header")
            self._content_type = value
        elif name == "content-encoding":
            previous = self._content_encoding
            self._content_encoding = value if previous is None else f"{previous}, {value}"
        elif name == "expect":
            previous = self._expect
            self._expect = value if previous is None else f"{previous}, {value}"

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._in_head = False
        if parser.should_upgrade():
            raise _HeadError(400, "protocol upgrades and CONNECT are not accepted")
        method = parser.get_method().decode("ascii")
        target = self._target.decode("utf-8", "surrogateescape")
        request = _Incoming(self, method, target, self._headers, self._peer)
        request.content_length = self._declared
        request.content_type = self._content_type
        request.content_encoding = self._content_encoding
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _HeadError(505, "only HTTP/1.1 and HTTP/1.0 are served")
        request.keep_alive = parser.should_keep_alive()
        request.http10 = version == "1.0"
        if self._expect is not None:
            if self._expect.strip().lower() != "100-continue":
                raise _HeadError(417, "only Expect: 100-continue is understood")
            request._expect_continue = not request.http10
        limit = self._server.body_limit
        if self._declared is not None and self._declared > limit:
            request._too_large = self._declared
            self._pause()  # its body is never read
        self._parsing = request
        self._bodyless = 0
        self._deadline = self._loop.time() + self._server.body_timeout
        if self._handling is None:
            self._start(request)
        else:
            self._waiting.append(request)
            self._pause()  # its turn comes when the one before is answered

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is None or request._too_large is not None:
            return
        request._size += len(body)
        if request._size > self._server.body_limit:
            request._too_large = request._size
            request._chunks = []
            self._pause()
            request._wake()
            return
        chunks = request._chunks
        if not chunks:
            chunks.append(body)  # most bodies come in one piece: kept as it is, not copied
            return
        if len(chunks) == 1 and type(chunks[0]) is bytes:
            # A second piece: joined as they come, so that a body in tiny chunks costs
            # its bytes, not an object per chunk.
            chunks[0] = bytearray(chunks[0])
        chunks[0] += body

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is None:
            return
        self._parsing = None
        request._complete = True
        request._wake()
        if self._handling is None:
            self._deadline = self._loop.time() + self._server.idle_timeout
        elif self._drained is None:
            self._deadline = float("inf")  # the handler's own timeouts bound it

    # turns

    def _start(self, request: _Incoming) -> None:
        self._handling = request
        self._loop.create_task(self._serve(request))

    async def _serve(self, request: _Incoming) -> None:
        handler = self._server.handler
        while True:
            try:
                answer = await handler(request)
            except Exception:
                LOGGER.exception("the guard's handler failed")
                answer = error_answer(500, "the guard failed on this request", "Internal")
            close = (
                answer.close
                or not request.keep_alive
                or not request._complete
                or (self._eof and not self._waiting)  # answer what came before the EOF
                or self._closed
            )
            self._send(answer, request.http10, head=request.method == "HEAD", close=close)
            if answer.done is not None:
                try:
                    answer.done()
                except Exception:
                    LOGGER.exception("the guard failed after answering")
            if close:
                self._handling = None
                self._close()
                return
            if self._write_paused:
                # Wait until the client reads (or the idle deadline ends the connection).
                self._deadline = self._loop.time() + self._server.idle_timeout
                self._drained = self._loop.create_future()
                try:
                    await self._drained
                finally:
                    self._drained = None
                if self._closed:
                    self._handling = None
                    return
            if self._waiting:
                request = self._waiting.popleft()
                self._handling = request
                if not self._waiting and request._too_large is None:
                    self._resume()
                continue
            self._handling = None
            if self._broken is not None:
                self._send(self._broken, http10=False)
                self._close()
            elif self._parsing is None and not self._in_head:
                self._deadline = self._loop.time() + self._server.idle_timeout
            return

    # writing and closing

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not self._closed and not transport.is_closing():
            transport.write(data)

    def _send(
        self, answer: Answer, http10: bool, *, head: bool = False, close: bool = True
    ) -> None:
        status = answer.status
        parts = [_status_line(status)]
        parts += [f"{name}: {value}\r\n" for name, value in answer.headers]
        body = answer.body
        if status < 200 or status in _NO_BODY_STATUSES:
            body = b""
        else:
            parts.append(f"Content-Length: {len(body)}\r\n")
        if close:
            parts.append("Connection: close\r\n")
        elif http10:
            parts.append("Connection: keep-alive\r\n")
        text = "".join(parts)
        # A CR or LF inside a name or value would start a header (or a body) of its own.
        if text.count("\n") != len(parts) or text.count("\r") != len(parts):
            LOGGER.error("an answer header holds CR or LF; answered 502 instead")
            self._send(error_answer(502, "the answer could not be relayed", "BadAnswer"), http10)
            return
        data = (text + "\r\n").encode("utf-8", "surrogateescape")
        self._write(data if head or not body else data + body)

    def _refuse(self, status: int, reason: str, code: str = "Malformed") -> None:
        """The request being parsed is refused: after the answers of those before it."""
        self._pause()
        # Nothing more is parsed: a fresh parser lets go of what llhttp kept of the refused
        # head (up to a read's 256 KiB) while the connection lingers.
        self._parser = httptools.HttpRequestParser(self)
        if self._parsing is not None:
            self._parsing._fail(reason)
        answer = error_answer(status, reason, code)
        if self._handling is None:
            self._send(answer, http10=False)
            self._close()
        else:
            self._broken = answer

    def _pause(self) -> None:
        if not self._paused and self._transport is not None and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self._transport is not None and not self._closed:
            self._paused = False
            self._transport.resume_reading()

    def _close(self) -> None:
        """Lingering close: the answer and a FIN, then drop what the client still sends."""
        transport = self._transport
        if transport is None or self._closed or self._lingering:
            return
        self._lingering = True
        if not self._eof and transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                self._abort()
                return
            self._resume()
            self._loop.call_later(LINGER_SECONDS, self._abort)
        else:
            transport.close()

    def _abort(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.abort()

    def _check_deadline(self) -> None:
        self._timer = None
        if self._closed or self._lingering:
            return
        if self._loop.time() >= self._deadline:
            handling = self._handling
            if self._drained is not None or (handling is not None and not handling._complete):
                self._abort()  # a body that did not come, or an answer not read, in time
            elif self._in_head or self._parsing is not None:
                self._refuse(408, "the request did not come in time", "Timeout")
            else:
                self._close()  # idle
            return
        self._timer = self._loop.call_later(self._server.tick, self._check_deadline)


class Server:
    """The clients' port: every request goes to ``handler``, one per connection at a time."""

    def __init__(
        self,
        handler: Handler,
        *,
        body_limit: int,
        max_head: int = MAX_HEAD,
        head_timeout: float = HEAD_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        tick: float = TICK,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.handler = handler
        self.body_limit = body_limit
        self.max_head = max_head
        self.head_timeout, self.body_timeout = head_timeout, body_timeout
        self.idle_timeout, self.tick = idle_timeout, tick
        self.max_connections = max_connections
        self.connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: asyncio.Server | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with 0)."""
        self._listening = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=1024, reuse_address=True
        )
        sockets = self._listening.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._listening is not None:
            self._listening.close()
        for connection in list(self.connections):
            connection._abort()
        if self._listening is not None:
            await self._listening.wait_closed()
