"""The error codes of the RAM (2015-05-01) and STS (2015-04-01) APIs that hyok returns.

Each error carries the wire ``code``, the HTTP ``http_status`` and a message
that is safe to return. The codes and statuses are those of Alibaba Cloud's
RAM and STS error tables, such as ``EntityNotExist.User`` (404) and
``DeleteConflict.User.AccessKey`` (409). The messages are hyok's: they name
the value and the fix.
"""

from __future__ import annotations

from typing import Final

from hyok.common.errors import AuthenticationFailedError, RequestError

__all__ = [
    "NO_PERMISSION",
    "ConsoleSignInError",
    "RamError",
    "already_exists",
    "delete_conflict",
    "invalid_parameter",
    "not_found",
]

NO_PERMISSION: Final = "NoPermission"


class RamError(RequestError):
    """A RAM or STS request fault, with its code and HTTP status set per instance."""

    def __init__(self, code: str, http_status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class ConsoleSignInError(AuthenticationFailedError):
    """A failed console sign-in, with one message for every cause.

    An unknown account or user, a user without a login profile and a wrong
    password all raise it with the same message, so that the caller learns
    nothing about which identities exist.
    """

    def __init__(self) -> None:
        super().__init__(
            "the sign-in name or the password is incorrect: check both, and ask the account "
            "administrator to set a console password if you have none"
        )


def invalid_parameter(code: str, message: str) -> RamError:
    """Return a 400 ``InvalidParameter.*`` or ``MalformedPolicyDocument`` error."""
    return RamError(code, 400, message)


def not_found(code: str, message: str) -> RamError:
    """Return a 404 ``EntityNotExist.*`` error."""
    return RamError(code, 404, message)


def already_exists(code: str, message: str) -> RamError:
    """Return a 409 ``EntityAlreadyExists.*`` or ``LimitExceeded.*`` error."""
    return RamError(code, 409, message)


def delete_conflict(code: str, message: str) -> RamError:
    """Return a 409 ``DeleteConflict.*`` error."""
    return RamError(code, 409, message)
