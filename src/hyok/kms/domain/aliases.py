"""Key aliases: the name rules, the alias record and alias ARNs. Pure code, no I/O.

An alias is a name of the form ``alias/<name>`` that points to one key of
the same account and region. A key may have several aliases, and an alias
is unique per account and region. Rules of the name:

- 1 to 255 characters in all, starting with ``alias/``;
- after the prefix, 1 or more letters, digits, ``_``, ``-`` and ``/``;
- not starting with ``alias/acs`` in any letter case, a prefix that Alibaba
  Cloud keeps for its own services.

The ARN of ``alias/<name>`` is ``acs:kms:<region>:<account>:alias/<name>``,
with the name after ``alias/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from hyok.common.errors import ValidationError
from hyok.kms.domain._checks import (
    check_account_id,
    check_datetime,
    check_key_id,
    check_region,
    check_str,
    set_field,
    shown,
)

__all__ = [
    "ALIAS_PREFIX",
    "MAX_ALIAS_NAME_LENGTH",
    "RESERVED_ALIAS_PREFIX",
    "Alias",
    "AliasArn",
    "alias_arn",
    "check_alias_name",
    "is_alias_arn",
    "parse_alias_arn",
]

ALIAS_PREFIX: Final = "alias/"
RESERVED_ALIAS_PREFIX: Final = "alias/acs"
MAX_ALIAS_NAME_LENGTH: Final = 255
# NOTE: Alibaba Cloud documents the length, the prefix and the reserved
# prefix, but no character set. Letters, digits, "_", "-" and "/" are hyok's
# choice, a subset of what AWS KMS allows.
_NAME_AFTER_PREFIX: Final = re.compile(r"[A-Za-z0-9_/-]+")
_ALIAS_ARN: Final = re.compile(r"acs:kms:([^:]*):([^:]*):alias/(.*)", re.DOTALL)


def check_alias_name(value: object) -> str:
    """Return ``value`` when it is a valid alias name, else raise ValidationError with the rule."""
    name = check_str("alias name", value)
    if not name.startswith(ALIAS_PREFIX):
        raise ValidationError(
            f"invalid alias name {shown(name)}: an alias name starts with 'alias/', such as "
            "'alias/payments'"
        )
    if len(name) > MAX_ALIAS_NAME_LENGTH:
        raise ValidationError(
            f"invalid alias name {shown(name)}: it has {len(name)} characters, and the maximum "
            f"is {MAX_ALIAS_NAME_LENGTH} including 'alias/'"
        )
    if not _NAME_AFTER_PREFIX.fullmatch(name[len(ALIAS_PREFIX) :]):
        raise ValidationError(
            f"invalid alias name {shown(name)}: after 'alias/' use 1 or more letters, digits, "
            "'_', '-' and '/'"
        )
    if name[: len(RESERVED_ALIAS_PREFIX)].lower() == RESERVED_ALIAS_PREFIX:
        raise ValidationError(
            f"invalid alias name {shown(name)}: names starting with 'alias/acs' are reserved "
            "for cloud services; choose another name"
        )
    return name


def alias_arn(region: str, account_id: str, alias_name: str) -> str:
    """Build the ARN of an alias: ``acs:kms:<region>:<account>:alias/<name without alias/>``."""
    check_region(region)
    check_account_id("account_id", account_id)
    name = check_alias_name(alias_name)
    return f"acs:kms:{region}:{account_id}:{name}"


@dataclass(frozen=True)
class AliasArn:
    """The parts of an alias ARN. ``alias_name`` includes the ``alias/`` prefix."""

    region: str
    account_id: str
    alias_name: str

    def __str__(self) -> str:
        return alias_arn(self.region, self.account_id, self.alias_name)


def is_alias_arn(text: str) -> bool:
    """Return whether ``text`` has the shape of an alias ARN (its parts are not checked)."""
    return _ALIAS_ARN.fullmatch(text) is not None


def parse_alias_arn(arn: str) -> AliasArn:
    """Split an alias ARN into region, account ID and alias name, checking each part.

    Raises ValidationError when ``arn`` is not ``acs:kms:<region>:<account>:alias/<name>``.
    """
    match = _ALIAS_ARN.fullmatch(check_str("alias ARN", arn))
    if match is None:
        raise ValidationError(
            f"invalid alias ARN {shown(arn)}: write acs:kms:<region>:<account ID>:alias/<name>"
        )
    region, account_id, name = match.groups()
    return AliasArn(
        check_region(region),
        check_account_id("account ID in the alias ARN", account_id),
        check_alias_name(ALIAS_PREFIX + name),
    )


@dataclass(frozen=True, kw_only=True)
class Alias:
    """An alias of a key: its name, its account and region, the key it points to, and when.

    ``updated_at`` is when the alias last pointed to another key (UpdateAlias),
    and equals ``created_at`` until then.
    """

    alias_name: str
    account_id: str
    region: str
    key_id: str
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        check_alias_name(self.alias_name)
        check_account_id("account_id", self.account_id)
        check_region(self.region)
        check_key_id("key_id", self.key_id)
        set_field(self, "created_at", check_datetime("created_at", self.created_at))
        set_field(self, "updated_at", check_datetime("updated_at", self.updated_at))
        if self.updated_at < self.created_at:
            raise ValueError("updated_at must not be before created_at")

    @property
    def arn(self) -> str:
        """The alias ARN, ``acs:kms:<region>:<account>:alias/<name without alias/>``."""
        return alias_arn(self.region, self.account_id, self.alias_name)
