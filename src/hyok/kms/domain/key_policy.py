"""Key policies that hyok writes: the default policy, and the policy of three role lists.

Pure code, no I/O.

The default policy of a key created without one allows ``kms:*`` to every
identity of the accounts that may use the key:

- instance not shared: the account that creates the key;
- instance shared by account 1 with account 2: a key that account 1 creates
  gets account 1 only, and a key that account 2 creates gets both accounts.

A custom policy grants three roles:

- administrators (RAM users and roles of the key's account) manage the key
  and run no cryptographic operation: :data:`ADMINISTRATOR_ACTIONS`;
- users (RAM users and roles of the key's account) use the key:
  :data:`USER_ACTIONS`;
- cross-account users (RAM users and roles of other accounts) get the user
  actions. Their own account must also grant them through RAM.

:func:`build_role_policy` turns the three lists into a policy, and
:func:`roles_from_policy` turns such a policy back into the lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from hyok.kms.domain._checks import check_account_id
from hyok.kms.domain.policy_document import Effect, PolicyDocument, parse_policy
from hyok.kms.domain.policy_errors import KEY_POLICY_CODE, PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_principals import PolicyPrincipal, PrincipalKind, parse_principal

__all__ = [
    "ADMINISTRATOR_ACTIONS",
    "DEFAULT_POLICY_SID",
    "USER_ACTIONS",
    "KeyPolicyRoles",
    "build_default_policy",
    "build_role_policy",
    "foreign_accounts",
    "roles_from_policy",
]

DEFAULT_POLICY_SID: Final = "kms default key policy"
ADMINISTRATOR_ACTIONS: Final = (
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
"""The actions of key administrators: management, and no cryptographic operation."""
USER_ACTIONS: Final = (
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
"""The actions of key users and cross-account key users."""
_ADMINISTRATORS_SID: Final = "kms key administrators"
_USERS_SID: Final = "kms key users"
_CROSS_ACCOUNT_USERS_SID: Final = "kms cross-account key users"


@dataclass(frozen=True)
class KeyPolicyRoles:
    """The three role lists of a custom key policy, each a tuple of RAM user or role ARNs.

    The ARNs have the form ``acs:ram::<account ID>:user/<name>`` or
    ``acs:ram::<account ID>:role/<name>``. The constructor drops repeated
    entries and keeps the first occurrence, so equal role sets compare equal
    whatever the repetition. :func:`build_role_policy` checks the ARNs.
    """

    administrators: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    cross_account_users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("administrators", "users", "cross_account_users"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of ARNs, not a single str")
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))

    @property
    def empty(self) -> bool:
        """Whether no list has an entry."""
        return not (self.administrators or self.users or self.cross_account_users)


def build_default_policy(*, creator_account: str, instance_owner: str) -> str:
    """Return the default policy (JSON text) of a key that ``creator_account`` creates.

    ``instance_owner`` is the account that owns the key's instance. When it
    differs, the instance is shared with the creator, and the owner's
    identities are allowed too.
    """
    check_account_id("creator_account", creator_account)
    check_account_id("instance_owner", instance_owner)
    accounts = dict.fromkeys([creator_account, instance_owner])
    statement = {
        "Sid": DEFAULT_POLICY_SID,
        "Effect": "Allow",
        "Principal": {"RAM": [f"acs:ram::{account}:*" for account in accounts]},
        "Action": ["kms:*"],
        "Resource": ["*"],
    }
    return _dump([statement])


def build_role_policy(owner_account: str, roles: KeyPolicyRoles) -> str:
    """Build the key policy (JSON text) granting the role lists on a key of ``owner_account``.

    Raises PolicyDocumentError (code ``InvalidParameter``) naming the bad
    entry, such as ``users[1]``, for an ARN that is not a user or role, an
    administrator or user of another account, or a cross-account user of
    ``owner_account``. Raises it too when every list is empty, because a
    policy needs a statement.
    """
    check_account_id("owner_account", owner_account)
    if roles.empty:
        raise PolicyDocumentError(
            "the role lists are all empty: name at least one administrator, user or "
            "cross-account user, or use the default policy",
            code=KEY_POLICY_CODE,
        )
    administrators = _checked(roles.administrators, "administrators", owner_account, same=True)
    users = _checked(roles.users, "users", owner_account, same=True)
    foreign = _checked(roles.cross_account_users, "cross_account_users", owner_account, same=False)
    statements = [
        _role_statement(sid, principals, actions)
        for sid, principals, actions in (
            (_ADMINISTRATORS_SID, administrators, ADMINISTRATOR_ACTIONS),
            (_USERS_SID, users, USER_ACTIONS),
            (_CROSS_ACCOUNT_USERS_SID, foreign, USER_ACTIONS),
        )
        if principals
    ]
    text = _dump(statements)
    # The size limit is the only rule left to check, and parse_policy checks it.
    parse_policy(text, PolicyKind.KEY)
    return text


def roles_from_policy(document: PolicyDocument, owner_account: str) -> KeyPolicyRoles | None:
    """Return the role lists of a key policy of ``owner_account``, or None for another shape.

    The policy has the shape when every statement is an Allow on ``Resource``
    ``*`` without conditions, and its principals are RAM users or roles. The
    actions of each statement must be exactly :data:`ADMINISTRATOR_ACTIONS`,
    with principals of ``owner_account`` only, or exactly :data:`USER_ACTIONS`.
    In a user statement, principals of ``owner_account`` are users and the
    others cross-account users. Sids are ignored.
    """
    if document.kind is not PolicyKind.KEY:
        raise ValueError("roles_from_policy needs a key policy document")
    administrators: list[str] = []
    users: list[str] = []
    foreign: list[str] = []
    for statement in document.statements:
        if (
            statement.effect is not Effect.ALLOW
            or statement.actions_negated
            or statement.resources_negated
            or statement.conditions
            or set(statement.resources) != {"*"}
            or not all(_is_user_or_role(p) for p in statement.principals)
        ):
            return None
        actions = set(statement.actions)
        if actions == set(ADMINISTRATOR_ACTIONS):
            if any(p.account_id != owner_account for p in statement.principals):
                return None
            administrators.extend(p.arn for p in statement.principals)
        elif actions == set(USER_ACTIONS):
            for principal in statement.principals:
                target = users if principal.account_id == owner_account else foreign
                target.append(principal.arn)
        else:
            return None
    return KeyPolicyRoles(tuple(administrators), tuple(users), tuple(foreign))


def foreign_accounts(document: PolicyDocument, owner_account: str) -> frozenset[str]:
    """Return the accounts other than ``owner_account`` that Allow statements of a key policy name.

    These are the accounts that a cross-account grant in this policy reaches.
    Deny statements grant nothing, so their principals do not count.
    """
    if document.kind is not PolicyKind.KEY:
        raise ValueError("foreign_accounts needs a key policy document")
    return frozenset(
        principal.account_id
        for statement in document.statements
        if statement.effect is Effect.ALLOW
        for principal in statement.principals
        if principal.account_id != owner_account
    )


def _checked(arns: Iterable[str], name: str, owner_account: str, *, same: bool) -> list[str]:
    result: list[str] = []
    for index, arn in enumerate(arns):
        path = f"{name}[{index}]"
        principal = parse_principal(arn, code=KEY_POLICY_CODE, path=path)
        if not _is_user_or_role(principal):
            raise PolicyDocumentError(
                f"{path}: {principal.arn} is an account, not a RAM user or role: write "
                "acs:ram::<account ID>:user/<name> or acs:ram::<account ID>:role/<name>",
                code=KEY_POLICY_CODE,
                path=path,
            )
        if same and principal.account_id != owner_account:
            raise PolicyDocumentError(
                f"{path}: {principal.arn} belongs to account {principal.account_id}, not to the "
                f"key's account {owner_account}: list it under cross-account users",
                code=KEY_POLICY_CODE,
                path=path,
            )
        if not same and principal.account_id == owner_account:
            raise PolicyDocumentError(
                f"{path}: {principal.arn} belongs to the key's own account {owner_account}: "
                "list it under administrators or users",
                code=KEY_POLICY_CODE,
                path=path,
            )
        result.append(principal.arn)
    return result


def _is_user_or_role(principal: PolicyPrincipal) -> bool:
    return principal.kind in (PrincipalKind.USER, PrincipalKind.ROLE)


def _role_statement(sid: str, principals: list[str], actions: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"RAM": principals},
        "Action": list(actions),
        "Resource": ["*"],
    }


def _dump(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "1", "Statement": statements}, separators=(",", ":"))
