"""Client certificate subject checks for uvicorn's HTTP protocols.

Python's ``ssl`` module has no certificate verify callback. OpenSSL therefore
checks that a client certificate chains to the configured CA (``CERT_REQUIRED``
in :func:`hyok.common.tls.server_ssl_context`) but cannot check its subject.
The protocol classes built here check the subject in ``connection_made``,
which asyncio and uvloop call when the TLS handshake has completed and before
they deliver any application data. A connection with a subject that is not
allowed is aborted there, so the server reads no request and sends no HTTP
response. The client sees a closed connection and no TLS alert. With TLS 1.3,
and with TLS 1.2 on uvloop, the client's handshake has completed by then. With
TLS 1.2 on asyncio, the server's Finished message is still unsent, so the
client's handshake fails.

Example::

    http = mtls_protocol_class(base_protocol_class("httptools"), allow_list, on_reject)
    config = uvicorn.Config(app, http=http, ssl_context_factory=...)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hyok.common.errors import ConfigError
from hyok.common.tls import SubjectAllowList, certificate_subject

__all__ = ["HttpImplementation", "base_protocol_class", "mtls_protocol_class"]

logger = logging.getLogger(__name__)

HttpImplementation = Literal["auto", "httptools", "h11"]

_BASE_CLASSES: dict[str, type[asyncio.Protocol]] = {
    "auto": AutoHTTPProtocol,
    "httptools": HttpToolsProtocol,
    "h11": H11Protocol,
}


def base_protocol_class(http: HttpImplementation) -> type[asyncio.Protocol]:
    """Return the uvicorn protocol class that ``uvicorn.Config(http=...)`` selects for a name.

    ``"auto"`` is httptools when it is installed and h11 otherwise.
    """
    try:
        return _BASE_CLASSES[http]
    except KeyError:
        raise ConfigError(
            f"unknown HTTP implementation {http!r}; use 'httptools', 'h11' or 'auto'"
        ) from None


@dataclass(frozen=True)
class _GuardSettings:
    allow_list: SubjectAllowList
    on_reject: Callable[[str], None] | None


class _ClientSubjectGuard(asyncio.Protocol):
    """Mixin placed before a uvicorn HTTP protocol class in the MRO."""

    # Held in a dataclass because a function stored directly as a class
    # attribute would become a bound method.
    _mtls_guard: ClassVar[_GuardSettings]
    _mtls_rejected: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The base class registers the connection with the server first, so its
        # connection_lost, called after the abort, finds the state it expects.
        super().connection_made(transport)

        ssl_object = transport.get_extra_info("ssl_object")
        certificate: bytes | None = None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            certificate = ssl_object.getpeercert(binary_form=True)
        guard = self._mtls_guard
        if certificate is not None and guard.allow_list.allows(certificate):
            return

        # A connection without TLS or without a certificate is rejected too, so
        # that a server context built without client_ca_file fails closed.
        self._mtls_rejected = True
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()
        subject = "" if certificate is None else certificate_subject(certificate)
        if guard.on_reject is not None:
            guard.on_reject(subject)
        else:
            logger.warning(
                "closed the TLS connection from %s: client certificate subject %r "
                "is not in the allow-list",
                transport.get_extra_info("peername"),
                subject,
            )

    def data_received(self, data: bytes) -> None:
        # The transports deliver nothing after abort(); this is a second guard
        # in case an event loop reads data that was buffered during the handshake.
        if self._mtls_rejected:
            return
        super().data_received(data)


def mtls_protocol_class(
    base: type[asyncio.Protocol],
    allow_list: SubjectAllowList,
    on_reject: Callable[[str], None] | None = None,
) -> type[asyncio.Protocol]:
    """Build a subclass of a uvicorn HTTP protocol class that enforces ``allow_list``.

    Pass the result as ``uvicorn.Config(http=...)``; uvicorn constructs it like
    its own classes. Each connection whose client certificate subject is not on
    the list, or that has no client certificate, is aborted before any request
    is read. ``on_reject`` is then called in the event loop with the subject as
    an RFC 4514 string, or with ``""`` when there was no certificate. It should
    return quickly and not raise. Without ``on_reject``, a warning is logged to
    ``hyok.xki.tls_guard`` instead.

    The class is created at run time, so it cannot be pickled. Build it in each
    worker process rather than passing it to a spawned process.
    """
    if not (isinstance(base, type) and issubclass(base, asyncio.Protocol)):
        raise TypeError(f"base must be an asyncio.Protocol subclass, got {base!r}")
    name = f"MutualTls{base.__name__}"
    namespace = {
        "_mtls_guard": _GuardSettings(allow_list, on_reject),
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"{base.__name__} that allows only the client subjects {allow_list.subjects}.",
    }
    return type(name, (_ClientSubjectGuard, base), namespace)
