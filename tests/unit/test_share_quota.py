"""The access management quota rules of hyok.kms.domain.share_quota."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hyok.kms.domain.key_policy import build_default_policy
from hyok.kms.domain.policy_document import parse_policy
from hyok.kms.domain.policy_errors import PolicyKind
from hyok.kms.domain.share_quota import (
    RELEASE_DELAY,
    ShareQuotaExceededError,
    check_share_quota,
    granted_accounts,
    still_counted,
)

OWNER = "123456789012"
MEMBER = "210987654321"
OTHER = "111122223333"
THIRD = "444455556666"


def policy(*statements: tuple[str, list[str]]) -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": effect,
                    "Principal": {"RAM": principals},
                    "Action": "kms:*",
                    "Resource": "*",
                }
                for effect, principals in statements
            ],
        }
    )


@pytest.mark.parametrize(
    ("text", "key_account", "expected"),
    [
        # Same-account administrators and users cost nothing.
        (policy(("Allow", [f"acs:ram::{OWNER}:user/a", f"acs:ram::{OWNER}:*"])), OWNER, set()),
        # A foreign user counts once, whatever the form of its principals.
        (
            policy(("Allow", [f"acs:ram::{OTHER}:user/a", f"acs:ram::{OTHER}:role/r"])),
            OWNER,
            {OTHER},
        ),
        # Deny statements grant nothing.
        (policy(("Deny", [f"acs:ram::{OTHER}:*"])), OWNER, set()),
        # The instance owner named in a member's key policy is not foreign.
        (policy(("Allow", [f"acs:ram::{OWNER}:*", f"acs:ram::{THIRD}:*"])), MEMBER, {THIRD}),
        (build_default_policy(creator_account=MEMBER, instance_owner=OWNER), MEMBER, set()),
    ],
)
def test_granted_accounts(text: str, key_account: str, expected: set[str]) -> None:
    document = parse_policy(text, PolicyKind.KEY)
    assert granted_accounts(document, key_account=key_account, instance_owner=OWNER) == expected


def test_check_share_quota_returns_added_accounts() -> None:
    assert check_share_quota({OTHER}, {OTHER, THIRD}, 2) == {THIRD}
    assert check_share_quota(set(), set(), 0) == frozenset()


def test_check_share_quota_refuses_beyond_quota() -> None:
    with pytest.raises(ShareQuotaExceededError) as caught:
        check_share_quota({OTHER}, {THIRD}, 1)
    assert caught.value.added == {THIRD}
    assert caught.value.used == {OTHER}
    assert caught.value.quota == 1


def test_check_share_quota_allows_counted_accounts_above_quota() -> None:
    # A quota lowered below the usage still allows grants to counted accounts.
    assert check_share_quota({OTHER, THIRD}, {OTHER}, 1) == frozenset()


def test_still_counted_for_five_minutes() -> None:
    revoked = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert timedelta(minutes=5) == RELEASE_DELAY
    assert still_counted(revoked, revoked + timedelta(minutes=4, seconds=59))
    assert not still_counted(revoked, revoked + timedelta(minutes=5))
