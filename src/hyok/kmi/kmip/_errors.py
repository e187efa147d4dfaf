"""The one place that turns KMIP failures into hyok errors.

A KMIP operation fails in one of two ways: the server responds with a failure
result (:class:`KmipResultError`, with a Result Reason such as
``ITEM_NOT_FOUND``), or the connection breaks (:class:`ConnectionBrokenError`).
Messages name the server, the operation and the Result Reason, never a key,
data, or the server's free-text Result Message.
"""

from __future__ import annotations

import enum
from typing import Final

from hyok.common.errors import (
    HyokError,
    InternalError,
    InvalidCiphertextError,
    KeyNotFoundError,
    ValidationError,
)
from hyok.kmi.kmip._connection import ConnectionBrokenError
from hyok.kmi.kmip._protocol import KmipResultError

__all__ = [
    "DECRYPT_FAILED",
    "Operation",
    "ServerUnavailableError",
    "decrypt_failed",
    "request_error",
]

DECRYPT_FAILED: Final = "decryption failed: the ciphertext, tag, IV or AAD does not match this key"
# Result Reasons of a Decrypt whose input does not authenticate. PyKMIP 0.11
# responds to a wrong tag, AAD or IV with General Failure; other servers use
# Cryptographic Failure or Invalid Field.
_DECRYPT_REASONS: Final = frozenset({"GENERAL_FAILURE", "CRYPTOGRAPHIC_FAILURE", "INVALID_FIELD"})


@enum.unique
class Operation(enum.Enum):
    """The backend operation that failed; a Result Reason can mean different things in each."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    MANAGE = "manage"


class ServerUnavailableError(InternalError):
    """The KMIP server failed, refused the client, or could not be reached in time."""


def decrypt_failed() -> InvalidCiphertextError:
    """Return the one error of every decrypt whose input does not authenticate."""
    return InvalidCiphertextError(DECRYPT_FAILED)


def request_error(  # noqa: PLR0911 - one return per Result Reason reads best
    exc: BaseException, operation: Operation, server: str
) -> HyokError:
    """Build the error a caller sees for a KMIP failure on ``server``.

    Key-state and usage failures are mapped by the caller, which re-reads the
    key's attributes to tell them apart; this covers everything else.
    """
    if isinstance(exc, ConnectionBrokenError):
        return ServerUnavailableError(f"KMIP server {server} is unavailable: {exc}")
    if not isinstance(exc, KmipResultError):
        return ServerUnavailableError(
            f"KMIP server {server} failed during {operation.value}: {type(exc).__name__}"
        )
    reason = exc.reason
    if operation is Operation.DECRYPT and reason in _DECRYPT_REASONS:
        return decrypt_failed()
    if reason == "ITEM_NOT_FOUND":
        return KeyNotFoundError(
            f"KMIP server {server} has no object for {exc.operation} (Item Not Found); the "
            "key may have been deleted meanwhile: check the key ID"
        )
    if reason == "AUTHENTICATION_NOT_SUCCESSFUL":
        return ServerUnavailableError(
            f"KMIP server {server} rejected the client certificate "
            "(Authentication Not Successful); check the certificate, its CA and the "
            "server's client-authentication settings"
        )
    if reason == "RESPONSE_TOO_LARGE":
        return ValidationError(
            f"KMIP server {server} rejected the request as too large (Response Too Large); "
            "send less data"
        )
    if reason in ("OPERATION_NOT_SUPPORTED", "FEATURE_NOT_SUPPORTED"):
        return ServerUnavailableError(
            f"KMIP server {server} does not support {exc.operation} ({reason}); the KMIP "
            "backend needs a server that accepts KMIP 1.4 messages and performs AES-GCM"
        )
    return ServerUnavailableError(
        f"KMIP server {server} responded to {exc.operation} with {reason}"
    )
