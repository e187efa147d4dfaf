"""uvicorn's httptools protocol, with long request lines and a bound on the request head.

KMS parameters travel in the query string, so a request line can exceed
100 KB. uvicorn's httptools protocol splits the request target with
``httptools.parse_url``, which refuses targets longer than 65,535 bytes
(httptools 0.9), and it sets no bound of its own on the size of the request
line and headers. :class:`KmsHttpProtocol` splits long targets itself and
refuses a head larger than :data:`MAX_REQUEST_HEAD_BYTES` with status 400,
uvicorn's response to every request it cannot parse. It costs about a
third of the CPU of uvicorn's h11 protocol, which handles long lines too.

Use it as uvicorn's ``http`` setting::

    uvicorn.run(app, ..., http=KmsHttpProtocol, access_log=False)
"""

from __future__ import annotations

from typing import Final

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


class KmsHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 over httptools, for request targets up to the head limit."""

    _head_bytes = 0

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
