"""The one exception tree of hyok.

Every class carries the wire ``code`` a caller sees, the HTTP status it maps to,
and a message that is safe to return to the caller: it names the bad value and
the fix, and never contains a secret, a key or plaintext.

    HyokError
    ├── RequestError                      caller faults and dependency faults on a request
    │   ├── ValidationError               400 ValidationException
    │   ├── InvalidStateError             400 InvalidStateException
    │   ├── InvalidCiphertextError        400 InvalidCiphertextException
    │   ├── InvalidKeyUsageError          400 InvalidKeyUsageException
    │   ├── AuthenticationFailedError     401 AuthenticationFailedException
    │   ├── AccessDeniedError             403 AccessDeniedException
    │   ├── KeyNotFoundError              404 KeyNotFoundException
    │   ├── InvalidUriPathError           404 InvalidUriPathException
    │   ├── MethodNotAllowedError         405 MethodNotAllowed
    │   ├── KeyAlreadyExistsError         409 KeyAlreadyExists
    │   ├── PayloadTooLargeError          413 PayloadTooLarge
    │   ├── ThrottlingError               429 ThrottlingException
    │   ├── UnsupportedOperationError     501 UnsupportedOperationException
    │   ├── DependencyTimeoutError        503 DependencyTimeoutException
    │   └── InternalError                 500 InternalException
    └── ConfigError                       a configuration or file that cannot be used
        └── KeystoreError                 the keystore file cannot be opened
            ├── KeystorePassphraseError   wrong passphrase
            ├── KeystoreCorruptError      truncated, altered or not a keystore
            └── KeystoreVersionError      written by a newer hyok

The XKS error names and statuses are those of the XKS proxy API v1 error table.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AuthenticationFailedError",
    "ConfigError",
    "DependencyTimeoutError",
    "HyokError",
    "InternalError",
    "InvalidCiphertextError",
    "InvalidKeyUsageError",
    "InvalidStateError",
    "InvalidUriPathError",
    "KeyAlreadyExistsError",
    "KeyNotFoundError",
    "KeystoreCorruptError",
    "KeystoreError",
    "KeystorePassphraseError",
    "KeystoreVersionError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "RequestError",
    "ThrottlingError",
    "UnsupportedOperationError",
    "ValidationError",
]


class HyokError(Exception):
    """Base class of every error hyok raises on purpose."""

    code: str = "InternalException"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(HyokError):
    """An error that ends one request and is returned to its caller."""


class ValidationError(RequestError):
    code = "ValidationException"
    http_status = 400


class InvalidStateError(RequestError):
    code = "InvalidStateException"
    http_status = 400


class InvalidCiphertextError(RequestError):
    code = "InvalidCiphertextException"
    http_status = 400


class InvalidKeyUsageError(RequestError):
    code = "InvalidKeyUsageException"
    http_status = 400


class AuthenticationFailedError(RequestError):
    code = "AuthenticationFailedException"
    http_status = 401


class AccessDeniedError(RequestError):
    code = "AccessDeniedException"
    http_status = 403


class KeyNotFoundError(RequestError):
    code = "KeyNotFoundException"
    http_status = 404


class InvalidUriPathError(RequestError):
    code = "InvalidUriPathException"
    http_status = 404


class MethodNotAllowedError(RequestError):
    code = "MethodNotAllowed"
    http_status = 405


class KeyAlreadyExistsError(RequestError):
    code = "KeyAlreadyExists"
    http_status = 409


class PayloadTooLargeError(RequestError):
    code = "PayloadTooLarge"
    http_status = 413


class ThrottlingError(RequestError):
    code = "ThrottlingException"
    http_status = 429


class UnsupportedOperationError(RequestError):
    code = "UnsupportedOperationException"
    http_status = 501


class DependencyTimeoutError(RequestError):
    code = "DependencyTimeoutException"
    http_status = 503


class InternalError(RequestError):
    code = "InternalException"
    http_status = 500


class ConfigError(HyokError):
    """A configuration value or a file it names cannot be used."""

    code = "InvalidConfiguration"


class KeystoreError(ConfigError):
    """The keystore file cannot be opened; nothing was changed."""

    code = "KeystoreError"


class KeystorePassphraseError(KeystoreError):
    code = "KeystorePassphraseIncorrect"


class KeystoreCorruptError(KeystoreError):
    code = "KeystoreCorrupt"


class KeystoreVersionError(KeystoreError):
    code = "KeystoreVersionUnsupported"
