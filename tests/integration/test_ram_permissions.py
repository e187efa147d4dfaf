"""RAM actions that read, decided by identity policies; changes stay with the account root.

A RAM user or a role session may call GetUser, ListUsers, ListAccessKeys,
GetRole, ListRoles, GetPolicy, ListPoliciesForUser and GetLoginProfile when
one of its identity policies allows ``ram:<Action>`` on the resource. The
calls go through the official RAM SDK against ``kms_stack``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_ram20150501 import models as ram_models  # type: ignore[import-untyped]
from alibabacloud_ram20150501.client import Client as RamClient  # type: ignore[import-untyped]

from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server
from tests.integration._ram import (
    attach_to_user,
    check_error,
    config,
    create_access_key,
    create_policy,
    create_user,
    policy_document,
    ram,
    role_credentials,
    unique,
)
from tests.integration._sdk import client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def user_with_policies(stack: KmsStack, *documents: str) -> tuple[str, RamClient]:
    """Create a RAM user with one custom policy per document; return its name and RAM client."""
    name = unique("reader")
    create_user(stack, name)
    for document in documents:
        policy = unique("read")
        create_policy(stack, policy, document)
        attach_to_user(stack, name, policy)
    key_id, secret = create_access_key(stack, name)
    return name, ram(stack, key_id, secret)


def statements(*items: dict[str, Any]) -> str:
    return json.dumps({"Version": "1", "Statement": list(items)})


def user_names(client: RamClient) -> list[str]:
    body = client.list_users_with_options(ram_models.ListUsersRequest(), runtime()).body
    return [user.user_name for user in body.users.user]


def get_user(client: RamClient, name: str) -> Any:
    request = ram_models.GetUserRequest(user_name=name)
    return client.get_user_with_options(request, runtime()).body.user


def test_policy_allows_listing(kms_stack: KmsStack) -> None:
    name, client = user_with_policies(
        kms_stack, policy_document("ram:List*"), policy_document("ram:GetUser")
    )
    assert name in user_names(client)
    roles = client.list_roles_with_options(ram_models.ListRolesRequest(), runtime()).body
    assert roles.roles is not None
    assert get_user(client, name).user_name == name
    request = ram_models.ListPoliciesForUserRequest(user_name=name)
    listed = client.list_policies_for_user_with_options(request, runtime()).body
    assert len(listed.policies.policy) == 2
    request = ram_models.ListAccessKeysRequest(user_name=name)
    keys = client.list_access_keys_with_options(request, runtime()).body.access_keys
    assert len(keys.access_key) == 1


def test_no_policy_reads_nothing(kms_stack: KmsStack) -> None:
    name, client = user_with_policies(kms_stack)
    error = client_error(lambda: user_names(client))
    check_error(
        error,
        "NoPermission",
        403,
        f"acs:ram::{ACCOUNT_ID}:user/{name} is not authorized to perform ram:ListUsers",
        f"acs:ram::{ACCOUNT_ID}:user/*",
    )
    error = client_error(lambda: get_user(client, name))
    check_error(error, "NoPermission", 403, "ram:GetUser", f"user/{name}")


def test_resource_limits_reads(kms_stack: KmsStack) -> None:
    other = unique("other")
    create_user(kms_stack, other)
    own = f"acs:ram:*:{ACCOUNT_ID}:user/reader-*"
    name, client = user_with_policies(kms_stack, policy_document("ram:GetUser", own))
    assert get_user(client, name).user_name == name
    check_error(client_error(lambda: get_user(client, other)), "NoPermission", 403, other)
    check_error(client_error(lambda: user_names(client)), "NoPermission", 403, "ram:ListUsers")


def test_explicit_deny_wins(kms_stack: KmsStack) -> None:
    other = unique("hidden")
    create_user(kms_stack, other)
    deny = statements(
        {"Effect": "Allow", "Action": "ram:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "ram:GetUser",
            "Resource": f"acs:ram:*:{ACCOUNT_ID}:user/{other}",
        },
    )
    name, client = user_with_policies(kms_stack, deny)
    assert other in user_names(client)
    assert get_user(client, name).user_name == name
    check_error(client_error(lambda: get_user(client, other)), "NoPermission", 403, other)


def test_changes_stay_with_the_root(kms_stack: KmsStack) -> None:
    _, client = user_with_policies(kms_stack, policy_document("ram:*"))
    request = ram_models.CreateUserRequest(user_name=unique("new"))
    error = client_error(lambda: client.create_user_with_options(request, runtime()))
    check_error(error, "NoPermission", 403, "ram:CreateUser", "only the account root")
    request = ram_models.CreateLoginProfileRequest(user_name="anyone", password="Pw-0123456789!")
    error = client_error(lambda: client.create_login_profile_with_options(request, runtime()))
    check_error(error, "NoPermission", 403, "ram:CreateLoginProfile")


def test_login_profile_read(kms_stack: KmsStack) -> None:
    target = unique("console")
    create_user(kms_stack, target)
    request = ram_models.CreateLoginProfileRequest(user_name=target, password="Pw-0123456789!")
    ram(kms_stack).create_login_profile_with_options(request, runtime())
    _, client = user_with_policies(kms_stack, policy_document("ram:GetLoginProfile"))
    request = ram_models.GetLoginProfileRequest(user_name=target)
    profile = client.get_login_profile_with_options(request, runtime()).body.login_profile
    assert profile.user_name == target


def test_role_session_reads(kms_stack: KmsStack) -> None:
    policy = unique("roles")
    create_policy(kms_stack, policy, policy_document("ram:ListRoles"))
    credentials = role_credentials(kms_stack, "session", policy)
    client = RamClient(
        config(
            kms_stack,
            credentials.access_key_id,
            credentials.access_key_secret,
            credentials.security_token,
        )
    )
    roles = client.list_roles_with_options(ram_models.ListRolesRequest(), runtime()).body
    assert roles.roles.role
    error = client_error(lambda: user_names(client))
    check_error(error, "NoPermission", 403, ":assumed-role/", "ram:ListUsers")
