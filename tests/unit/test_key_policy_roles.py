"""hyok.kms.domain.key_policy: the default key policy, the three role lists and their inverse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyok.common.errors import ValidationError
from hyok.kms.domain.key_policy import (
    ADMINISTRATOR_ACTIONS,
    DEFAULT_POLICY_SID,
    USER_ACTIONS,
    KeyPolicyRoles,
    build_default_policy,
    build_role_policy,
    foreign_accounts,
    roles_from_policy,
)
from hyok.kms.domain.policy_document import (
    MAX_KEY_POLICY_BYTES,
    PolicyDocument,
    parse_policy,
)
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind

OWNER = "123456789012"
FOREIGN = "210987654321"
THIRD = "333333333333"


def key_policy(text: str) -> PolicyDocument:
    return parse_policy(text, PolicyKind.KEY)


def key_policy_of(*statements: dict[str, Any]) -> PolicyDocument:
    return key_policy(json.dumps({"Version": "1", "Statement": list(statements)}))


def user(account: str, name: str) -> str:
    return f"acs:ram::{account}:user/{name}"


def role(account: str, name: str) -> str:
    return f"acs:ram::{account}:role/{name}"


# --- The default policy -----------------------------------------------------------


def test_default_policy_unshared_instance() -> None:
    text = build_default_policy(creator_account=OWNER, instance_owner=OWNER)
    assert json.loads(text) == {
        "Version": "1",
        "Statement": [
            {
                "Sid": DEFAULT_POLICY_SID,
                "Effect": "Allow",
                "Principal": {"RAM": [f"acs:ram::{OWNER}:*"]},
                "Action": ["kms:*"],
                "Resource": ["*"],
            }
        ],
    }
    assert foreign_accounts(key_policy(text), OWNER) == frozenset()


def test_default_policy_key_of_sharing_member() -> None:
    # The instance of FOREIGN is shared with OWNER, and OWNER creates the key.
    text = build_default_policy(creator_account=OWNER, instance_owner=FOREIGN)
    (statement,) = json.loads(text)["Statement"]
    assert statement["Principal"]["RAM"] == [f"acs:ram::{OWNER}:*", f"acs:ram::{FOREIGN}:*"]
    assert foreign_accounts(key_policy(text), OWNER) == frozenset({FOREIGN})


def test_default_policy_key_of_instance_owner() -> None:
    # The owner's keys stay the owner's, even in a shared instance.
    text = build_default_policy(creator_account=FOREIGN, instance_owner=FOREIGN)
    (statement,) = json.loads(text)["Statement"]
    assert statement["Principal"]["RAM"] == [f"acs:ram::{FOREIGN}:*"]


def test_default_policy_matches_the_existing_shape() -> None:
    # The same document that CreateKey stores today for a key without a policy.
    expected = (
        '{"Version":"1","Statement":[{"Sid":"kms default key policy","Effect":"Allow",'
        f'"Principal":{{"RAM":["acs:ram::{OWNER}:*"]}},"Action":["kms:*"],"Resource":["*"]}}]}}'
    )
    assert build_default_policy(creator_account=OWNER, instance_owner=OWNER) == expected


def test_default_policy_checks_accounts() -> None:
    with pytest.raises(ValidationError, match="creator_account"):
        build_default_policy(creator_account="12", instance_owner=OWNER)
    with pytest.raises(ValidationError, match="instance_owner"):
        build_default_policy(creator_account=OWNER, instance_owner="acct")


def test_default_policy_is_not_a_role_policy() -> None:
    text = build_default_policy(creator_account=OWNER, instance_owner=OWNER)
    assert roles_from_policy(key_policy(text), OWNER) is None


# --- The three role lists ---------------------------------------------------------


def test_action_lists() -> None:
    assert ADMINISTRATOR_ACTIONS == (
        "kms:List*",
        "kms:Describe*",
        "kms:Create*",
        "kms:Enable*",
        "kms:Disable*",
        "kms:Get*",
        "kms:Set*",
        "kms:Update*",
        "kms:Delete*",
        "kms:Cancel*",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ImportKeyMaterial",
        "kms:ScheduleKeyDeletion",
    )
    assert USER_ACTIONS == (
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:GenerateAndExportDataKey",
        "kms:AsymmetricEncrypt",
        "kms:AsymmetricDecrypt",
        "kms:DescribeKey",
        "kms:DescribeKeyVersion",
        "kms:ListKeyVersions",
        "kms:ListAliasesByKeyId",
        "kms:TagResource",
    )


def test_role_policy_document() -> None:
    roles = KeyPolicyRoles(
        administrators=(user(OWNER, "alice"),),
        users=(role(OWNER, "app"),),
        cross_account_users=(user(FOREIGN, "carol"),),
    )
    statements = json.loads(build_role_policy(OWNER, roles))["Statement"]
    assert [s["Sid"] for s in statements] == [
        "kms key administrators",
        "kms key users",
        "kms cross-account key users",
    ]
    assert statements[0]["Action"] == list(ADMINISTRATOR_ACTIONS)
    assert statements[1]["Action"] == list(USER_ACTIONS)
    assert statements[2]["Action"] == list(USER_ACTIONS)
    assert statements[0]["Principal"] == {"RAM": [user(OWNER, "alice")]}
    assert statements[2]["Principal"] == {"RAM": [user(FOREIGN, "carol")]}
    assert all(s["Effect"] == "Allow" and s["Resource"] == ["*"] for s in statements)


def test_empty_lists_are_left_out() -> None:
    roles = KeyPolicyRoles(users=(user(OWNER, "bob"),))
    statements = json.loads(build_role_policy(OWNER, roles))["Statement"]
    assert [s["Sid"] for s in statements] == ["kms key users"]


def test_all_lists_empty() -> None:
    with pytest.raises(PolicyDocumentError, match="at least one") as info:
        build_role_policy(OWNER, KeyPolicyRoles())
    assert info.value.code == "InvalidParameter"


def test_roles_drop_repeats() -> None:
    roles = KeyPolicyRoles(users=(user(OWNER, "b"), user(OWNER, "a"), user(OWNER, "b")))
    assert roles.users == (user(OWNER, "b"), user(OWNER, "a"))


def test_roles_reject_a_single_string() -> None:
    with pytest.raises(TypeError, match="single str"):
        KeyPolicyRoles(users=user(OWNER, "bob"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("roles", "path", "fragment"),
    [
        (KeyPolicyRoles(administrators=("alice",)), "administrators[0]", "not a principal"),
        (
            KeyPolicyRoles(users=(user(OWNER, "a"), f"acs:ram::{OWNER}:root")),
            "users[1]",
            "is an account, not a RAM user or role",
        ),
        (
            KeyPolicyRoles(users=(f"acs:ram::{OWNER}:*",)),
            "users[0]",
            "is an account",
        ),
        (
            KeyPolicyRoles(administrators=(user(FOREIGN, "x"),)),
            "administrators[0]",
            "list it under cross-account users",
        ),
        (
            KeyPolicyRoles(users=(role(FOREIGN, "x"),)),
            "users[0]",
            "list it under cross-account users",
        ),
        (
            KeyPolicyRoles(cross_account_users=(user(FOREIGN, "x"), user(OWNER, "y"))),
            "cross_account_users[1]",
            "list it under administrators or users",
        ),
        (
            KeyPolicyRoles(cross_account_users=(f"acs:ram::{FOREIGN}:*",)),
            "cross_account_users[0]",
            "is an account",
        ),
    ],
)
def test_role_list_errors(roles: KeyPolicyRoles, path: str, fragment: str) -> None:
    with pytest.raises(PolicyDocumentError) as info:
        build_role_policy(OWNER, roles)
    assert info.value.path == path
    assert info.value.code == "InvalidParameter"
    assert fragment in info.value.message
    assert info.value.message.startswith(path)


def test_role_policy_size_limit() -> None:
    many = tuple(user(FOREIGN, f"user-{index:05d}") for index in range(1_000))
    with pytest.raises(PolicyDocumentError, match=str(MAX_KEY_POLICY_BYTES)):
        build_role_policy(OWNER, KeyPolicyRoles(cross_account_users=many))


def test_role_policy_checks_owner() -> None:
    with pytest.raises(ValidationError, match="owner_account"):
        build_role_policy("owner", KeyPolicyRoles(users=(user(OWNER, "a"),)))


# --- Document to role lists -------------------------------------------------------


def test_roles_from_policy_merges_statements() -> None:
    policy = key_policy_of(
        {
            "Effect": "Allow",
            "Principal": {"RAM": [user(OWNER, "bob"), user(FOREIGN, "carol")]},
            "Action": list(reversed(USER_ACTIONS)),
            "Resource": "*",
        },
        {
            "Sid": "any name",
            "Effect": "Allow",
            "Principal": {"RAM": role(OWNER, "app")},
            "Action": list(USER_ACTIONS),
            "Resource": ["*"],
        },
    )
    assert roles_from_policy(policy, OWNER) == KeyPolicyRoles(
        users=(user(OWNER, "bob"), role(OWNER, "app")),
        cross_account_users=(user(FOREIGN, "carol"),),
    )


ADMIN = {
    "Effect": "Allow",
    "Principal": {"RAM": [user(OWNER, "alice")]},
    "Action": list(ADMINISTRATOR_ACTIONS),
    "Resource": ["*"],
}


@pytest.mark.parametrize(
    "statement",
    [
        {**ADMIN, "Effect": "Deny"},
        {**ADMIN, "Action": list(ADMINISTRATOR_ACTIONS)[:-1]},
        {**ADMIN, "Action": [*ADMINISTRATOR_ACTIONS, "kms:Encrypt"]},
        {**ADMIN, "Action": ["kms:*"]},
        {**ADMIN, "Principal": {"RAM": [f"acs:ram::{OWNER}:*"]}},
        {**ADMIN, "Principal": {"RAM": [f"acs:ram::{OWNER}:root"]}},
        {**ADMIN, "Principal": {"RAM": [user(FOREIGN, "x")]}},
        {**ADMIN, "Condition": {"Bool": {"acs:SecureTransport": "true"}}},
    ],
)
def test_other_shapes_give_none(statement: dict[str, Any]) -> None:
    assert roles_from_policy(key_policy_of(ADMIN, statement), OWNER) is None


def test_roles_from_identity_policy_is_an_error() -> None:
    policy = parse_policy(
        '{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
        PolicyKind.IDENTITY,
    )
    with pytest.raises(ValueError, match="key policy"):
        roles_from_policy(policy, OWNER)
    with pytest.raises(ValueError, match="key policy"):
        foreign_accounts(policy, OWNER)


def test_foreign_accounts_ignores_deny() -> None:
    policy = key_policy_of(
        {
            "Effect": "Allow",
            "Principal": {"RAM": [user(FOREIGN, "a"), f"acs:ram::{OWNER}:*", role(FOREIGN, "b")]},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Effect": "Deny",
            "Principal": {"RAM": user(THIRD, "c")},
            "Action": "kms:*",
            "Resource": "*",
        },
    )
    assert foreign_accounts(policy, OWNER) == frozenset({FOREIGN})


# --- Round trip -------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12)
foreign_ids = st.sampled_from([FOREIGN, THIRD, "1234567890123456"])


def _principals(accounts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda account, kind, name: f"acs:ram::{account}:{kind}/{name}",
        accounts,
        st.sampled_from(["user", "role"]),
        names,
    )


role_lists = st.builds(
    KeyPolicyRoles,
    st.lists(_principals(st.just(OWNER)), max_size=5).map(tuple),
    st.lists(_principals(st.just(OWNER)), max_size=5).map(tuple),
    st.lists(_principals(foreign_ids), max_size=5).map(tuple),
).filter(lambda roles: not roles.empty)


@given(role_lists)
def test_lists_round_trip(roles: KeyPolicyRoles) -> None:
    text = build_role_policy(OWNER, roles)
    assert roles_from_policy(key_policy(text), OWNER) == roles


@given(role_lists)
def test_foreign_accounts_of_role_policy(roles: KeyPolicyRoles) -> None:
    text = build_role_policy(OWNER, roles)
    expected = {arn.split(":")[3] for arn in roles.cross_account_users}
    assert foreign_accounts(key_policy(text), OWNER) == expected
