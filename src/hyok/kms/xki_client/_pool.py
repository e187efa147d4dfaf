"""A keep-alive HTTP/1.1 connection pool to one XKI proxy.

httpx with its default transport (httpcore on anyio) cost about 900 µs of
CPU per proxy call in ``benchmarks/kms_load.py``; its client layer alone,
over a transport that does nothing, about 110 µs. This pool sends the
client's prepared request bytes over asyncio protocols and parses responses
with httptools (llhttp), for about a tenth of that. It serves one proxy:
every request goes to the address and TLS server name it was built with.

Each request reports how far it got in an :class:`Attempt`, so that a
failure or a timeout can be told apart by phase. Failures raise
:class:`ConnectFailedError`, :class:`ConnectionLostError` or
:class:`MalformedResponseError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import ssl
import time
from typing import Final, cast

import httptools

__all__ = [
    "Attempt",
    "ConnectFailedError",
    "ConnectionLostError",
    "MalformedResponseError",
    "Phase",
    "ProxyConnectionPool",
    "Response",
]

# A response's status line and headers may not exceed this size. XKS
# responses have a handful of short headers.
_MAX_HEADER_BYTES: Final = 64 * 1024
_MAX_HEADERS: Final = 100
_CLOSE_WAIT_SECONDS: Final = 1.0

Response = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, header fields (names as sent) and body of one response."""


@enum.unique
class Phase(enum.Enum):
    """How far one request got."""

    POOL = enum.auto()
    CONNECT = enum.auto()
    TLS = enum.auto()
    REQUEST = enum.auto()


class Attempt:
    """The progress of one request, which the pool updates as it goes."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.POOL


class ConnectFailedError(Exception):
    """The TCP connection or the TLS handshake failed; the cause has the reason."""


class ConnectionLostError(Exception):
    """The connection closed before the whole response arrived."""


class MalformedResponseError(Exception):
    """The proxy's bytes are not a valid HTTP/1.1 response, or break a size limit."""


class _Connection(asyncio.Protocol):
    """One TLS connection: at most one request in flight, the response buffered whole."""

    def __init__(self, max_body_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.lost = asyncio.Event()
        self.idle_since = time.monotonic()
        self._max_body_bytes = max_body_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._complete = False
        self._keep_alive = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes while no request is in flight: the connection cannot be trusted.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, MalformedResponseError):
                self._fail(cause)
            else:
                self._fail(MalformedResponseError("the response could not be parsed"))
            return
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponseError(f"the response could not be parsed ({exc})"))
            return
        if self._complete or self._body_bytes > self._max_body_bytes:
            # A body over the limit is returned cut short, so that the caller
            # reports its size; the connection cannot carry another request.
            if not self._complete or not self._keep_alive:
                self.close()
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                ConnectionLostError("the proxy closed the connection before the response ended")
            )

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > _MAX_HEADER_BYTES or len(self._headers) >= _MAX_HEADERS:
            raise MalformedResponseError(
                f"the response headers exceed {_MAX_HEADER_BYTES} bytes or {_MAX_HEADERS} fields"
            )
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._body_bytes <= self._max_body_bytes:
            self._body.append(body)
        self._body_bytes += len(body)

    def on_message_complete(self) -> None:
        self._complete = True
        # llhttp reports keep-alive correctly only until the message ends.
        self._keep_alive = self._parser.should_keep_alive()

    # Requests

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def exchange(self, request: bytes) -> Response:
        """Send one request and wait for its whole response (or the body limit)."""
        assert self.transport is not None
        self._status = 0
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        self._complete = False
        self._keep_alive = False
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            self.transport.write(request)
            await waiter
        finally:
            self._waiter = None
        return self._status, self._headers, b"".join(self._body)

    def _fail(self, exc: MalformedResponseError) -> None:
        waiter = self._waiter
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ProxyConnectionPool:
    """Up to ``max_connections`` keep-alive TLS connections to one proxy.

    ``address`` is the host and port to dial, ``server_hostname`` the name
    that TLS sends and verifies. An idle connection is closed after
    ``keepalive_expiry`` seconds. Response bodies over ``max_body_bytes``
    are cut just after the limit, so the caller sees that they were too big.
    A request cancelled while it is in flight closes its connection.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        address: tuple[str, int],
        server_hostname: str,
        max_connections: int,
        keepalive_expiry: float,
        max_body_bytes: int,
    ) -> None:
        self._ssl_context = ssl_context
        self._host, self._port = address
        self._server_hostname = server_hostname
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._max_body_bytes = max_body_bytes
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"ProxyConnectionPool(address={self._host}:{self._port}, idle={len(self._idle)}, "
            f"max_connections={self._max_connections})"
        )

    async def send(self, request: bytes, attempt: Attempt) -> Response:
        """Send one whole HTTP/1.1 request (head and body) and return the response."""
        if self._closed:
            raise ConnectFailedError("the client is closed")
        async with self._slots:
            connection = self._take_idle()
            if connection is None:
                connection = await self._connect(attempt)
            attempt.phase = Phase.REQUEST
            try:
                response = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
        return response

    async def aclose(self) -> None:
        """Close every idle connection and wait, briefly, until their sockets are closed."""
        self._closed = True
        closing = list(self._idle)
        self._idle.clear()
        for connection in closing:
            connection.close()
        waits = [connection.lost.wait() for connection in closing if connection.transport]
        if waits:
            # A TLS close sends close_notify first; a proxy that never completes
            # the close must not hold up shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), _CLOSE_WAIT_SECONDS)

    def _take_idle(self) -> _Connection | None:
        expired_before = time.monotonic() - self._keepalive_expiry
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and connection.idle_since > expired_before:
                return connection
            connection.close()
        return None

    async def _connect(self, attempt: Attempt) -> _Connection:
        loop = asyncio.get_running_loop()
        attempt.phase = Phase.CONNECT
        try:
            transport, connection = await loop.create_connection(
                lambda: _Connection(self._max_body_bytes), self._host, self._port
            )
        except OSError as exc:
            raise ConnectFailedError("the TCP connection failed") from exc
        attempt.phase = Phase.TLS
        try:
            tls_transport = await loop.start_tls(
                transport, connection, self._ssl_context, server_hostname=self._server_hostname
            )
        except BaseException as exc:
            transport.close()
            if isinstance(exc, OSError):  # ssl.SSLError and ConnectionError included
                raise ConnectFailedError("the TLS handshake failed") from exc
            raise
        if tls_transport is None:
            transport.close()
            raise ConnectFailedError("the proxy closed the connection during the TLS handshake")
        connection.transport = tls_transport
        return connection
