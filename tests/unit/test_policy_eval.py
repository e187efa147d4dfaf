"""hyok.kms.domain.policy_eval and kms_actions: the access decision table and the action table."""

from __future__ import annotations

import ast
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyok.kms import domain as domain_package
from hyok.kms.api.actions import Services, build_handlers
from hyok.kms.domain._wildcards import wildcard_match
from hyok.kms.domain.ids import key_arn
from hyok.kms.domain.key_policy import KeyPolicyRoles, build_default_policy, build_role_policy
from hyok.kms.domain.kms_actions import (
    KMS_ACTIONS,
    Permission,
    ResourceKind,
    authorization_for,
    resource_arn,
)
from hyok.kms.domain.policy_document import PolicyDocument, parse_policy
from hyok.kms.domain.policy_errors import PolicyKind
from hyok.kms.domain.policy_eval import (
    AccessRequest,
    Decision,
    DenyType,
    PolicyType,
    evaluate,
)
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity

OWNER = "123456789012"
FOREIGN = "210987654321"
REGION = "cn-hangzhou"
KEY_ID = "key-abc123"
KEY_ARN = key_arn(REGION, OWNER, KEY_ID)
NOW = datetime(2026, 5, 20, 6, 34, 21, tzinfo=UTC)

ROOT = RamIdentity(OWNER, CallerKind.ROOT)
ALICE = RamIdentity(OWNER, CallerKind.USER, "alice")  # administrator in the custom policy
BOB = RamIdentity(OWNER, CallerKind.USER, "bob")  # user in the custom policy
APP = RamIdentity(OWNER, CallerKind.ROLE, "app")  # user role in the custom policy
DAVE = RamIdentity(OWNER, CallerKind.USER, "dave")  # named nowhere
CAROL = RamIdentity(FOREIGN, CallerKind.USER, "carol")  # cross-account user
OPS = RamIdentity(FOREIGN, CallerKind.ROLE, "ops")  # cross-account role
FOREIGN_ROOT = RamIdentity(FOREIGN, CallerKind.ROOT)


def key_policy(text: str) -> PolicyDocument:
    return parse_policy(text, PolicyKind.KEY)


def identity_policy(*statements: dict[str, Any]) -> PolicyDocument:
    return parse_policy(
        json.dumps({"Version": "1", "Statement": list(statements)}), PolicyKind.IDENTITY
    )


def key_policy_of(*statements: dict[str, Any]) -> PolicyDocument:
    return key_policy(json.dumps({"Version": "1", "Statement": list(statements)}))


DEFAULT = key_policy(build_default_policy(creator_account=OWNER, instance_owner=OWNER))
SHARED_DEFAULT = key_policy(build_default_policy(creator_account=OWNER, instance_owner=FOREIGN))
CUSTOM = key_policy(
    build_role_policy(
        OWNER,
        KeyPolicyRoles(
            administrators=(ALICE.arn,),
            users=(BOB.arn, APP.arn),
            cross_account_users=(CAROL.arn, OPS.arn),
        ),
    )
)
# The foreign account's grant of KMS permissions on the owner's keys.
FOREIGN_GRANT = identity_policy(
    {"Effect": "Allow", "Action": "kms:*", "Resource": f"acs:kms:*:{OWNER}:key/*"}
)
ALLOW_ALL = identity_policy({"Effect": "Allow", "Action": "*", "Resource": "*"})

ADMINISTRATOR_ALLOWED = frozenset(
    {
        "kms:DescribeKey",
        "kms:EnableKey",
        "kms:DisableKey",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:SetDeletionProtection",
        "kms:UpdateKeyDescription",
        "kms:ListAliasesByKeyId",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ListResourceTags",
        "kms:ListTagResources",
        "kms:ListKeyAssociations",
        "kms:SetKeyPolicy",
        "kms:GetKeyPolicy",
        "kms:DescribeKeyVersion",
        "kms:ListKeyVersions",
        "kms:CreateKeyVersion",
        "kms:UpdateRotationPolicy",
        "kms:GetParametersForImport",
        "kms:ImportKeyMaterial",
        "kms:DeleteKeyMaterial",
        "kms:GetPublicKey",
        "kms:CreateAlias",
        "kms:UpdateAlias",
        "kms:DeleteAlias",
    }
)
USER_ALLOWED = frozenset(
    {
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
    }
)
CRYPTOGRAPHIC = frozenset(
    {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:GenerateAndExportDataKey",
        "kms:ExportDataKey",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:AsymmetricEncrypt",
        "kms:AsymmetricDecrypt",
        "kms:AsymmetricSign",
        "kms:AsymmetricVerify",
        "kms:GenerateMac",
        "kms:VerifyMac",
    }
)
# Every kms: action checked on a key, from the action table.
KEY_ACTIONS = sorted(
    {
        permission.action
        for row in KMS_ACTIONS.values()
        for permission in row.permissions
        if permission.resource is ResourceKind.KEY
    }
)


def request(
    caller: RamIdentity,
    action: str,
    *,
    by_arn: bool = True,
    resource: str = KEY_ARN,
    source_ip: str | None = "192.0.2.10",
    secure: bool = True,
    now: datetime = NOW,
) -> AccessRequest:
    return AccessRequest(
        action=action,
        resource_arn=resource,
        caller=caller,
        addressed_by_arn=by_arn,
        current_time=now,
        secure_transport=secure,
        source_ip=ipaddress.ip_address(source_ip) if source_ip else None,
    )


def decide(
    caller: RamIdentity,
    action: str,
    *,
    key: PolicyDocument | None,
    identity: Sequence[PolicyDocument] = (),
    tags: dict[str, str] | None = None,
    owner: str = OWNER,
    **options: Any,
) -> Decision:
    return evaluate(
        request(caller, action, **options),
        identity_policies=identity,
        key_policy=key,
        key_tags=tags or {},
        resource_owner=owner,
    )


def assert_denied(decision: Decision, policy_type: PolicyType, deny_type: DenyType) -> None:
    assert decision.allowed is False
    assert decision.policy_type is policy_type
    assert decision.deny_type is deny_type


# --- The decision table -----------------------------------------------------------

IMPLICIT_KEY = (PolicyType.KEY, DenyType.IMPLICIT)
IMPLICIT_IDENTITY = (PolicyType.IDENTITY, DenyType.IMPLICIT)


@dataclass(frozen=True)
class Expect:
    """A row's outcome: ``inside`` for ``actions`` (None: every action), ``outside`` for the rest.

    An outcome is "allow" or a (policy type, deny type) pair.
    """

    actions: frozenset[str] | None = None
    inside: object = "allow"
    outside: object = None

    def outcome(self, action: str) -> object:
        return self.inside if self.actions is None or action in self.actions else self.outside


EVERYTHING = Expect()


def only(actions: frozenset[str], denied: tuple[PolicyType, DenyType]) -> Expect:
    return Expect(actions, "allow", denied)


def nothing(denied: tuple[PolicyType, DenyType]) -> Expect:
    return Expect(None, denied)


# Each row: name, caller, the caller's identity policies, the key policy, whether the key
# is addressed by ARN, and the expected outcome for every kms: action checked on a key.
TABLE: list[
    tuple[str, RamIdentity, tuple[PolicyDocument, ...], PolicyDocument | None, bool, Expect]
] = [
    ("root, default policy", ROOT, (), DEFAULT, False, EVERYTHING),
    ("root, no key policy", ROOT, (), None, False, EVERYTHING),
    ("root, custom policy", ROOT, (), CUSTOM, False, EVERYTHING),
    ("same-account user, default policy", DAVE, (), DEFAULT, False, EVERYTHING),
    ("same-account role, default policy", APP, (), DEFAULT, False, EVERYTHING),
    ("same-account user, identity grant only", DAVE, (ALLOW_ALL,), CUSTOM, False, EVERYTHING),
    ("same-account user, nothing", DAVE, (), CUSTOM, False, nothing(IMPLICIT_IDENTITY)),
    (
        "administrator, custom policy",
        ALICE,
        (),
        CUSTOM,
        False,
        only(ADMINISTRATOR_ALLOWED, IMPLICIT_IDENTITY),
    ),
    ("user, custom policy", BOB, (), CUSTOM, False, only(USER_ALLOWED, IMPLICIT_IDENTITY)),
    (
        "user role session, custom policy",
        APP,
        (),
        CUSTOM,
        False,
        only(USER_ALLOWED, IMPLICIT_IDENTITY),
    ),
    (
        "foreign user with grant, custom policy",
        CAROL,
        (FOREIGN_GRANT,),
        CUSTOM,
        True,
        only(USER_ALLOWED, IMPLICIT_KEY),
    ),
    (
        "foreign role with grant, custom policy",
        OPS,
        (FOREIGN_GRANT,),
        CUSTOM,
        True,
        only(USER_ALLOWED, IMPLICIT_KEY),
    ),
    (
        "foreign user without grant, custom policy",
        CAROL,
        (),
        CUSTOM,
        True,
        Expect(USER_ALLOWED, IMPLICIT_IDENTITY, IMPLICIT_KEY),
    ),
    (
        "foreign user with grant, not by ARN",
        CAROL,
        (FOREIGN_GRANT,),
        CUSTOM,
        False,
        nothing(IMPLICIT_KEY),
    ),
    (
        "foreign user with grant, default policy",
        CAROL,
        (FOREIGN_GRANT,),
        DEFAULT,
        True,
        nothing(IMPLICIT_KEY),
    ),
    ("foreign root, default policy", FOREIGN_ROOT, (), DEFAULT, True, nothing(IMPLICIT_KEY)),
    (
        "foreign user with grant, shared default",
        CAROL,
        (FOREIGN_GRANT,),
        SHARED_DEFAULT,
        True,
        EVERYTHING,
    ),
    ("foreign root, shared default", FOREIGN_ROOT, (), SHARED_DEFAULT, True, EVERYTHING),
    (
        "foreign user without grant, shared default",
        CAROL,
        (),
        SHARED_DEFAULT,
        True,
        nothing(IMPLICIT_IDENTITY),
    ),
    (
        "foreign root, not by ARN",
        FOREIGN_ROOT,
        (),
        SHARED_DEFAULT,
        False,
        nothing(IMPLICIT_KEY),
    ),
    ("foreign user, no key policy", CAROL, (FOREIGN_GRANT,), None, True, nothing(IMPLICIT_KEY)),
]


def _cases() -> list[Any]:
    return [
        pytest.param(
            caller, identity, key, by_arn, action, expect.outcome(action), id=f"{name}-{action}"
        )
        for name, caller, identity, key, by_arn, expect in TABLE
        for action in KEY_ACTIONS
    ]


@pytest.mark.parametrize(("caller", "identity", "key", "by_arn", "action", "expected"), _cases())
def test_decision_table(
    caller: RamIdentity,
    identity: tuple[PolicyDocument, ...],
    key: PolicyDocument | None,
    by_arn: bool,
    action: str,
    expected: object,
) -> None:
    decision = decide(caller, action, key=key, identity=identity, by_arn=by_arn)
    if expected == "allow":
        assert decision.allowed, decision.reason
        assert decision.policy_type is None
        assert decision.deny_type is None
    else:
        policy_type, deny_type = cast(tuple[PolicyType, DenyType], expected)
        assert_denied(decision, policy_type, deny_type)


def test_administrators_run_no_cryptography() -> None:
    assert not ADMINISTRATOR_ALLOWED & CRYPTOGRAPHIC
    for action in sorted(CRYPTOGRAPHIC):
        assert not decide(ALICE, action, key=CUSTOM).allowed, action


def test_users_cannot_disable() -> None:
    assert decide(BOB, "kms:Encrypt", key=CUSTOM).allowed
    assert not decide(BOB, "kms:DisableKey", key=CUSTOM).allowed
    assert decide(ALICE, "kms:DisableKey", key=CUSTOM).allowed
    assert not decide(ALICE, "kms:Encrypt", key=CUSTOM).allowed


def test_cross_account_needs_both_grants() -> None:
    assert not decide(CAROL, "kms:Encrypt", key=CUSTOM).allowed
    assert decide(CAROL, "kms:Encrypt", key=CUSTOM, identity=[FOREIGN_GRANT]).allowed


def test_foreign_grant_must_cover_the_key_arn() -> None:
    elsewhere = identity_policy(
        {"Effect": "Allow", "Action": "kms:*", "Resource": f"acs:kms:*:{FOREIGN}:key/*"}
    )
    decision = decide(CAROL, "kms:Encrypt", key=CUSTOM, identity=[elsewhere])
    assert_denied(decision, PolicyType.IDENTITY, DenyType.IMPLICIT)


def test_key_policy_root_principal_is_root_only() -> None:
    policy = key_policy_of(
        {
            "Effect": "Allow",
            "Principal": {"RAM": f"acs:ram::{FOREIGN}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    assert decide(FOREIGN_ROOT, "kms:Encrypt", key=policy).allowed
    denied = decide(CAROL, "kms:Encrypt", key=policy, identity=[FOREIGN_GRANT])
    assert_denied(denied, PolicyType.KEY, DenyType.IMPLICIT)


def test_action_patterns_ignore_case() -> None:
    policy = key_policy_of(
        {
            "Effect": "Allow",
            "Principal": {"RAM": DAVE.arn},
            "Action": "kms:ENCRYPT",
            "Resource": "*",
        }
    )
    assert decide(DAVE, "kms:Encrypt", key=policy).allowed


def test_reencrypt_wildcard_covers_both() -> None:
    policy = key_policy_of(
        {
            "Effect": "Allow",
            "Principal": {"RAM": DAVE.arn},
            "Action": "kms:ReEncrypt*",
            "Resource": "*",
        }
    )
    for permission in authorization_for("ReEncrypt").permissions:
        assert decide(DAVE, permission.action, key=policy).allowed


# --- Explicit deny ----------------------------------------------------------------


DENY_DECRYPT_ALICE = key_policy_of(
    {
        "Effect": "Allow",
        "Principal": {"RAM": f"acs:ram::{OWNER}:*"},
        "Action": "kms:*",
        "Resource": "*",
    },
    {
        "Sid": "no decrypt",
        "Effect": "Deny",
        "Principal": {"RAM": ALICE.arn},
        "Action": "kms:Decrypt",
        "Resource": "*",
    },
)


def test_key_policy_deny_wins() -> None:
    denied = decide(ALICE, "kms:Decrypt", key=DENY_DECRYPT_ALICE, identity=[ALLOW_ALL])
    assert_denied(denied, PolicyType.KEY, DenyType.EXPLICIT)
    assert "'no decrypt'" in denied.reason
    assert decide(ALICE, "kms:Encrypt", key=DENY_DECRYPT_ALICE).allowed
    assert decide(BOB, "kms:Decrypt", key=DENY_DECRYPT_ALICE).allowed


def test_identity_deny_wins_over_key_policy() -> None:
    deny = identity_policy({"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"})
    denied = decide(BOB, "kms:Encrypt", key=CUSTOM, identity=[ALLOW_ALL, deny])
    assert_denied(denied, PolicyType.IDENTITY, DenyType.EXPLICIT)


def test_foreign_identity_deny_wins() -> None:
    deny = identity_policy({"Effect": "Deny", "NotAction": "kms:Describe*", "Resource": "*"})
    denied = decide(CAROL, "kms:Encrypt", key=CUSTOM, identity=[FOREIGN_GRANT, deny])
    assert_denied(denied, PolicyType.IDENTITY, DenyType.EXPLICIT)
    assert decide(CAROL, "kms:DescribeKey", key=CUSTOM, identity=[FOREIGN_GRANT, deny]).allowed


def test_deny_applies_to_root() -> None:
    policy = key_policy_of(
        {
            "Effect": "Deny",
            "Principal": {"RAM": f"acs:ram::{OWNER}:*"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    assert_denied(decide(ROOT, "kms:Encrypt", key=policy), PolicyType.KEY, DenyType.EXPLICIT)
    assert_denied(decide(ROOT, "kms:DisableKey", key=policy), PolicyType.KEY, DenyType.EXPLICIT)


@pytest.mark.parametrize("action", ["kms:GetKeyPolicy", "kms:SetKeyPolicy", "KMS:setkeypolicy"])
def test_root_cannot_be_locked_out(action: str) -> None:
    policy = key_policy_of(
        {
            "Effect": "Deny",
            "Principal": {"RAM": [f"acs:ram::{OWNER}:*", ROOT.arn]},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    assert decide(ROOT, action, key=policy).allowed


def test_lockout_rule_is_for_own_root_only() -> None:
    policy = key_policy_of(
        {"Effect": "Deny", "Principal": {"RAM": DAVE.arn}, "Action": "kms:*", "Resource": "*"}
    )
    decision = decide(DAVE, "kms:SetKeyPolicy", key=policy, identity=[ALLOW_ALL])
    assert_denied(decision, PolicyType.KEY, DenyType.EXPLICIT)
    foreign = decide(FOREIGN_ROOT, "kms:SetKeyPolicy", key=CUSTOM)
    assert_denied(foreign, PolicyType.KEY, DenyType.IMPLICIT)


def test_identity_policies_do_not_bind_root() -> None:
    deny = identity_policy({"Effect": "Deny", "Action": "*", "Resource": "*"})
    assert decide(ROOT, "kms:Encrypt", key=DEFAULT, identity=[deny]).allowed


# --- Conditions -------------------------------------------------------------------


def conditional(condition: dict[str, Any], effect: str = "Allow") -> PolicyDocument:
    return key_policy_of(
        {
            "Effect": effect,
            "Principal": {"RAM": DAVE.arn},
            "Action": "kms:*",
            "Resource": "*",
            "Condition": condition,
        }
    )


def test_source_ip_condition() -> None:
    policy = conditional({"IpAddress": {"acs:SourceIp": "192.0.2.0/24"}})
    assert decide(DAVE, "kms:Encrypt", key=policy).allowed
    outside = decide(DAVE, "kms:Encrypt", key=policy, source_ip="198.51.100.1")
    assert_denied(outside, PolicyType.IDENTITY, DenyType.IMPLICIT)
    unknown = decide(DAVE, "kms:Encrypt", key=policy, source_ip=None)
    assert not unknown.allowed


def test_current_time_condition() -> None:
    policy = conditional({"DateLessThan": {"acs:CurrentTime": "2026-06-01T00:00:00+08:00"}})
    assert decide(DAVE, "kms:Encrypt", key=policy).allowed
    later = datetime(2026, 6, 1, tzinfo=UTC)
    assert not decide(DAVE, "kms:Encrypt", key=policy, now=later).allowed


def test_secure_transport_condition() -> None:
    policy = conditional({"Bool": {"acs:SecureTransport": "true"}})
    assert decide(DAVE, "kms:Encrypt", key=policy).allowed
    assert not decide(DAVE, "kms:Encrypt", key=policy, secure=False).allowed


def test_tag_condition() -> None:
    policy = conditional({"StringEquals": {"kms:tag/env": ["prod", "staging"]}})
    assert decide(DAVE, "kms:Encrypt", key=policy, tags={"env": "prod"}).allowed
    assert not decide(DAVE, "kms:Encrypt", key=policy, tags={"env": "dev"}).allowed
    assert not decide(DAVE, "kms:Encrypt", key=policy, tags={}).allowed


def test_conditional_deny() -> None:
    deny_outside = identity_policy(
        {
            "Effect": "Deny",
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"acs:SourceIp": "192.0.2.0/24"}},
        }
    )
    inside = decide(BOB, "kms:Encrypt", key=CUSTOM, identity=[deny_outside])
    assert inside.allowed
    outside = decide(
        BOB, "kms:Encrypt", key=CUSTOM, identity=[deny_outside], source_ip="203.0.113.5"
    )
    assert_denied(outside, PolicyType.IDENTITY, DenyType.EXPLICIT)
    # A request without a known address counts as outside every range.
    unknown = decide(BOB, "kms:Encrypt", key=CUSTOM, identity=[deny_outside], source_ip=None)
    assert_denied(unknown, PolicyType.IDENTITY, DenyType.EXPLICIT)


def test_identity_condition_on_tags() -> None:
    grant = identity_policy(
        {
            "Effect": "Allow",
            "Action": "kms:Encrypt",
            "Resource": f"acs:kms:{REGION}:{OWNER}:key/*",
            "Condition": {"StringLike": {"kms:tag/team": "pay*"}},
        }
    )
    assert decide(
        DAVE, "kms:Encrypt", key=CUSTOM, identity=[grant], tags={"team": "payments"}
    ).allowed
    assert not decide(
        DAVE, "kms:Encrypt", key=CUSTOM, identity=[grant], tags={"team": "ops"}
    ).allowed


# --- Resources without a key policy -----------------------------------------------


INSTANCE_ARN = resource_arn(
    ResourceKind.INSTANCE, region=REGION, account_id=OWNER, resource_id="kst-abc"
)


def test_instance_needs_identity_grant() -> None:
    grant = identity_policy(
        {"Effect": "Allow", "Action": "kms:GetKmsInstance", "Resource": "acs:kms:*:*:keystore/*"}
    )
    allowed = decide(DAVE, "kms:GetKmsInstance", key=None, identity=[grant], resource=INSTANCE_ARN)
    assert allowed.allowed
    denied = decide(DAVE, "kms:GetKmsInstance", key=None, resource=INSTANCE_ARN)
    assert_denied(denied, PolicyType.IDENTITY, DenyType.IMPLICIT)
    assert decide(ROOT, "kms:GetKmsInstance", key=None, resource=INSTANCE_ARN).allowed


def test_key_arn_grant_does_not_cover_aliases() -> None:
    grant = identity_policy(
        {"Effect": "Allow", "Action": "kms:CreateAlias", "Resource": f"acs:kms:*:{OWNER}:key/*"}
    )
    alias = resource_arn(
        ResourceKind.ALIAS, region=REGION, account_id=OWNER, resource_id="alias/app"
    )
    assert decide(DAVE, "kms:CreateAlias", key=CUSTOM, identity=[grant]).allowed
    assert not decide(DAVE, "kms:CreateAlias", key=None, identity=[grant], resource=alias).allowed


def test_wrong_policy_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="key policy"):
        decide(DAVE, "kms:Encrypt", key=ALLOW_ALL)
    with pytest.raises(ValueError, match="identity policy"):
        decide(DAVE, "kms:Encrypt", key=None, identity=[DEFAULT])


# --- AccessDeniedDetail -----------------------------------------------------------


def test_access_denied_detail() -> None:
    req = request(CAROL, "kms:Encrypt")
    decision = evaluate(
        req, identity_policies=[], key_policy=CUSTOM, key_tags={}, resource_owner=OWNER
    )
    assert decision.access_denied_detail(req) == {
        "AuthAction": "kms:Encrypt",
        "AuthResource": KEY_ARN,
        "AuthPrincipalType": "SubUser",
        "AuthPrincipalOwnerId": FOREIGN,
        "AuthPrincipalDisplayName": "carol",
        "PolicyType": "AccountLevelIdentityBasedPolicy",
        "NoPermissionType": "ImplicitDeny",
    }
    assert CAROL.arn in decision.reason


def test_allowed_decision_has_no_detail() -> None:
    req = request(ROOT, "kms:Encrypt")
    decision = evaluate(
        req, identity_policies=[], key_policy=DEFAULT, key_tags={}, resource_owner=OWNER
    )
    with pytest.raises(ValueError, match="no AccessDeniedDetail"):
        decision.access_denied_detail(req)


# --- Properties -------------------------------------------------------------------

CALLERS = [ROOT, ALICE, BOB, APP, DAVE, CAROL, OPS, FOREIGN_ROOT]
PRINCIPALS = sorted({c.arn for c in CALLERS} | {f"acs:ram::{OWNER}:*", f"acs:ram::{FOREIGN}:*"})
ACTION_PATTERNS = ["kms:*", "kms:Encrypt", "kms:Decrypt", "kms:Get*", "kms:*Key", "kms:Describe?ey"]
ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:GetKeyPolicy", "kms:DisableKey", "kms:DescribeKey"]

statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Principal": st.fixed_dictionaries(
            {"RAM": st.lists(st.sampled_from(PRINCIPALS), min_size=1, max_size=3)}
        ),
        "Action": st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=3),
        "Resource": st.just("*"),
    }
)
identity_statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Action": st.lists(st.sampled_from([*ACTION_PATTERNS, "*"]), min_size=1, max_size=3),
        "Resource": st.sampled_from(["*", f"acs:kms:*:{OWNER}:key/*", f"acs:kms:*:{FOREIGN}:*"]),
    }
)


def _denies(statement: dict[str, Any], action: str, caller: RamIdentity | None) -> bool:
    """Return whether a Deny statement matches; ``caller`` is None for identity statements."""
    if statement["Effect"] != "Deny":
        return False
    if not any(wildcard_match(p, action, ignore_case=True) for p in statement["Action"]):
        return False
    if caller is None:
        return wildcard_match(statement["Resource"], KEY_ARN)
    names = statement["Principal"]["RAM"]
    return caller.arn in names or f"acs:ram::{caller.account_id}:*" in names


@given(
    st.lists(statements, min_size=1, max_size=4),
    st.lists(identity_statements, max_size=3),
    st.sampled_from(CALLERS),
    st.sampled_from(ACTIONS),
    st.booleans(),
)
def test_explicit_deny_always_wins(
    key_statements: list[dict[str, Any]],
    own_statements: list[dict[str, Any]],
    caller: RamIdentity,
    action: str,
    by_arn: bool,
) -> None:
    key = key_policy_of(*key_statements)
    identity = [identity_policy(*own_statements)] if own_statements else []
    decision = decide(caller, action, key=key, identity=identity, by_arn=by_arn)
    lockout_exempt = caller == ROOT and action == "kms:GetKeyPolicy"
    key_deny = any(_denies(s, action, caller) for s in key_statements)
    identity_deny = caller.kind is not CallerKind.ROOT and any(
        _denies(s, action, None) for s in own_statements
    )
    if lockout_exempt:
        assert decision.allowed
    elif key_deny or identity_deny:
        assert not decision.allowed
        assert decision.deny_type is DenyType.EXPLICIT
    if decision.allowed:
        assert decision.deny_type is None


@given(
    st.lists(statements, min_size=1, max_size=4),
    st.sampled_from(CALLERS),
    st.sampled_from(ACTIONS),
)
def test_adding_a_deny_never_allows_more(
    key_statements: list[dict[str, Any]], caller: RamIdentity, action: str
) -> None:
    before = decide(caller, action, key=key_policy_of(*key_statements), identity=[ALLOW_ALL])
    deny = {
        "Effect": "Deny",
        "Principal": {"RAM": caller.arn},
        "Action": action,
        "Resource": "*",
    }
    after = decide(caller, action, key=key_policy_of(*key_statements, deny), identity=[ALLOW_ALL])
    if caller == ROOT and action == "kms:GetKeyPolicy":
        assert after.allowed
    else:
        assert not after.allowed
        assert after.deny_type is DenyType.EXPLICIT
    if after.allowed:
        assert before.allowed


# --- The action table -------------------------------------------------------------


def test_every_served_action_has_a_row() -> None:
    served = set(build_handlers(cast(Services, None)))
    missing = served - set(KMS_ACTIONS)
    assert not missing


def test_reference_actions_have_rows() -> None:
    for name in (
        "CreateKey",
        "DescribeKey",
        "ListKeys",
        "EnableKey",
        "DisableKey",
        "CancelKeyDeletion",
        "ScheduleKeyDeletion",
        "SetDeletionProtection",
        "UpdateKeyDescription",
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "ListAliases",
        "ListAliasesByKeyId",
        "TagResource",
        "UntagResource",
        "ListResourceTags",
        "TagResources",
        "UntagResources",
        "ListTagResources",
        "SetKeyPolicy",
        "GetKeyPolicy",
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateAndExportDataKey",
        "ExportDataKey",
        "ReEncrypt",
        "DescribeKeyVersion",
        "ListKeyVersions",
        "CreateKeyVersion",
        "UpdateRotationPolicy",
        "GetParametersForImport",
        "ImportKeyMaterial",
        "GetKmsInstance",
        "ListKmsInstances",
        "DescribeRegions",
        "DescribeAccountKmsStatus",
        "GetKmsInstanceQuotaInfos",
    ):
        assert authorization_for(name).api_action == name


@pytest.mark.parametrize(
    ("action", "permissions"),
    [
        ("Encrypt", (Permission("kms:Encrypt", ResourceKind.KEY),)),
        ("DisableKey", (Permission("kms:DisableKey", ResourceKind.KEY),)),
        ("ListKeys", (Permission("kms:ListKeys", ResourceKind.ANY),)),
        ("CreateKey", (Permission("kms:CreateKey", ResourceKind.ANY),)),
        ("GetKmsInstance", (Permission("kms:GetKmsInstance", ResourceKind.INSTANCE),)),
        (
            "ReEncrypt",
            (
                Permission("kms:ReEncryptFrom", ResourceKind.KEY),
                Permission("kms:ReEncryptTo", ResourceKind.KEY),
            ),
        ),
        (
            "CreateAlias",
            (
                Permission("kms:CreateAlias", ResourceKind.ALIAS),
                Permission("kms:CreateAlias", ResourceKind.KEY),
            ),
        ),
        ("DescribeRegions", ()),
    ],
)
def test_action_rows(action: str, permissions: tuple[Permission, ...]) -> None:
    assert authorization_for(action).permissions == permissions


def test_every_permission_is_a_kms_action() -> None:
    for row in KMS_ACTIONS.values():
        for permission in row.permissions:
            assert permission.action.startswith("kms:")
            if row.api_action != "ReEncrypt":
                assert permission.action == f"kms:{row.api_action}"


def test_unknown_action_has_no_row() -> None:
    with pytest.raises(LookupError, match="'Frobnicate'"):
        authorization_for("Frobnicate")


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        KMS_ACTIONS["Encrypt"] = KMS_ACTIONS["Decrypt"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("kind", "resource_id", "expected"),
    [
        (ResourceKind.KEY, KEY_ID, f"acs:kms:{REGION}:{OWNER}:key/{KEY_ID}"),
        (ResourceKind.ALIAS, "alias/app", f"acs:kms:{REGION}:{OWNER}:alias/app"),
        (ResourceKind.ALIAS, "app", f"acs:kms:{REGION}:{OWNER}:alias/app"),
        (ResourceKind.INSTANCE, "kst-abc", f"acs:kms:{REGION}:{OWNER}:keystore/kst-abc"),
        (ResourceKind.ANY, None, f"acs:kms:{REGION}:{OWNER}:*"),
    ],
)
def test_resource_arns(kind: ResourceKind, resource_id: str | None, expected: str) -> None:
    assert resource_arn(kind, region=REGION, account_id=OWNER, resource_id=resource_id) == expected


def test_resource_arn_argument_errors() -> None:
    with pytest.raises(ValueError, match="no resource ID"):
        resource_arn(ResourceKind.ANY, region=REGION, account_id=OWNER, resource_id="x")
    with pytest.raises(ValueError, match="needs its resource ID"):
        resource_arn(ResourceKind.KEY, region=REGION, account_id=OWNER)
    with pytest.raises(ValueError, match="alias name is empty"):
        resource_arn(ResourceKind.ALIAS, region=REGION, account_id=OWNER, resource_id="alias/")


# --- Purity -----------------------------------------------------------------------

POLICY_MODULES = (
    "_wildcards",
    "kms_actions",
    "key_policy",
    "policy_conditions",
    "policy_document",
    "policy_errors",
    "policy_eval",
    "policy_principals",
)
ALLOWED_IMPORTS = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "ipaddress",
    "json",
    "math",
    "re",
    "types",
    "typing",
    "hyok.common.errors",
    "hyok.common.jsontypes",
}


@pytest.mark.parametrize("module", POLICY_MODULES)
def test_policy_modules_do_no_io(module: str) -> None:
    path = Path(domain_package.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module
        elif isinstance(node, ast.Import):
            name = node.names[0].name
        else:
            continue
        assert name in ALLOWED_IMPORTS or name.startswith("hyok.kms.domain."), name
    source = path.read_text(encoding="utf-8")
    assert ".now(" not in source
    assert "open(" not in source
