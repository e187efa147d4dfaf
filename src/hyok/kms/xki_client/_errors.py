"""The errors of an XKI proxy call, and the KMS condition that each one means.

Errors: every failure of a call raises one subclass of :class:`ProxyError`,
translated from connection failures (in ``_transport``) or from the response (in
``_responses``) and chained to its cause. Each carries a :class:`ProxyErrorKind`. The KMS API layer
turns them into its own error codes. This table records which KMS condition
each one means:

==================================  =================================================
exception, errorName or kind        KMS condition
==================================  =================================================
ProxyRejectedError, by errorName:
  AuthenticationFailedException     proxy misconfigured: credential rejected
                                    (instance connection state Error)
  InvalidUriPathException           proxy misconfigured: wrong URI path
                                    (instance connection state Error)
  KeyNotFoundException              external key missing in the proxy or its KMI
  InvalidStateException             external key not ENABLED in the proxy
  InvalidKeyUsageException          external key lacks ENCRYPT or DECRYPT usage
  InvalidCiphertextException        decrypt: ciphertext not authentic, or the AAD
                                    (encryption context) differs
  AccessDeniedException             the proxy's own authorization policy denied it
  ThrottlingException               the proxy throttled the KMS; retry later
  UnsupportedOperationException     a value above the proxy's size limits
  DependencyTimeoutException        the proxy's key manager timed out
  ValidationException,              the KMS sent a request the proxy finds
  MethodNotAllowed                  malformed: a bug in the KMS
  InternalException, other names    proxy or key manager failure
ProxyUnreachableError:              proxy unreachable
  NAME_RESOLUTION_FAILED,           (instance connection state Disconnected)
  CONNECTION_FAILED, CONNECTION_LOST
ProxyTlsError:                      proxy misconfigured: TLS failure
  TLS_HANDSHAKE_FAILED,             (instance connection state Error)
  CERTIFICATE_INVALID,
  FINGERPRINT_MISMATCH
ProxyTimeoutError:                  proxy timed out
  POOL_TIMEOUT, CONNECT_TIMEOUT,
  RESPONSE_TIMEOUT
ProxyInvalidResponseError:          proxy sent an invalid response
  INVALID_RESPONSE,
  INTEGRITY_CHECK_FAILED
==================================  =================================================

The XKS specification also lists "key store not connected". That condition
is the KMS's own instance connection state, which it checks before calling
this client, so no exception here stands for it.

Messages name the operation, the external key ID, the endpoint and the
fix. Secrets, plaintext, AAD and data keys appear in no message, repr or log
line. The proxy's ``errorMessage`` is kept in
:attr:`ProxyRejectedError.proxy_message` and the WARNING log line, never in
the exception message.
"""

from __future__ import annotations

import enum


@enum.unique
class ProxyErrorKind(enum.StrEnum):
    """Failure category of a proxy call. The module's table gives the KMS condition of each."""

    REJECTED = "rejected"
    """The proxy returned an XKS error (``errorName``)."""
    NAME_RESOLUTION_FAILED = "name_resolution_failed"
    """DNS lookup of the endpoint (or connect address) failed."""
    CONNECTION_FAILED = "connection_failed"
    """The TCP connection could not be established."""
    CONNECTION_LOST = "connection_lost"
    """The connection broke after it was established and before a full response arrived."""
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    """The TLS handshake failed for a reason other than certificate verification."""
    CERTIFICATE_INVALID = "certificate_invalid"
    """The proxy's certificate chain or host name did not verify."""
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    """The certificate verified but is not the pinned one."""
    POOL_TIMEOUT = "pool_timeout"
    """Every pooled connection stayed busy for the whole budget."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The budget ran out while connecting or in the TLS handshake."""
    RESPONSE_TIMEOUT = "response_timeout"
    """The budget ran out after the client started sending the request."""
    INVALID_RESPONSE = "invalid_response"
    """The response is not a valid XKS response: not JSON, fields missing or of wrong sizes."""
    INTEGRITY_CHECK_FAILED = "integrity_check_failed"
    """The Encrypt response's ciphertext data integrity value does not match its fields."""


class ProxyError(Exception):
    """Base class of the errors of an XKI proxy call.

    ``message`` (also ``str()``) is safe to return to the KMS caller. It
    never contains a secret, plaintext or proxy-supplied text other than the
    errorName. ``attempts`` counts the requests sent or tried.
    """

    def __init__(
        self,
        kind: ProxyErrorKind,
        message: str,
        *,
        operation: str,
        external_key_id: str | None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.operation = operation
        self.external_key_id = external_key_id
        self.attempts = 1


class ProxyRejectedError(ProxyError):
    """The proxy returned an XKS error.

    ``error_name`` and ``http_status`` come from the response. ``proxy_message``
    is the proxy's ``errorMessage`` (printable ASCII, at most 512 characters),
    for logs only.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        external_key_id: str | None,
        error_name: str,
        http_status: int,
        proxy_message: str,
    ) -> None:
        super().__init__(
            ProxyErrorKind.REJECTED,
            message,
            operation=operation,
            external_key_id=external_key_id,
        )
        self.error_name = error_name
        self.http_status = http_status
        self.proxy_message = proxy_message


class ProxyUnreachableError(ProxyError):
    """The proxy could not be reached: DNS, TCP connect, or a connection that broke."""


class ProxyTlsError(ProxyError):
    """The TLS handshake failed, the certificate did not verify, or it is not the pinned one."""


class ProxyTimeoutError(ProxyError):
    """The call's budget ran out before a full response arrived."""


class ProxyInvalidResponseError(ProxyError):
    """The proxy's response is not a valid XKS response."""
