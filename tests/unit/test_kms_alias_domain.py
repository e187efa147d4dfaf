"""Tests of hyok.kms.domain.aliases: name rules, alias ARNs and the alias record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hyok.common.errors import ValidationError
from hyok.kms.domain.aliases import (
    Alias,
    AliasArn,
    alias_arn,
    check_alias_name,
    is_alias_arn,
    parse_alias_arn,
)

ACCOUNT_ID = "1234567890123456"
REGION = "cn-hangzhou"
KEY_ID = "key-hzz62f1cb66fa42qo1234"
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "name", ["alias/a", "alias/Az09_-/x", "alias/acx", "alias/x" + "y" * 248, "alias/a/"]
)
def test_valid_alias_names(name: str) -> None:
    assert check_alias_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("payments", "starts with 'alias/'"),
        ("ALIAS/payments", "starts with 'alias/'"),
        ("alias/", "1 or more"),
        ("alias/a b", "'_', '-' and '/'"),
        ("alias/a:b", "'_', '-' and '/'"),
        ("alias/acs", "reserved"),
        ("alias/AcS/x", "reserved"),
        ("alias/x" + "y" * 249, "256 characters"),
    ],
)
def test_invalid_alias_names(name: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        check_alias_name(name)


def test_alias_name_in_message_is_printable() -> None:
    with pytest.raises(ValidationError) as caught:
        check_alias_name("alias/\x00\n")
    assert "\n" not in caught.value.message
    assert "\x00" not in caught.value.message


def test_alias_arn_round_trip() -> None:
    arn = alias_arn(REGION, ACCOUNT_ID, "alias/app/payments")
    assert arn == f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/app/payments"
    assert is_alias_arn(arn)
    parsed = parse_alias_arn(arn)
    assert parsed == AliasArn(REGION, ACCOUNT_ID, "alias/app/payments")
    assert str(parsed) == arn


@pytest.mark.parametrize(
    "arn",
    [
        f"acs:kms:{REGION}:12:alias/app",
        f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/",
        f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/acs-x",
        f"acs:kms:CN:{ACCOUNT_ID}:alias/app",
        f"acs:kms:{REGION}:{ACCOUNT_ID}:key/{KEY_ID}",
    ],
)
def test_invalid_alias_arns(arn: str) -> None:
    with pytest.raises(ValidationError):
        parse_alias_arn(arn)


def test_key_arn_is_not_an_alias_arn() -> None:
    assert not is_alias_arn(f"acs:kms:{REGION}:{ACCOUNT_ID}:key/{KEY_ID}")


def test_alias_record() -> None:
    alias = Alias(
        alias_name="alias/app",
        account_id=ACCOUNT_ID,
        region=REGION,
        key_id=KEY_ID,
        created_at=NOW,
        updated_at=NOW + timedelta(seconds=1),
    )
    assert alias.arn == f"acs:kms:{REGION}:{ACCOUNT_ID}:alias/app"
    with pytest.raises(ValidationError):
        Alias(
            alias_name="app",
            account_id=ACCOUNT_ID,
            region=REGION,
            key_id=KEY_ID,
            created_at=NOW,
            updated_at=NOW,
        )
    with pytest.raises(ValueError, match="updated_at"):
        Alias(
            alias_name="alias/app",
            account_id=ACCOUNT_ID,
            region=REGION,
            key_id=KEY_ID,
            created_at=NOW,
            updated_at=NOW - timedelta(seconds=1),
        )
