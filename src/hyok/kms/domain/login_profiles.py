"""Console sign-in of RAM users and account roots: login profiles and sign-in names.

Pure code, no I/O. A RAM user may sign in to the console when it has a
login profile (RAM ``CreateLoginProfile``), which contains the scrypt hash of
its password (see :mod:`hyok.kms.domain.passwords`). An account root signs in
with the console password of the account.

A sign-in name says who signs in:

- ``<account ID>`` for the account root, such as ``123456789012``;
- ``<user name>@<account ID>`` for a RAM user, such as
  ``alice@123456789012``. Alibaba Cloud writes ``alice@<alias or
  ID>.onaliyun.com``; hyok has no account aliases, so the account ID alone
  follows the ``@``.

A user name cannot contain ``@``, so the last ``@`` splits the two parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from hyok.common.errors import ValidationError
from hyok.kms.domain._checks import (
    check_account_id,
    check_datetime,
    check_pattern,
    check_str,
    set_field,
    shown,
)
from hyok.kms.domain.passwords import MAX_PASSWORD_HASH_LENGTH
from hyok.kms.domain.ram import USER_NAME

__all__ = [
    "MAX_SIGN_IN_NAME_LENGTH",
    "LoginProfile",
    "SignInName",
    "parse_sign_in_name",
]

MAX_SIGN_IN_NAME_LENGTH: Final = 64 + 1 + 16
"""A 64-character user name, ``@`` and a 16-digit account ID."""

_ACCOUNT_ID: Final = re.compile(r"[0-9]{12,16}")
_FORMAT: Final = (
    "use the account ID (12 to 16 digits) for the account root, or <user name>@<account ID> "
    "for a RAM user"
)


@dataclass(frozen=True, kw_only=True)
class LoginProfile:
    """The console sign-in of one RAM user. The repr leaves out the password hash.

    ``mfa_bind_required`` is always False, because hyok has no MFA.
    """

    account_id: str
    user_name: str
    password_hash: str = field(repr=False)
    password_reset_required: bool = False
    mfa_bind_required: bool = False
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        check_account_id("account_id", self.account_id)
        check_pattern(
            "user_name", self.user_name, USER_NAME, "use 1 to 64 letters, digits, '.', '_' or '-'"
        )
        digest = check_str("password_hash", self.password_hash)
        if not digest.startswith("$scrypt$") or len(digest) > MAX_PASSWORD_HASH_LENGTH:
            raise ValueError("password_hash must be a scrypt PHC string of at most 256 characters")
        for name in ("password_reset_required", "mfa_bind_required"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")
        if self.mfa_bind_required:
            raise ValueError("mfa_bind_required must be False: hyok has no MFA")
        set_field(self, "created_at", check_datetime("created_at", self.created_at))
        set_field(self, "updated_at", check_datetime("updated_at", self.updated_at))


@dataclass(frozen=True)
class SignInName:
    """A parsed sign-in name: the account ID, and the RAM user name or None for the root."""

    account_id: str
    user_name: str | None = None

    def __str__(self) -> str:
        if self.user_name is None:
            return self.account_id
        return f"{self.user_name}@{self.account_id}"


def parse_sign_in_name(text: str) -> SignInName:
    """Parse ``<account ID>`` or ``<user name>@<account ID>``.

    Raises ValidationError naming the format. The caller decides whether to
    show it: a malformed name reveals nothing about which identities exist.
    """
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_SIGN_IN_NAME_LENGTH:
        length = len(text) if isinstance(text, str) else 0
        raise ValidationError(
            f"the sign-in name has {length} characters: use 1 to {MAX_SIGN_IN_NAME_LENGTH}, "
            f"and {_FORMAT}"
        )
    user_name, at, account_id = text.rpartition("@")
    if _ACCOUNT_ID.fullmatch(account_id) is None:
        raise ValidationError(
            f"the sign-in name {shown(text)} does not end with an account ID: {_FORMAT}"
        )
    if not at:
        return SignInName(account_id)
    if USER_NAME.fullmatch(user_name) is None:
        raise ValidationError(
            f"the sign-in name {shown(text)} has an invalid user name before the '@': use 1 to 64 "
            "letters, digits, '.', '_' or '-'"
        )
    return SignInName(account_id, user_name)
