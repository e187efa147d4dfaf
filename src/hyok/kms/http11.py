"""uvicorn's httptools protocol with long request lines, a bounded request head and joined writes.

KMS parameters travel in the query string, so a request line can exceed
100 KB. uvicorn's httptools protocol splits the request target with
``httptools.parse_url``, which refuses targets longer than 65,535 bytes
(httptools 0.9), and it sets no bound of its own on the size of the request
line and headers. :class:`KmsHttpProtocol` splits long targets itself and
refuses a head larger than :data:`MAX_REQUEST_HEAD_BYTES` with status 400,
uvicorn's response to every request it cannot parse. It costs about a
third of the CPU of uvicorn's h11 protocol, which handles long lines too.

uvicorn writes a response's head and body separately, and over TLS each
write becomes its own record and system call. The protocol's transport
joins the writes of one pass of the event loop, so a response leaves in one
write; this saved about 20 µs per KMS request in ``benchmarks/kms_load.py``.

It never writes uvicorn's access log, which would record every parameter
value of the query string, even when another server in the process has
given the ``uvicorn.access`` logger a handler.

Use it as uvicorn's ``http`` setting::

    uvicorn.run(app, ..., http=KmsHttpProtocol, access_log=False)
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_REQUEST_HEAD_BYTES", "KmsHttpProtocol", "RequestHeadTooLargeError"]

MAX_REQUEST_HEAD_BYTES: Final = 256 * 1024
"""Request line and headers together: room for a 128 KB request line and its headers."""

# httptools.parse_url keeps offsets in 16 bits.
_PARSE_URL_MAX: Final = 65_535


class RequestHeadTooLargeError(Exception):
    """The request line and headers exceed :data:`MAX_REQUEST_HEAD_BYTES`.

    Raised inside the parser's callback, so httptools reports a parser error
    and uvicorn responds with status 400 and closes the connection.
    """


class _CoalescingTransport:
    """A transport whose writes wait for the end of the event loop's pass and leave as one.

    Every other attribute is the wrapped transport's. Closing sends what
    waits first.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"_CoalescingTransport({self._transport!r}, pending={len(self._pending)})"

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class KmsHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 over httptools, for request targets up to the head limit, writes joined."""

    _head_bytes = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn logs each request target, and with it every KMS parameter value,
        # whenever the uvicorn.access logger has a handler, whatever access_log is set to.
        self.access_log = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvicorn uses only write, close and the attributes that pass through.
        wrapped = _CoalescingTransport(cast(asyncio.Transport, transport))
        super().connection_made(cast(asyncio.Transport, wrapped))

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        target = self.url
        if len(target) <= _PARSE_URL_MAX:
            super().on_headers_complete()
            return
        # The target is in origin form (path?query). Only the query can be
        # this long: a long path still fails in parse_url, with status 400.
        path, _, query = target.partition(b"?")
        query = query.partition(b"#")[0]
        self.url = path
        try:
            super().on_headers_complete()
        finally:
            self.url = target
        # The request's task is created but has not run yet, so its scope gets the query.
        self.scope["query_string"] = query

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            raise RequestHeadTooLargeError(
                f"the request line and headers exceed {MAX_REQUEST_HEAD_BYTES} bytes"
            )
