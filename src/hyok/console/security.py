"""The ASGI wrapper of the console: security headers and the request body limit.

Every response gets a Content-Security-Policy that allows scripts, styles
and images from this origin only (so no inline script runs), may not be
framed, sends no referrer to other origins, and is not cached, except
static assets, which the browser revalidates.
"""

from __future__ import annotations

from typing import Final

from hyok.kms.api.app import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "SECURITY_HEADERS", "ConsoleGuard", "RequestBodyTooLargeError"]

MAX_BODY_BYTES: Final = 256 * 1024
"""The largest request body the console reads: forms with a 32 KB key policy or an upload."""

SECURITY_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_STATIC_PREFIX: Final = "/console/static/"


class ConsoleGuard:
    """Wraps the console app with :data:`SECURITY_HEADERS` and :data:`MAX_BODY_BYTES`."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"ConsoleGuard(max_body_bytes={self._max_body_bytes})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        cache = b"no-cache" if scope["path"].startswith(_STATIC_PREFIX) else b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"cache-control"
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"cache-control", cache))
                message = {**message, "headers": headers}
            await send(message)

        for name, value in scope["headers"]:
            if name == b"content-length" and (
                not value.isdigit() or int(value) > self._max_body_bytes
            ):
                await _too_large(send_with_headers, self._max_body_bytes)
                return

        received = 0
        limit = self._max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLargeError
            return message

        await self._app(scope, limited_receive, send_with_headers)


class RequestBodyTooLargeError(Exception):
    """A request body without Content-Length passed the limit while a page read it.

    The page decorator of :mod:`hyok.console.web` responds with status 413.
    """


async def _too_large(send: Send, limit: int) -> None:
    body = f"The request body is larger than {limit} bytes, the console's limit.\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
