"""Identities that call the KMS, and the principals of key policies that name them.

Pure code, no I/O. A key policy principal has one of four forms:

- ``acs:ram::<account ID>:root``: the account root only;
- ``acs:ram::<account ID>:*``: the root and every RAM user and role of the account;
- ``acs:ram::<account ID>:user/<name>``: one RAM user, whose name has 1 to 64
  letters, digits, ``.``, ``_`` and ``-``;
- ``acs:ram::<account ID>:role/<name>``: every session of one RAM role, whose
  name has 1 to 64 letters, digits, ``.`` and ``-``.

Account IDs have 12 to 16 digits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from hyok.kms.domain._checks import shown
from hyok.kms.domain.policy_errors import PolicyDocumentError

__all__ = [
    "CallerKind",
    "PolicyPrincipal",
    "PrincipalKind",
    "RamIdentity",
    "parse_principal",
]

_ACCOUNT_ID: Final = r"[0-9]{12,16}"
_PRINCIPAL: Final = re.compile(
    rf"acs:ram::(?P<account>{_ACCOUNT_ID}):"
    r"(?:(?P<root>root)|(?P<any>\*)|user/(?P<user>[A-Za-z0-9._-]{1,64})"
    r"|role/(?P<role>[A-Za-z0-9.-]{1,64}))"
)
_PRINCIPAL_FORMS: Final = (
    "acs:ram::<account ID>:root, acs:ram::<account ID>:*, acs:ram::<account ID>:user/<user "
    "name> or acs:ram::<account ID>:role/<role name>, with an account ID of 12 to 16 digits"
)


@enum.unique
class CallerKind(enum.StrEnum):
    """The kind of identity that signs a request."""

    ROOT = "root"
    """The account itself, with the account's own AccessKey."""
    USER = "user"
    """A RAM user of the account."""
    ROLE = "role"
    """A session of a RAM role, through STS credentials."""


@dataclass(frozen=True)
class RamIdentity:
    """An identity that can call the KMS: an account root, a RAM user or a RAM role.

    ``name`` is the user or role name, and None for the root.
    """

    account_id: str
    kind: CallerKind
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.kind is CallerKind.ROOT) != (self.name is None):
            raise ValueError("a root identity has no name, and a user or role has one")

    @property
    def arn(self) -> str:
        """The RAM ARN, such as ``acs:ram::123456789012:user/alice``."""
        if self.kind is CallerKind.ROOT:
            return f"acs:ram::{self.account_id}:root"
        return f"acs:ram::{self.account_id}:{self.kind.value}/{self.name}"


@enum.unique
class PrincipalKind(enum.StrEnum):
    """The form of a key policy principal."""

    ROOT = "root"
    """``acs:ram::<account>:root``: the account root only."""
    ANY_IDENTITY = "*"
    """``acs:ram::<account>:*``: the root and every RAM user and role of the account."""
    USER = "user"
    """``acs:ram::<account>:user/<name>``: one RAM user."""
    ROLE = "role"
    """``acs:ram::<account>:role/<name>``: every session of one RAM role."""


@dataclass(frozen=True)
class PolicyPrincipal:
    """One principal of a key policy statement. ``name`` is set for users and roles only."""

    account_id: str
    kind: PrincipalKind
    name: str | None = None

    @property
    def arn(self) -> str:
        """The principal as the policy writes it."""
        if self.kind in (PrincipalKind.USER, PrincipalKind.ROLE):
            return f"acs:ram::{self.account_id}:{self.kind.value}/{self.name}"
        return f"acs:ram::{self.account_id}:{self.kind.value}"

    def names(self, caller: RamIdentity) -> bool:
        """Return whether this principal names ``caller``.

        ``root`` names the account root only, and ``*`` every identity
        of the account. User and role names are case-sensitive.
        """
        if caller.account_id != self.account_id:
            return False
        match self.kind:
            case PrincipalKind.ANY_IDENTITY:
                return True
            case PrincipalKind.ROOT:
                return caller.kind is CallerKind.ROOT
            case PrincipalKind.USER:
                return caller.kind is CallerKind.USER and caller.name == self.name
            case PrincipalKind.ROLE:
                return caller.kind is CallerKind.ROLE and caller.name == self.name
        return False


def parse_principal(arn: str, *, code: str, path: str) -> PolicyPrincipal:
    """Parse one principal ARN, raising PolicyDocumentError with ``code`` at ``path``."""
    match = _PRINCIPAL.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise PolicyDocumentError(
            f"{path}: {shown(arn)} is not a principal: write {_PRINCIPAL_FORMS}",
            code=code,
            path=path,
        )
    account = match["account"]
    if match["root"]:
        return PolicyPrincipal(account, PrincipalKind.ROOT)
    if match["any"]:
        return PolicyPrincipal(account, PrincipalKind.ANY_IDENTITY)
    if match["user"]:
        return PolicyPrincipal(account, PrincipalKind.USER, match["user"])
    return PolicyPrincipal(account, PrincipalKind.ROLE, match["role"])
