"""Certificate pinning, and the translation of connection pool failures.

Certificate pinning: when the binding has a server certificate fingerprint,
the client's SSL context gets its own ``SSLObject`` class. That class compares
the SHA-256 of the peer's leaf certificate with the pinned value as soon as
the handshake completes, after the normal chain and hostname verification
and before any request byte is written. A mismatch fails the handshake, so
every new connection is checked and nothing is sent to an unpinned server.

A timeout or a failure of the connection pool becomes the
:class:`ProxyError` of the phase that the attempt had reached.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
from typing import TypeVar

from hyok.kms.xki_client._errors import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
)
from hyok.kms.xki_client._pool import (
    ConnectFailedError,
    ConnectionLostError,
    MalformedResponseError,
    Phase,
)
from hyok.kms.xki_client._requests import _Call

T = TypeVar("T")


class _FingerprintMismatchError(ssl.SSLCertVerificationError):
    """The proxy's leaf certificate is not the pinned one. ``actual`` is its SHA-256."""

    def __init__(self, actual: bytes) -> None:
        super().__init__("server certificate fingerprint mismatch")
        self.actual = actual


def _pinning_ssl_object_class(expected: bytes) -> type[ssl.SSLObject]:
    """Build an SSLObject class that checks the peer's leaf certificate against ``expected``.

    asyncio (and uvloop) drive the handshake through
    ``SSLContext.wrap_bio``, so this class is used for every new connection.
    The check runs when OpenSSL reports the handshake complete. The handshake's
    last message is not flushed yet at that point, so the server's side of the
    handshake never completes and no request byte is written.
    """

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            certificate = self.getpeercert(binary_form=True)
            actual = hashlib.sha256(certificate or b"").digest()
            if certificate is None or not hmac.compare_digest(actual, expected):
                raise _FingerprintMismatchError(actual)

    return PinnedSSLObject


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _first(chain: list[BaseException], kind: type[T]) -> T | None:
    for exc in chain:
        if isinstance(exc, kind):
            return exc
    return None


def _timeout_error(call: _Call, phase: Phase) -> ProxyTimeoutError:
    budget_ms = round(call.budget * 1000)
    if phase is Phase.POOL:
        return ProxyTimeoutError(
            ProxyErrorKind.POOL_TIMEOUT,
            f"{call.subject} timed out after {budget_ms} ms waiting for a free connection: "
            "raise the client's max_connections or lower the request rate",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    if phase in (Phase.CONNECT, Phase.TLS):
        return ProxyTimeoutError(
            ProxyErrorKind.CONNECT_TIMEOUT,
            f"{call.subject} timed out after {budget_ms} ms while connecting: check that the "
            "proxy is running and reachable from the KMS",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    return ProxyTimeoutError(
        ProxyErrorKind.RESPONSE_TIMEOUT,
        f"{call.subject} timed out after {budget_ms} ms waiting for the response: check the "
        "proxy's and the key manager's latency",
        operation=call.operation.name,
        external_key_id=call.external_key_id,
    )


def _tls_error(call: _Call, chain: list[BaseException]) -> ProxyTlsError:
    mismatch = _first(chain, _FingerprintMismatchError)
    if mismatch is not None:
        return ProxyTlsError(
            ProxyErrorKind.FINGERPRINT_MISMATCH,
            f"{call.subject} failed: the proxy's TLS certificate has the SHA-256 fingerprint "
            f"{mismatch.actual.hex(':').upper()}, not the pinned one; update the pinned "
            "fingerprint if the certificate was replaced on purpose",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    verification = _first(chain, ssl.SSLCertVerificationError)
    if verification is not None:
        reason = (
            getattr(verification, "verify_message", None)
            or verification.reason
            or "verification failed"
        )
        return ProxyTlsError(
            ProxyErrorKind.CERTIFICATE_INVALID,
            f"{call.subject} failed: the proxy's TLS certificate did not verify ({reason}); "
            "check that the CA file contains the CA that issued it and that it names the "
            "endpoint's host",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    ssl_error = _first(chain, ssl.SSLError)
    reason = (ssl_error.reason if ssl_error is not None else None) or "the connection was closed"
    return ProxyTlsError(
        ProxyErrorKind.TLS_HANDSHAKE_FAILED,
        f"{call.subject} failed: the TLS handshake failed ({reason}); check that the endpoint "
        "serves HTTPS with TLS 1.2 or later and does not require a client certificate, which "
        "this client does not send",
        operation=call.operation.name,
        external_key_id=call.external_key_id,
    )


def _transport_error(
    call: _Call,
    exc: ConnectFailedError | ConnectionLostError | MalformedResponseError,
    phase: Phase,
) -> ProxyError:
    """Translate a failure of the connection pool."""
    if isinstance(exc, MalformedResponseError):
        return ProxyInvalidResponseError(
            ProxyErrorKind.INVALID_RESPONSE,
            f"{call.subject} failed: the proxy sent a malformed HTTP/1.1 response ({exc})",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    if isinstance(exc, ConnectionLostError):
        return ProxyUnreachableError(
            ProxyErrorKind.CONNECTION_LOST,
            f"{call.subject} failed: the connection to the proxy closed before the response "
            "was complete",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    chain = _causes(exc)
    if phase is Phase.TLS or _first(chain, ssl.SSLError) is not None:
        return _tls_error(call, chain)
    # NOTE: no test runs this branch, because the tests resolve no host names.
    if _first(chain, socket.gaierror) is not None:
        return ProxyUnreachableError(
            ProxyErrorKind.NAME_RESOLUTION_FAILED,
            f"{call.subject} failed: the proxy's host name could not be resolved; check "
            "the endpoint and the KMS's DNS configuration",
            operation=call.operation.name,
            external_key_id=call.external_key_id,
        )
    return ProxyUnreachableError(
        ProxyErrorKind.CONNECTION_FAILED,
        f"{call.subject} failed: the TCP connection could not be established; check that "
        "the proxy is running and that the network allows the KMS to reach it",
        operation=call.operation.name,
        external_key_id=call.external_key_id,
    )
