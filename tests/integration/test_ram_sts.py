"""RAM (2015-05-01) and STS (2015-04-01) on the KMS server, driven by the official SDKs.

Every test runs against ``kms_stack``: a real KMS over TLS on loopback, on
SQLite and on PostgreSQL. RAM and STS calls go through
``alibabacloud_ram20150501`` and ``alibabacloud_sts20150401``, and STS
credentials are then used with the KMS SDK. Names carry a per-test suffix
because the stack lives for the whole module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_ram20150501 import models as ram_models  # type: ignore[import-untyped]

from hyok.common.secrets import Secret
from hyok.kms.domain.ram import (
    StsCredential,
    new_security_token,
    new_sts_access_key_id,
    security_token_hash,
)
from tests.conftest import register_sensitive
from tests.integration._kms import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    REGION,
    KmsStack,
    kms_stack,
    postgres_server,
)
from tests.integration._ram import (
    assume_role,
    attach_to_user,
    check_error,
    create_access_key,
    create_policy,
    create_role,
    create_user,
    kms,
    policy_document,
    ram,
    sts,
    trust_document,
    unique,
)
from tests.integration._sdk import call, client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


# --- Users and their AccessKeys -----------------------------------------------------------


def test_user_lifecycle(kms_stack: KmsStack) -> None:
    name = unique("alice")
    created = create_user(kms_stack, name)
    assert created.user_name == name
    assert created.display_name == "Test"
    assert created.comments == "c"
    assert len(created.user_id) == 16
    assert created.create_date.endswith("Z")

    request = ram_models.GetUserRequest(user_name=name)
    fetched = ram(kms_stack).get_user_with_options(request, runtime()).body.user
    assert fetched.user_id == created.user_id
    assert fetched.update_date == created.create_date

    request = ram_models.DeleteUserRequest(user_name=name)
    ram(kms_stack).delete_user_with_options(request, runtime())
    error = client_error(
        lambda: ram(kms_stack).get_user_with_options(
            ram_models.GetUserRequest(user_name=name), runtime()
        )
    )
    check_error(error, "EntityNotExist.User", 404, repr(name))


def test_list_users_pages(kms_stack: KmsStack) -> None:
    prefix = unique("page")
    names = sorted(f"{prefix}-{index}" for index in range(3))
    for name in names:
        create_user(kms_stack, name)
    seen: list[str] = []
    marker = None
    while True:
        request = ram_models.ListUsersRequest(max_items=2, marker=marker)
        body = ram(kms_stack).list_users_with_options(request, runtime()).body
        seen.extend(user.user_name for user in body.users.user)
        if not body.is_truncated:
            assert body.marker is None
            break
        marker = body.marker
    assert [name for name in seen if name.startswith(prefix)] == names

    error = client_error(
        lambda: ram(kms_stack).list_users_with_options(
            ram_models.ListUsersRequest(max_items=1001), runtime()
        )
    )
    check_error(error, "InvalidParameter", 400, "MaxItems")
    error = client_error(
        lambda: ram(kms_stack).list_users_with_options(
            ram_models.ListUsersRequest(marker="%%%"), runtime()
        )
    )
    check_error(error, "InvalidParameter", 400, "Marker")


def test_list_roles_pages(kms_stack: KmsStack) -> None:
    prefix = unique("rolepage")
    names = sorted(f"{prefix}-{index}" for index in range(3))
    trust = trust_document(f"acs:ram::{ACCOUNT_ID}:root")
    for name in names:
        create_role(kms_stack, name, trust)
    seen: list[str] = []
    marker = None
    while True:
        request = ram_models.ListRolesRequest(max_items=2, marker=marker)
        body = ram(kms_stack).list_roles_with_options(request, runtime()).body
        seen.extend(role.role_name for role in body.roles.role)
        if not body.is_truncated:
            assert body.marker is None
            break
        marker = body.marker
    assert [name for name in seen if name.startswith(prefix)] == names

    request = ram_models.ListRolesRequest(max_items=1000)
    listed = ram(kms_stack).list_roles_with_options(request, runtime()).body.roles.role
    role = next(item for item in listed if item.role_name == names[0])
    assert role.arn == f"acs:ram::{ACCOUNT_ID}:role/{names[0]}"
    assert role.description == "test role"
    assert role.create_date.endswith("Z")


def test_list_roles_rejects_tag_filter(kms_stack: KmsStack) -> None:
    request = ram_models.ListRolesRequest(
        tag=[ram_models.ListRolesRequestTag(key="team", value="a")]
    )
    error = client_error(lambda: ram(kms_stack).list_roles_with_options(request, runtime()))
    check_error(error, "InvalidParameter", 400, "Tag")
    error = client_error(
        lambda: ram(kms_stack).list_roles_with_options(
            ram_models.ListRolesRequest(marker="%%%"), runtime()
        )
    )
    check_error(error, "InvalidParameter", 400, "ListRoles")


def test_duplicate_and_invalid_user_names(kms_stack: KmsStack) -> None:
    name = unique("dup")
    create_user(kms_stack, name)
    error = client_error(lambda: create_user(kms_stack, name))
    check_error(error, "EntityAlreadyExists.User", 409, repr(name))
    error = client_error(lambda: create_user(kms_stack, "bad name!"))
    check_error(error, "InvalidParameter.UserName.InvalidChars", 400, "'bad name!'")
    error = client_error(lambda: create_user(kms_stack, "x" * 65))
    check_error(error, "InvalidParameter.UserName.Length", 400, "65 characters")
    error = client_error(
        lambda: ram(kms_stack).create_user_with_options(
            ram_models.CreateUserRequest(user_name=unique("u"), comments="c" * 129), runtime()
        )
    )
    check_error(error, "InvalidParameter.Comments.Length", 400, "129 characters")
    error = client_error(
        lambda: ram(kms_stack).create_user_with_options(ram_models.CreateUserRequest(), runtime())
    )
    check_error(error, "MissingParameter", 400, "UserName")


def test_same_user_name_in_two_accounts(kms_stack: KmsStack) -> None:
    name = unique("shared")
    create_user(kms_stack, name)
    other = ram(kms_stack, kms_stack.other_access_key_id, kms_stack.other_secret)
    request = ram_models.CreateUserRequest(user_name=name)
    assert other.create_user_with_options(request, runtime()).body.user.user_name == name
    # Each account sees its own user only.
    other.delete_user_with_options(ram_models.DeleteUserRequest(user_name=name), runtime())
    request = ram_models.GetUserRequest(user_name=name)
    assert ram(kms_stack).get_user_with_options(request, runtime()).body.user.user_name == name


def test_access_keys_of_a_user(kms_stack: KmsStack) -> None:
    name = unique("keys")
    create_user(kms_stack, name)
    first, _ = create_access_key(kms_stack, name)
    second, _ = create_access_key(kms_stack, name)
    error = client_error(lambda: create_access_key(kms_stack, name))
    check_error(error, "LimitExceeded.User.AccessKey", 409, "maximum is 2")

    request = ram_models.ListAccessKeysRequest(user_name=name)
    listed = ram(kms_stack).list_access_keys_with_options(request, runtime()).body
    assert [key.access_key_id for key in listed.access_keys.access_key] == [first, second]
    assert {key.status for key in listed.access_keys.access_key} == {"Active"}

    error = client_error(
        lambda: ram(kms_stack).delete_user_with_options(
            ram_models.DeleteUserRequest(user_name=name), runtime()
        )
    )
    check_error(error, "DeleteConflict.User.AccessKey", 409, "2 AccessKey(s)")

    # The root AccessKey is not the user's, so it cannot be deleted through the user.
    error = client_error(
        lambda: ram(kms_stack).delete_access_key_with_options(
            ram_models.DeleteAccessKeyRequest(
                user_name=name, user_access_key_id=kms_stack.access_key_id
            ),
            runtime(),
        )
    )
    check_error(error, "EntityNotExist.User.AccessKey", 404, kms_stack.access_key_id)

    for key_id in (first, second):
        request = ram_models.DeleteAccessKeyRequest(user_name=name, user_access_key_id=key_id)
        ram(kms_stack).delete_access_key_with_options(request, runtime())
    request = ram_models.DeleteUserRequest(user_name=name)
    ram(kms_stack).delete_user_with_options(request, runtime())

    error = client_error(lambda: create_access_key(kms_stack, name))
    check_error(error, "EntityNotExist.User", 404)


def test_user_access_key_signs_kms_but_not_ram(kms_stack: KmsStack) -> None:
    name = unique("signer")
    create_user(kms_stack, name)
    key_id, secret = create_access_key(kms_stack, name)

    client = kms(kms_stack, key_id, secret)
    assert (
        client.describe_regions_with_options(runtime()).body.regions.region[0].region_id == REGION
    )

    identity = sts(kms_stack, key_id, secret).get_caller_identity_with_options(runtime()).body
    user_id = (
        ram(kms_stack)
        .get_user_with_options(ram_models.GetUserRequest(user_name=name), runtime())
        .body.user.user_id
    )
    assert identity.identity_type == "RAMUser"
    assert identity.arn == f"acs:ram::{ACCOUNT_ID}:user/{name}"
    assert identity.account_id == ACCOUNT_ID
    assert identity.user_id == user_id
    assert identity.principal_id == user_id

    error = client_error(
        lambda: ram(kms_stack, key_id, secret).list_users_with_options(
            ram_models.ListUsersRequest(), runtime()
        )
    )
    check_error(
        error, "NoPermission", 403, f"user/{name}", "ram:ListUsers", "attach an identity policy"
    )


def test_root_caller_identity(kms_stack: KmsStack) -> None:
    client = sts(kms_stack, kms_stack.access_key_id, kms_stack.secret)
    identity = client.get_caller_identity_with_options(runtime()).body
    assert identity.identity_type == "Account"
    assert identity.account_id == ACCOUNT_ID
    assert identity.principal_id == ACCOUNT_ID
    assert identity.arn == f"acs:ram::{ACCOUNT_ID}:root"


# --- Policies ---------------------------------------------------------------------------


def test_policy_lifecycle_and_attachments(kms_stack: KmsStack) -> None:
    user = unique("pol-user")
    policy = unique("kms-user")
    create_user(kms_stack, user)
    created = create_policy(kms_stack, policy, policy_document())
    assert created.policy_type == "Custom"
    assert created.default_version == "v1"
    assert created.description == "test policy"

    error = client_error(lambda: create_policy(kms_stack, policy, policy_document()))
    check_error(error, "EntityAlreadyExists.Policy", 409, repr(policy))

    attach_to_user(kms_stack, user, policy)
    error = client_error(lambda: attach_to_user(kms_stack, user, policy))
    check_error(error, "EntityAlreadyExists.User.Policy", 409, "already attached")

    request = ram_models.GetPolicyRequest(policy_name=policy, policy_type="Custom")
    body = ram(kms_stack).get_policy_with_options(request, runtime()).body
    assert body.policy.attachment_count == 1
    assert body.policy.policy_document == policy_document()
    assert body.default_policy_version.version_id == "v1"
    assert body.default_policy_version.is_default_version is True

    request = ram_models.ListPoliciesForUserRequest(user_name=user)
    listed = ram(kms_stack).list_policies_for_user_with_options(request, runtime()).body
    assert [item.policy_name for item in listed.policies.policy] == [policy]
    assert listed.policies.policy[0].attach_date.endswith("Z")

    error = client_error(
        lambda: ram(kms_stack).delete_user_with_options(
            ram_models.DeleteUserRequest(user_name=user), runtime()
        )
    )
    check_error(error, "DeleteConflict.User.Policy", 409, "DetachPolicyFromUser")
    error = client_error(
        lambda: ram(kms_stack).delete_policy_with_options(
            ram_models.DeletePolicyRequest(policy_name=policy), runtime()
        )
    )
    check_error(error, "DeleteConflict.Policy.User", 409, "1 RAM user(s)")

    detach = ram_models.DetachPolicyFromUserRequest(
        policy_type="Custom", policy_name=policy, user_name=user
    )
    ram(kms_stack).detach_policy_from_user_with_options(detach, runtime())
    error = client_error(
        lambda: ram(kms_stack).detach_policy_from_user_with_options(detach, runtime())
    )
    check_error(error, "EntityNotExist.User.Policy", 404, "not attached")

    request = ram_models.DeletePolicyRequest(policy_name=policy)
    ram(kms_stack).delete_policy_with_options(request, runtime())
    error = client_error(
        lambda: ram(kms_stack).get_policy_with_options(
            ram_models.GetPolicyRequest(policy_name=policy, policy_type="Custom"), runtime()
        )
    )
    check_error(error, "EntityNotExist.Policy", 404, repr(policy))
    ram(kms_stack).delete_user_with_options(ram_models.DeleteUserRequest(user_name=user), runtime())


def test_policy_errors(kms_stack: KmsStack) -> None:
    user = unique("pol-err")
    create_user(kms_stack, user)
    error = client_error(lambda: create_policy(kms_stack, unique("p"), '{"Version": "2"}'))
    check_error(error, "MalformedPolicyDocument", 400, "Version")
    error = client_error(
        lambda: create_policy(kms_stack, unique("p"), policy_document(action="kms"))
    )
    check_error(error, "MalformedPolicyDocument", 400, "Statement[0].Action")
    error = client_error(lambda: create_policy(kms_stack, unique("p"), " " * 6145))
    check_error(error, "InvalidParameter.PolicyDocument.Length", 400, "6145 characters")
    error = client_error(lambda: create_policy(kms_stack, "bad_name", policy_document()))
    check_error(error, "InvalidParameter.PolicyName.InvalidChars", 400, "'bad_name'")
    error = client_error(lambda: attach_to_user(kms_stack, user, "AliyunKMSFullAccess", "System"))
    check_error(error, "EntityNotExist.Policy", 404, "no system policies")
    error = client_error(lambda: attach_to_user(kms_stack, user, unique("p"), "Other"))
    check_error(error, "InvalidParameter.PolicyType", 400, "'Other'")
    error = client_error(lambda: attach_to_user(kms_stack, user, unique("missing")))
    check_error(error, "EntityNotExist.Policy", 404, "CreatePolicy")
    error = client_error(lambda: attach_to_user(kms_stack, unique("nobody"), unique("p")))
    check_error(error, "EntityNotExist.User", 404, "CreateUser")


# --- Roles ------------------------------------------------------------------------------


def test_role_lifecycle(kms_stack: KmsStack) -> None:
    name = unique("app-role")
    policy = unique("role-pol")
    trust = trust_document(f"acs:ram::{ACCOUNT_ID}:root")
    role = create_role(kms_stack, name, trust, max_session_duration=7200)
    assert role.arn == f"acs:ram::{ACCOUNT_ID}:role/{name}"
    assert role.assume_role_policy_document == trust
    assert role.max_session_duration == 7200
    assert len(role.role_id) == 19

    error = client_error(lambda: create_role(kms_stack, name, trust))
    check_error(error, "EntityAlreadyExists.Role", 409, repr(name))
    error = client_error(lambda: create_role(kms_stack, unique("r"), '{"Version": "1"}'))
    check_error(error, "MalformedPolicyDocument", 400, "Statement")
    error = client_error(lambda: create_role(kms_stack, "bad_role", trust))
    check_error(error, "InvalidParameter.RoleName.InvalidChars", 400, "'bad_role'")
    error = client_error(
        lambda: create_role(kms_stack, unique("r"), trust, max_session_duration=60)
    )
    check_error(error, "InvalidParameter.MaxSessionDuration", 400, "3600 to 43200")

    request = ram_models.GetRoleRequest(role_name=name)
    fetched = ram(kms_stack).get_role_with_options(request, runtime()).body.role
    assert fetched.role_id == role.role_id
    assert fetched.is_service_linked_role is False

    create_policy(kms_stack, policy, policy_document())
    attach = ram_models.AttachPolicyToRoleRequest(
        policy_type="Custom", policy_name=policy, role_name=name
    )
    ram(kms_stack).attach_policy_to_role_with_options(attach, runtime())
    error = client_error(
        lambda: ram(kms_stack).attach_policy_to_role_with_options(attach, runtime())
    )
    check_error(error, "EntityAlreadyExists.Role.Policy", 409)
    error = client_error(
        lambda: ram(kms_stack).delete_role_with_options(
            ram_models.DeleteRoleRequest(role_name=name), runtime()
        )
    )
    check_error(error, "DeleteConflict.Role.Policy", 409, "DetachPolicyFromRole")
    error = client_error(
        lambda: ram(kms_stack).delete_policy_with_options(
            ram_models.DeletePolicyRequest(policy_name=policy), runtime()
        )
    )
    check_error(error, "DeleteConflict.Role.Policy", 409, "1 RAM role(s)")

    detach = ram_models.DetachPolicyFromRoleRequest(
        policy_type="Custom", policy_name=policy, role_name=name
    )
    ram(kms_stack).detach_policy_from_role_with_options(detach, runtime())
    error = client_error(
        lambda: ram(kms_stack).detach_policy_from_role_with_options(detach, runtime())
    )
    check_error(error, "EntityNotExist.Role.Policy", 404)
    ram(kms_stack).delete_role_with_options(ram_models.DeleteRoleRequest(role_name=name), runtime())
    error = client_error(lambda: ram(kms_stack).get_role_with_options(request, runtime()))
    check_error(error, "EntityNotExist.Role", 404, repr(name))


# --- STS --------------------------------------------------------------------------------


def role_with_caller(
    stack: KmsStack, *, grant: bool = True, trusted: bool = True
) -> tuple[Any, str, str, str]:
    """A role trusted by the account, and a user allowed (or not) to assume it."""
    user = unique("caller")
    role_name = unique("target")
    create_user(stack, user)
    key_id, secret = create_access_key(stack, user)
    principal = f"acs:ram::{ACCOUNT_ID}:root" if trusted else f"acs:ram::{ACCOUNT_ID}:user/other"
    role = create_role(stack, role_name, trust_document(principal))
    if grant:
        policy = unique("assume")
        create_policy(stack, policy, policy_document("sts:AssumeRole", role.arn))
        attach_to_user(stack, user, policy)
    return role, user, key_id, secret


def test_assume_role_and_use_credentials(kms_stack: KmsStack) -> None:
    role, user, key_id, secret = role_with_caller(kms_stack)
    before = datetime.now(UTC)
    body = assume_role(kms_stack, key_id, secret, role.arn, duration_seconds=900, session="app@1")
    credentials = body.credentials
    assert credentials.access_key_id.startswith("STS.")
    expiration = datetime.strptime(credentials.expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=895) <= expiration <= before + timedelta(seconds=905)
    assert body.assumed_role_user.arn == (
        f"acs:ram::{ACCOUNT_ID}:assumed-role/{role.role_name}/app@1"
    )
    assert body.assumed_role_user.assumed_role_id == f"{role.role_id}:app@1"

    session = sts(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
    )
    identity = session.get_caller_identity_with_options(runtime()).body
    assert identity.identity_type == "AssumedRoleUser"
    assert identity.role_id == role.role_id
    assert identity.principal_id == f"{role.role_id}:app@1"
    assert identity.arn == body.assumed_role_user.arn

    client = kms(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
    )
    assert client.describe_account_kms_status_with_options(runtime()).body.account_status == (
        "Enabled"
    )
    v1 = kms(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
        signature_algorithm="v2",
    )
    assert v1.describe_regions_with_options(runtime()).body.regions.region[0].region_id == REGION

    error = client_error(
        lambda: ram(
            kms_stack, credentials.access_key_id, credentials.access_key_secret
        ).get_user_with_options(ram_models.GetUserRequest(user_name=user), runtime())
    )
    assert error.code == "InvalidSecurityToken.Malformed"


def test_assume_role_refusals(kms_stack: KmsStack) -> None:
    role, _user, key_id, secret = role_with_caller(kms_stack)

    error = client_error(
        lambda: assume_role(kms_stack, kms_stack.access_key_id, kms_stack.secret, role.arn)
    )
    check_error(error, "NoPermission", 403, "account root")
    error = client_error(
        lambda: assume_role(kms_stack, key_id, secret, role.arn, duration_seconds=899)
    )
    check_error(error, "InvalidParameter.DurationSeconds", 400, "900 to 3600")
    error = client_error(
        lambda: assume_role(kms_stack, key_id, secret, role.arn, duration_seconds=3601)
    )
    check_error(error, "InvalidParameter.DurationSeconds", 400, "MaxSessionDuration")
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, role.arn, session="x"))
    check_error(error, "InvalidParameter.RoleSessionName", 400, "'x'")
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, "acs:ram::1:role/x"))
    check_error(error, "InvalidParameter.RoleArn", 400, "acs:ram::<account ID>:role/<role name>")
    missing = f"acs:ram::{ACCOUNT_ID}:role/{unique('none')}"
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, missing))
    check_error(error, "EntityNotExist.Role", 404, missing)
    error = client_error(
        lambda: assume_role(kms_stack, key_id, secret, role.arn, policy=policy_document())
    )
    check_error(error, "InvalidParameter.PolicyGrammar", 400, "session policies")

    # Trusted by the role, but no identity policy allows sts:AssumeRole.
    ungranted, user, key_id, secret = role_with_caller(kms_stack, grant=False)
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, ungranted.arn))
    check_error(error, "NoPermission", 403, f"user/{user}", "sts:AssumeRole", "identity policy")

    # Allowed by the caller's policy, but the trust policy names someone else.
    untrusted, user, key_id, secret = role_with_caller(kms_stack, trusted=False)
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, untrusted.arn))
    check_error(error, "NoPermission", 403, "is not trusted", "trust policy")

    # A role of another account that trusts only its own account.
    other_role = unique("foreign")
    other = ram(kms_stack, kms_stack.other_access_key_id, kms_stack.other_secret)
    other.create_role_with_options(
        ram_models.CreateRoleRequest(
            role_name=other_role,
            assume_role_policy_document=trust_document(f"acs:ram::{OTHER_ACCOUNT_ID}:root"),
        ),
        runtime(),
    )
    foreign_arn = f"acs:ram::{OTHER_ACCOUNT_ID}:role/{other_role}"
    error = client_error(lambda: assume_role(kms_stack, key_id, secret, foreign_arn))
    check_error(error, "NoPermission", 403, "is not trusted")


def test_sts_token_checks(kms_stack: KmsStack) -> None:
    role, _user, key_id, secret = role_with_caller(kms_stack)
    credentials = assume_role(kms_stack, key_id, secret, role.arn).credentials

    wrong = kms(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        "not-the-token",
    )
    error = client_error(lambda: wrong.describe_regions_with_options(runtime()))
    check_error(error, "InvalidSecurityToken.MismatchWithAccessKey", 400, "AssumeRole")

    with_token = kms(
        kms_stack, kms_stack.access_key_id, kms_stack.secret, credentials.security_token
    )
    error = client_error(lambda: with_token.describe_regions_with_options(runtime()))
    check_error(error, "InvalidSecurityToken.MismatchWithAccessKey", 400, "permanent AccessKey")


def test_revoked_sts_credentials_refused(kms_stack: KmsStack) -> None:
    role, _user, key_id, secret = role_with_caller(kms_stack)
    credentials = assume_role(kms_stack, key_id, secret, role.arn).credentials
    # Revoked before first use, so no node has cached the credentials.
    with kms_stack.store.session() as session:
        session.sts_credentials.revoke(credentials.access_key_id)
    client = kms(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
    )
    error = client_error(lambda: client.describe_regions_with_options(runtime()))
    check_error(error, "InvalidSecurityToken.Expired", 400, "revoked", "AssumeRole")


def test_expired_sts_credentials_refused(kms_stack: KmsStack) -> None:
    role, _user, _key_id, _secret = role_with_caller(kms_stack)
    token = new_security_token()
    secret = Secret("ExpiredSecret0123456789abcdefgh")
    register_sensitive(token.reveal())
    register_sensitive(secret.reveal())
    issued = datetime.now(UTC) - timedelta(hours=2)
    credential = StsCredential(
        access_key_id=new_sts_access_key_id(),
        account_id=ACCOUNT_ID,
        role_name=role.role_name,
        session_name="old-session",
        secret=secret,
        token_hash=security_token_hash(token.reveal()),
        source_arn=f"acs:ram::{ACCOUNT_ID}:user/someone",
        expires_at=issued + timedelta(hours=1),
        created_at=issued,
    )
    with kms_stack.store.session() as session:
        session.sts_credentials.create(credential)
    client = kms(kms_stack, credential.access_key_id, secret.reveal(), token.reveal())
    error = client_error(lambda: client.describe_regions_with_options(runtime()))
    check_error(error, "InvalidSecurityToken.Expired", 400, "expired at", "new STS credentials")


def test_deleting_role_ends_its_sessions(kms_stack: KmsStack) -> None:
    role, user, key_id, secret = role_with_caller(kms_stack)
    credentials = assume_role(kms_stack, key_id, secret, role.arn).credentials
    ram(kms_stack).delete_role_with_options(
        ram_models.DeleteRoleRequest(role_name=role.role_name), runtime()
    )
    with kms_stack.store.session(read_only=True) as session:
        assert session.sts_credentials.get(credentials.access_key_id) is None
    assert user


# --- Routing ----------------------------------------------------------------------------


def test_version_routing(kms_stack: KmsStack) -> None:
    error = client_error(lambda: call(kms_stack.sdk(), "ListUsers", version="2015-05-02"))
    check_error(error, "InvalidParameter", 400, "2016-01-20", "2015-05-01", "2015-04-01")
    error = client_error(lambda: call(kms_stack.sdk(), "CreateKey", version="2015-05-01"))
    check_error(error, "InvalidAction.NotFound", 404, "2015-05-01")
    error = client_error(lambda: call(kms_stack.sdk(), "ListUsers"))
    check_error(error, "InvalidAction.NotFound", 404, "2016-01-20")
