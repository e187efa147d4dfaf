"""RAM identities of an account: users, roles, custom identity policies and STS credentials.

Pure code, no I/O. Each record is a frozen dataclass whose constructor checks
every field, as in :mod:`hyok.kms.domain.models`. The name rules are those of
the RAM API (2015-05-01):

- user name: 1 to 64 letters, digits, ``.``, ``_`` and ``-``;
- role name: 1 to 64 letters, digits, ``.`` and ``-``;
- policy name: 1 to 128 letters, digits and ``-``;
- role session name (STS AssumeRole): 2 to 64 letters, digits, ``.``, ``@``,
  ``_`` and ``-``.

Generators take their random source as an argument, like those of
:mod:`hyok.kms.domain.ids`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain._checks import (
    check_account_id,
    check_datetime,
    check_pattern,
    check_secret,
    check_str,
    check_text,
    set_field,
    shown,
)
from hyok.kms.domain.ids import RandomBytes

__all__ = [
    "DEFAULT_MAX_SESSION_DURATION",
    "MAX_ACCESS_KEYS_PER_USER",
    "MAX_COMMENTS_LENGTH",
    "MAX_DISPLAY_NAME_LENGTH",
    "MAX_POLICIES_PER_IDENTITY",
    "MAX_POLICY_DESCRIPTION_LENGTH",
    "MAX_ROLE_DESCRIPTION_LENGTH",
    "MAX_ROLE_SESSION_DURATION",
    "MAX_SESSION_DURATION",
    "MIN_ROLE_SESSION_DURATION",
    "MIN_SESSION_DURATION",
    "POLICY_NAME",
    "ROLE_NAME",
    "SESSION_NAME",
    "STS_ACCESS_KEY_PREFIX",
    "USER_NAME",
    "AttachedPolicy",
    "RamPolicy",
    "RamRole",
    "RamUser",
    "StsCredential",
    "new_role_id",
    "new_security_token",
    "new_sts_access_key_id",
    "new_user_id",
    "role_arn",
    "security_token_hash",
    "user_arn",
]

USER_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
ROLE_NAME: Final = re.compile(r"[A-Za-z0-9.-]{1,64}")
POLICY_NAME: Final = re.compile(r"[A-Za-z0-9-]{1,128}")
SESSION_NAME: Final = re.compile(r"[A-Za-z0-9.@_-]{2,64}")

MAX_DISPLAY_NAME_LENGTH: Final = 128
MAX_COMMENTS_LENGTH: Final = 128
MAX_ROLE_DESCRIPTION_LENGTH: Final = 1_024
MAX_POLICY_DESCRIPTION_LENGTH: Final = 1_024
MAX_ACCESS_KEYS_PER_USER: Final = 2
"""The RAM limit of AccessKeys per RAM user."""
# NOTE: RAM documents per-identity limits that differ by policy type; 10 custom
# policies per user or role is hyok's limit.
MAX_POLICIES_PER_IDENTITY: Final = 10

MIN_SESSION_DURATION: Final = 900
"""The shortest STS session, in seconds."""
MAX_SESSION_DURATION: Final = 43_200
"""The longest STS session that any role allows, in seconds."""
MIN_ROLE_SESSION_DURATION: Final = 3_600
MAX_ROLE_SESSION_DURATION: Final = 43_200
DEFAULT_MAX_SESSION_DURATION: Final = 3_600
"""The ``MaxSessionDuration`` of a role created without one, in seconds."""

STS_ACCESS_KEY_PREFIX: Final = "STS."
_STS_ACCESS_KEY_ID: Final = re.compile(r"STS\.[A-Za-z0-9]{16,124}")
_NUMERIC_ID: Final = re.compile(r"[1-9][0-9]{14,18}")
_SECRET: Final = re.compile(r"[!-~]{16,128}")
_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DIGITS: Final = "0123456789"
_TOKEN_BYTES: Final = 96
_TOKEN_HASH_BYTES: Final = 32


def _random_string(alphabet: str, length: int, random_bytes: RandomBytes) -> str:
    # Rejection sampling keeps every character equally likely.
    limit = 256 - 256 % len(alphabet)
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(
            alphabet[b % len(alphabet)] for b in random_bytes(length - len(chars)) if b < limit
        )
    return "".join(chars[:length])


def new_user_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate a RAM user ID: 16 digits, the first not 0, as RAM writes ``UserId``."""
    return _random_string("123456789", 1, random_bytes) + _random_string(_DIGITS, 15, random_bytes)


def new_role_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate a RAM role ID: 19 digits, the first not 0."""
    return _random_string("123456789", 1, random_bytes) + _random_string(_DIGITS, 18, random_bytes)


def new_sts_access_key_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate the AccessKey ID of STS credentials: ``STS.`` and 28 letters and digits."""
    return STS_ACCESS_KEY_PREFIX + _random_string(_ALNUM, 28, random_bytes)


def new_security_token(random_bytes: RandomBytes = secrets.token_bytes) -> Secret:
    """Generate an STS security token: 96 random bytes in URL-safe Base64 (128 characters)."""
    return Secret(base64.urlsafe_b64encode(random_bytes(_TOKEN_BYTES)).decode("ascii"))


def security_token_hash(token: str) -> bytes:
    """Return the SHA-256 of a security token, which the store keeps in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def user_arn(account_id: str, user_name: str) -> str:
    """Build a RAM user ARN, ``acs:ram::<account>:user/<name>``."""
    return f"acs:ram::{account_id}:user/{user_name}"


def role_arn(account_id: str, role_name: str) -> str:
    """Build a RAM role ARN, ``acs:ram::<account>:role/<name>``."""
    return f"acs:ram::{account_id}:role/{role_name}"


def _check_numeric_id(name: str, value: object) -> str:
    return check_pattern(name, value, _NUMERIC_ID, "use 15 to 19 digits, the first not 0")


def _check_optional_text(name: str, value: object, max_length: int) -> str:
    return check_text(name, value, max_length, allow_empty=True)


@dataclass(frozen=True, kw_only=True)
class RamUser:
    """A RAM user of an account. ``display_name`` and ``comments`` may be empty."""

    account_id: str
    user_id: str
    user_name: str
    display_name: str = ""
    comments: str = ""
    created_at: datetime

    def __post_init__(self) -> None:
        check_account_id("account_id", self.account_id)
        _check_numeric_id("user_id", self.user_id)
        check_pattern(
            "user_name", self.user_name, USER_NAME, "use 1 to 64 letters, digits, '.', '_' or '-'"
        )
        _check_optional_text("display_name", self.display_name, MAX_DISPLAY_NAME_LENGTH)
        _check_optional_text("comments", self.comments, MAX_COMMENTS_LENGTH)
        set_field(self, "created_at", check_datetime("created_at", self.created_at))

    @property
    def arn(self) -> str:
        """The user's ARN, ``acs:ram::<account>:user/<name>``."""
        return user_arn(self.account_id, self.user_name)


@dataclass(frozen=True, kw_only=True)
class RamRole:
    """A RAM role, with the trust policy (JSON text) that names who may assume it."""

    account_id: str
    role_id: str
    role_name: str
    description: str = ""
    trust_policy: str
    max_session_duration: int = DEFAULT_MAX_SESSION_DURATION
    created_at: datetime

    def __post_init__(self) -> None:
        check_account_id("account_id", self.account_id)
        _check_numeric_id("role_id", self.role_id)
        check_pattern(
            "role_name", self.role_name, ROLE_NAME, "use 1 to 64 letters, digits, '.' or '-'"
        )
        _check_optional_text("description", self.description, MAX_ROLE_DESCRIPTION_LENGTH)
        check_text("trust_policy", self.trust_policy, 2_048, allow_empty=False)
        duration = self.max_session_duration
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not MIN_ROLE_SESSION_DURATION <= duration <= MAX_ROLE_SESSION_DURATION
        ):
            raise ValidationError(
                f"invalid max_session_duration {shown(duration)}: use {MIN_ROLE_SESSION_DURATION} "
                f"to {MAX_ROLE_SESSION_DURATION} seconds"
            )
        set_field(self, "created_at", check_datetime("created_at", self.created_at))

    @property
    def arn(self) -> str:
        """The role's ARN, ``acs:ram::<account>:role/<name>``."""
        return role_arn(self.account_id, self.role_name)


@dataclass(frozen=True, kw_only=True)
class RamPolicy:
    """A custom identity policy: one default version (``v1``) whose document is ``document``."""

    account_id: str
    policy_name: str
    description: str = ""
    document: str
    created_at: datetime

    def __post_init__(self) -> None:
        check_account_id("account_id", self.account_id)
        check_pattern(
            "policy_name", self.policy_name, POLICY_NAME, "use 1 to 128 letters, digits or '-'"
        )
        _check_optional_text("description", self.description, MAX_POLICY_DESCRIPTION_LENGTH)
        check_text("document", self.document, 6_144, allow_empty=False)
        set_field(self, "created_at", check_datetime("created_at", self.created_at))


@dataclass(frozen=True)
class AttachedPolicy:
    """A custom policy attached to a user or role, and when it was attached."""

    policy: RamPolicy
    attached_at: datetime


@dataclass(frozen=True, kw_only=True)
class StsCredential:
    """Temporary credentials of one session of a RAM role, issued by STS AssumeRole.

    The store keeps the SHA-256 of the security token (``token_hash``), never
    the token. ``source_arn`` is the ARN of the identity that assumed the role.
    The repr leaves out the secret and the token hash.
    """

    access_key_id: str
    account_id: str
    role_name: str
    session_name: str
    secret: Secret = field(repr=False, hash=False)
    token_hash: bytes = field(repr=False)
    source_arn: str
    expires_at: datetime
    revoked: bool = False
    created_at: datetime

    def __post_init__(self) -> None:
        check_pattern(
            "access_key_id",
            self.access_key_id,
            _STS_ACCESS_KEY_ID,
            "an STS AccessKey ID is 'STS.' followed by 16 to 124 letters and digits",
        )
        check_account_id("account_id", self.account_id)
        check_pattern(
            "role_name", self.role_name, ROLE_NAME, "use 1 to 64 letters, digits, '.' or '-'"
        )
        check_pattern(
            "session_name",
            self.session_name,
            SESSION_NAME,
            "use 2 to 64 letters, digits, '.', '@', '_' or '-'",
        )
        check_secret(
            "STS AccessKey secret", self.secret, _SECRET, "use 16 to 128 printable characters"
        )
        if not isinstance(self.token_hash, bytes) or len(self.token_hash) != _TOKEN_HASH_BYTES:
            raise ValueError("token_hash must be the 32-byte SHA-256 of the security token")
        check_text("source_arn", check_str("source_arn", self.source_arn), 256, allow_empty=False)
        set_field(self, "expires_at", check_datetime("expires_at", self.expires_at))
        set_field(self, "created_at", check_datetime("created_at", self.created_at))
        if not isinstance(self.revoked, bool):
            raise TypeError(f"revoked must be a bool, not {type(self.revoked).__name__}")

    @property
    def assumed_role_arn(self) -> str:
        """The session's ARN, ``acs:ram::<account>:assumed-role/<role>/<session>``."""
        return f"acs:ram::{self.account_id}:assumed-role/{self.role_name}/{self.session_name}"
