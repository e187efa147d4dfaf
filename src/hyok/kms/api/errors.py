"""The error codes of the Alibaba Cloud KMS OpenAPI (2016-01-20), and the XKI proxy mapping.

Each class carries the wire ``code``, the HTTP ``http_status`` and a message
that is safe to return to the caller. A class name is its code without the
dots, plus ``Error``. So :class:`UnsupportedOperationError` here is the KMS
code ``UnsupportedOperation`` (400), not the XKS error of the same name in
:mod:`hyok.common.errors`.

    RequestError (hyok.common.errors)
    └── KmsError
        ├── InvalidParameterError               400 InvalidParameter
        │   ├── InvalidTagKeyError              400 InvalidParameter.TagKey
        │   └── InvalidTagValueError            400 InvalidParameter.TagValue
        ├── MissingParameterError               400 MissingParameter
        ├── DuplicateTagKeyError                400 Duplicate.TagKey
        ├── UnsupportedOperationError           400 UnsupportedOperation
        ├── RejectedShareQuotaExceedLimitError  400 Rejected.ShareQuotaExceedLimit
        ├── RejectedLimitExceededError          400 Rejected.LimitExceeded
        ├── AliasAlreadyExistsError             400 AliasAlreadyExists
        ├── ForbiddenNoPermissionError          403 Forbidden.NoPermission
        ├── ForbiddenInstanceNotFoundError      403 Forbidden.DKMSInstanceNotFound
        ├── ForbiddenInstanceStateInvalidError  403 Forbidden.DKMSInstanceStateInvalid
        ├── ForbiddenKeyNotFoundError           404 Forbidden.KeyNotFound
        ├── ForbiddenKeyVersionNotFoundError    404 Forbidden.KeyVersionNotFound
        ├── ForbiddenAliasNotFoundError         404 Forbidden.AliasNotFound
        ├── InvalidActionNotFoundError          404 InvalidAction.NotFound
        ├── RejectedDisabledError               409 Rejected.Disabled
        ├── RejectedPendingDeletionError        409 Rejected.PendingDeletion
        ├── RejectedUnavailableError            409 Rejected.Unavailable
        ├── RejectedStateModifiedFailedError    409 Rejected.StateModifiedFailed
        ├── DeleteConflictShareKeyError         409 DeleteConflict.KmsInstanceShare.Key
        ├── DryRunOperationError                412 DryRunOperationError
        ├── RejectedThrottlingError             429 Rejected.Throttling
        ├── InternalFailureError                500 InternalFailure
        └── ServiceUnavailableTemporaryError    503 ServiceUnavailableTemporary

Two errors of :mod:`hyok.kms.ciphertext` also reach the caller with the code
``InvalidParameter``: ``InvalidCiphertextBlobError`` and
``InvalidEncryptionContextError``.

:func:`map_proxy_error` turns a failed XKI proxy call into one of these errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from hyok.common.errors import RequestError
from hyok.kms.ciphertext import InvalidCiphertextBlobError
from hyok.kms.xki_client import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
)

__all__ = [
    "PROXY_THROTTLING_RETRY_AFTER_MS",
    "AliasAlreadyExistsError",
    "DeleteConflictShareKeyError",
    "DryRunOperationError",
    "DuplicateTagKeyError",
    "ForbiddenAliasNotFoundError",
    "ForbiddenInstanceNotFoundError",
    "ForbiddenInstanceStateInvalidError",
    "ForbiddenKeyNotFoundError",
    "ForbiddenKeyVersionNotFoundError",
    "ForbiddenNoPermissionError",
    "InternalFailureError",
    "InvalidActionNotFoundError",
    "InvalidParameterError",
    "InvalidTagKeyError",
    "InvalidTagValueError",
    "KmsError",
    "MissingParameterError",
    "RejectedDisabledError",
    "RejectedLimitExceededError",
    "RejectedPendingDeletionError",
    "RejectedShareQuotaExceedLimitError",
    "RejectedStateModifiedFailedError",
    "RejectedThrottlingError",
    "RejectedUnavailableError",
    "ServiceUnavailableTemporaryError",
    "UnsupportedOperationError",
    "map_proxy_error",
    "shown_value",
]

# NOTE: an XKS error carries no wait time, so this wait after a proxy's
# ThrottlingException is a chosen value, not one the proxy asked for.
PROXY_THROTTLING_RETRY_AFTER_MS: Final = 1_000
_SHOWN_LENGTH: Final = 160


def shown_value(value: str) -> str:
    """Quote ``value`` for an error message: escaped to printable text and cut to 160 characters."""
    if len(value) > _SHOWN_LENGTH:
        return repr(value[: _SHOWN_LENGTH - 3]) + "..."
    return repr(value)


class KmsError(RequestError):
    """Base class of the errors that the KMS OpenAPI returns with an Alibaba Cloud code."""

    code = "InternalFailure"
    http_status = 500


class InvalidParameterError(KmsError):
    """A parameter value that is malformed or out of range. ``parameter`` names it."""

    code = "InvalidParameter"
    http_status = 400

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class InvalidTagKeyError(InvalidParameterError):
    code = "InvalidParameter.TagKey"


class InvalidTagValueError(InvalidParameterError):
    code = "InvalidParameter.TagValue"


class MissingParameterError(KmsError):
    """A required parameter that the request does not contain. ``parameter`` names it."""

    code = "MissingParameter"
    http_status = 400

    def __init__(self, parameter: str) -> None:
        super().__init__(
            f"The required parameter {parameter} is missing. Add {parameter} to the request."
        )
        self.parameter = parameter


class DuplicateTagKeyError(KmsError):
    code = "Duplicate.TagKey"
    http_status = 400


class UnsupportedOperationError(KmsError):
    """An operation that is not valid for this key, such as rotation of an external key."""

    code = "UnsupportedOperation"
    http_status = 400


class RejectedShareQuotaExceedLimitError(KmsError):
    """A key policy that would grant more foreign accounts than the instance's quota allows."""

    code = "Rejected.ShareQuotaExceedLimit"
    http_status = 400


class RejectedLimitExceededError(KmsError):
    """A request that would pass a resource quota of the account, such as its number of aliases."""

    code = "Rejected.LimitExceeded"
    http_status = 400


class AliasAlreadyExistsError(KmsError):
    """CreateAlias with a name that the account already has in this region."""

    code = "AliasAlreadyExists"
    http_status = 400


class ForbiddenNoPermissionError(KmsError):
    """A request denied by a RAM or key policy.

    ``access_denied_detail``, when given, is returned as the response's
    ``AccessDeniedDetail`` object, which the SDK copies to the exception's
    ``access_denied_detail``.
    """

    code = "Forbidden.NoPermission"
    # NOTE: the KMS docs list this code with 400 for CreateKey and SetKeyPolicy
    # and with 403 for every other action. This class always uses 403.
    http_status = 403

    def __init__(
        self, message: str, *, access_denied_detail: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.access_denied_detail = dict(access_denied_detail) if access_denied_detail else None


class ForbiddenResourceNotFoundError(KmsError):
    """A named sub-resource, such as a key policy name other than ``default``, that is not found."""

    code = "Forbidden.ResourceNotFound"
    http_status = 404


class ForbiddenInstanceNotFoundError(KmsError):
    code = "Forbidden.DKMSInstanceNotFound"
    http_status = 403


class ForbiddenInstanceStateInvalidError(KmsError):
    """An instance whose XKI proxy is not connected or is misconfigured."""

    code = "Forbidden.DKMSInstanceStateInvalid"
    http_status = 403


class ForbiddenKeyNotFoundError(KmsError):
    code = "Forbidden.KeyNotFound"
    http_status = 404


class ForbiddenKeyVersionNotFoundError(KmsError):
    code = "Forbidden.KeyVersionNotFound"
    http_status = 404


class ForbiddenAliasNotFoundError(KmsError):
    code = "Forbidden.AliasNotFound"
    http_status = 404


class DryRunOperationError(KmsError):
    """A DryRun request that passed every check and would have succeeded.

    The reference leaves the status undocumented; hyok uses 412, as AWS KMS
    does for its dry-run error.
    """

    code = "DryRunOperationError"
    http_status = 412


class InvalidActionNotFoundError(KmsError):
    """An ``Action`` that the service does not implement."""

    code = "InvalidAction.NotFound"
    # NOTE: the KMS docs give no status for this gateway code. 404 is a choice
    # that matches the other "not found" codes.
    http_status = 404


class RejectedDisabledError(KmsError):
    code = "Rejected.Disabled"
    http_status = 409


class RejectedPendingDeletionError(KmsError):
    code = "Rejected.PendingDeletion"
    http_status = 409


class RejectedUnavailableError(KmsError):
    """A key that cannot be used now because its external key is not usable."""

    code = "Rejected.Unavailable"
    http_status = 409


class RejectedStateModifiedFailedError(KmsError):
    """A key state change that the key's current state does not allow."""

    code = "Rejected.StateModifiedFailed"
    http_status = 409


class DeleteConflictShareKeyError(KmsError):
    """An instance share that cannot end because the member still has keys in the instance.

    The code is a hyok extension, in the form of RAM's ``DeleteConflict`` codes.
    """

    code = "DeleteConflict.KmsInstanceShare.Key"
    http_status = 409


class RejectedThrottlingError(KmsError):
    """A request above a rate limit.

    ``retry_after_ms``, when positive, is sent as the ``x-acs-retry-after``
    header, and the SDK then raises ThrottlingException in place of ClientException.
    """

    code = "Rejected.Throttling"
    http_status = 429

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class InternalFailureError(KmsError):
    code = "InternalFailure"
    http_status = 500


class ServiceUnavailableTemporaryError(KmsError):
    """A dependency that failed or timed out. The same request may succeed later."""

    code = "ServiceUnavailableTemporary"
    http_status = 503


def map_proxy_error(exc: ProxyError, *, key_id: str, instance_id: str) -> RequestError:
    """Translate a failed XKI proxy call on KMS key ``key_id`` into the error for the KMS caller.

    The module docstring of ``hyok.kms.xki_client._errors`` gives the KMS
    condition of each failure. The messages name the key, the external key or
    the instance and what to check. They never contain the proxy's
    ``errorMessage``. The returned error has ``exc`` as its ``__cause__``.
    """
    error = _map(exc, key_id=key_id, instance_id=instance_id)
    error.__cause__ = exc
    return error


def _map(exc: ProxyError, *, key_id: str, instance_id: str) -> RequestError:
    proxy = f"The XKI proxy of instance {instance_id}"
    if isinstance(exc, ProxyRejectedError):
        return _map_rejected(exc, key_id=key_id, proxy=proxy)
    if isinstance(exc, ProxyUnreachableError):
        return ForbiddenInstanceStateInvalidError(
            f"{proxy} is unreachable ({_kind_text(exc.kind)}). Check that the proxy is "
            "running and that the instance's proxy endpoint resolves and accepts connections."
        )
    if isinstance(exc, ProxyTlsError):
        return ForbiddenInstanceStateInvalidError(
            f"{proxy} failed the TLS check ({_kind_text(exc.kind)}). Check the proxy's "
            "certificate chain and host name and the certificate fingerprint configured "
            "for the instance."
        )
    if isinstance(exc, ProxyTimeoutError):
        return ServiceUnavailableTemporaryError(
            f"{proxy} timed out ({_kind_text(exc.kind)}). Retry later. If it persists, "
            "check the proxy's load and the network latency to it."
        )
    if isinstance(exc, ProxyInvalidResponseError):
        return InternalFailureError(
            f"{proxy} sent an invalid response ({_kind_text(exc.kind)}). Check that the "
            "proxy implements the XKS proxy API v1."
        )
    return InternalFailureError(f"The call to {_lower_first(proxy)} failed.")


# One case per XKS errorName keeps this function in the order of the table it implements.
def _map_rejected(  # noqa: PLR0911
    exc: ProxyRejectedError, *, key_id: str, proxy: str
) -> RequestError:
    external = f"external key {shown_value(exc.external_key_id or '')}"
    unavailable = f"Key {key_id} is unavailable because its {external}"
    match exc.error_name:
        case "AuthenticationFailedException":
            return ForbiddenInstanceStateInvalidError(
                f"{proxy} rejected the credential of the KMS. Check the proxy access key "
                "ID and secret configured for the instance."
            )
        case "InvalidUriPathException":
            return ForbiddenInstanceStateInvalidError(
                f"{proxy} rejected the URI path. Check the proxy path configured for the instance."
            )
        case "KeyNotFoundException":
            return RejectedUnavailableError(
                f"{unavailable} was not found by {_lower_first(proxy)}. Check that the "
                "external key exists in the proxy's key manager."
            )
        case "InvalidStateException":
            return RejectedUnavailableError(
                f"{unavailable} is not ENABLED in {_lower_first(proxy)}. Enable the "
                "external key in the proxy's key manager."
            )
        case "InvalidKeyUsageException":
            return RejectedUnavailableError(
                f"{unavailable} does not allow both ENCRYPT and DECRYPT. Allow both usages "
                "for the external key in the proxy's key manager."
            )
        case "InvalidCiphertextException":
            return InvalidCiphertextBlobError(
                f"the proxy rejected the ciphertext or AAD of {exc.operation} "
                f"({exc.error_name}, HTTP {exc.http_status})"
            )
        case "AccessDeniedException":
            return ForbiddenNoPermissionError(
                f"{proxy} denied {exc.operation} on {external} by its authorization "
                "policy. Ask the proxy's administrator to allow the request."
            )
        case "ThrottlingException":
            return RejectedThrottlingError(
                f"{proxy} is throttling requests. Retry later.",
                retry_after_ms=PROXY_THROTTLING_RETRY_AFTER_MS,
            )
        case "UnsupportedOperationException":
            return UnsupportedOperationError(
                f"{proxy} does not accept a value of this {exc.operation} request because "
                "it is above the proxy's size limits. Use a shorter EncryptionContext."
            )
        case "DependencyTimeoutException":
            return ServiceUnavailableTemporaryError(
                f"The key manager behind {_lower_first(proxy)} timed out. Retry later."
            )
        case "ValidationException" | "MethodNotAllowed":
            # The proxy found the KMS's own request malformed, so this is a KMS fault.
            return InternalFailureError(
                f"{proxy} rejected the request of the KMS as malformed. Report the request ID."
            )
        case _:
            return ServiceUnavailableTemporaryError(
                f"{proxy} or its key manager failed. Retry later. If it persists, check "
                "the proxy's logs."
            )


def _kind_text(kind: ProxyErrorKind) -> str:
    return kind.value.replace("_", " ")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
