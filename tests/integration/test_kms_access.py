"""Access control of KMS actions, through the official SDKs against the real server.

RAM users and roles are made through the RAM and STS SDKs; keys through the
KMS SDK with the account root. Each test checks one rule of
docs/access-policy.md: identity policies, key policies, explicit Deny,
cross-account use by ARN only, ReEncrypt's two permissions, and the
``AccessDeniedDetail`` of a denial.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from alibabacloud_ram20150501 import models as ram_models  # type: ignore[import-untyped]

from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy
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
    create_access_key,
    create_policy,
    create_role,
    create_user,
    kms,
    policy_document,
    ram,
    trust_document,
    unique,
)
from tests.integration._sdk import call, client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_key(stack: KmsStack, policy: str | None = None) -> dict[str, Any]:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    if policy is not None:
        query["Policy"] = policy
    metadata: dict[str, Any] = call(stack.sdk(), "CreateKey", query)["KeyMetadata"]
    return metadata


def user_client(stack: KmsStack, *, other_account: bool = False) -> tuple[str, Any]:
    """Create a RAM user with an AccessKey (in the other account if asked); return name, client."""
    name = unique("user")
    root_key = (
        (stack.other_access_key_id, stack.other_secret) if other_account else (None, None)
    )
    request = ram_models.CreateUserRequest(user_name=name)
    ram(stack, *root_key).create_user_with_options(request, runtime())
    key_request = ram_models.CreateAccessKeyRequest(user_name=name)
    key = (
        ram(stack, *root_key)
        .create_access_key_with_options(key_request, runtime())
        .body.access_key
    )
    register_sensitive(key.access_key_secret)
    return name, kms(stack, key.access_key_id, key.access_key_secret)


def grant(stack: KmsStack, user: str, document: str, *, other_account: bool = False) -> None:
    """Attach a new custom policy with ``document`` to ``user``."""
    root_key = (
        (stack.other_access_key_id, stack.other_secret) if other_account else (None, None)
    )
    policy = unique("policy")
    client = ram(stack, *root_key)
    client.create_policy_with_options(
        ram_models.CreatePolicyRequest(policy_name=policy, policy_document=document), runtime()
    )
    client.attach_policy_to_user_with_options(
        ram_models.AttachPolicyToUserRequest(
            policy_type="Custom", policy_name=policy, user_name=user
        ),
        runtime(),
    )


def encrypt(client: Any, key: str) -> dict[str, Any]:
    return call(client, "Encrypt", {"KeyId": key, "Plaintext": b64(b"access")})


def denied(action: Any) -> dict[str, Any]:
    error = client_error(action)
    assert error.code == "Forbidden.NoPermission", error.data
    assert error.status_code == 403
    data: dict[str, Any] = error.data
    return data


# --- Same account -----------------------------------------------------------------------


def test_default_key_policy_lets_every_identity_of_the_account_use_the_key(
    kms_stack: KmsStack,
) -> None:
    key = create_key(kms_stack)
    _, client = user_client(kms_stack)
    blob = encrypt(client, key["KeyId"])["CiphertextBlob"]
    plaintext = call(client, "Decrypt", {"CiphertextBlob": blob})["Plaintext"]
    assert base64.b64decode(plaintext) == b"access"


def test_account_wide_actions_need_an_identity_policy(kms_stack: KmsStack) -> None:
    name, client = user_client(kms_stack)
    data = denied(lambda: call(client, "ListKeys"))
    assert f"user/{name}" in data["Message"]
    assert "kms:ListKeys" in data["Message"]
    detail = data["AccessDeniedDetail"]
    assert detail["AuthAction"] == "kms:ListKeys"
    assert detail["AuthResource"] == f"acs:kms:{REGION}:{ACCOUNT_ID}:*"
    assert detail["AuthPrincipalType"] == "SubUser"
    assert detail["AuthPrincipalDisplayName"] == name
    assert detail["NoPermissionType"] == "ImplicitDeny"

    grant(kms_stack, name, policy_document("kms:List*"))
    assert "Keys" in call(client, "ListKeys")


def test_role_lists_grant_users_and_leave_others_out(kms_stack: KmsStack) -> None:
    alice, alice_client = user_client(kms_stack)
    _bob, bob_client = user_client(kms_stack)
    policy = build_role_policy(
        ACCOUNT_ID, KeyPolicyRoles(users=(f"acs:ram::{ACCOUNT_ID}:user/{alice}",))
    )
    key = create_key(kms_stack, policy)["KeyId"]

    assert encrypt(alice_client, key)["KeyId"] == key
    data = denied(lambda: encrypt(bob_client, key))
    assert data["AccessDeniedDetail"]["NoPermissionType"] == "ImplicitDeny"
    # Users of the key may not manage it.
    denied(lambda: call(alice_client, "DisableKey", {"KeyId": key}))
    # The account root keeps every right on its own key.
    assert encrypt(kms_stack.sdk(), key)["KeyId"] == key


def administered_key(stack: KmsStack) -> tuple[Any, Any, str, str]:
    """Create a key with one administrator and one user; return their clients, key, policy."""
    admin, admin_client = user_client(stack)
    user, user_client_ = user_client(stack)
    policy = build_role_policy(
        ACCOUNT_ID,
        KeyPolicyRoles(
            administrators=(f"acs:ram::{ACCOUNT_ID}:user/{admin}",),
            users=(f"acs:ram::{ACCOUNT_ID}:user/{user}",),
        ),
    )
    return admin_client, user_client_, create_key(stack, policy)["KeyId"], policy


def test_administrator_disables_but_cannot_encrypt(kms_stack: KmsStack) -> None:
    admin_client, user_client_, key, _ = administered_key(kms_stack)

    data = denied(lambda: encrypt(admin_client, key))
    assert data["AccessDeniedDetail"]["AuthAction"] == "kms:Encrypt"
    call(admin_client, "DisableKey", {"KeyId": key})
    call(admin_client, "EnableKey", {"KeyId": key})

    assert encrypt(user_client_, key)["KeyId"] == key
    data = denied(lambda: call(user_client_, "DisableKey", {"KeyId": key}))
    assert data["AccessDeniedDetail"]["AuthAction"] == "kms:DisableKey"


def test_explicit_deny_in_an_identity_policy_wins(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    name, client = user_client(kms_stack)
    grant(kms_stack, name, policy_document("kms:Encrypt", effect="Deny"))
    data = denied(lambda: encrypt(client, key))
    assert data["AccessDeniedDetail"]["NoPermissionType"] == "ExplicitDeny"
    assert data["AccessDeniedDetail"]["PolicyType"] == "AccountLevelIdentityBasedPolicy"
    # Other actions stay allowed by the key policy.
    assert call(client, "DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyId"] == key


def test_explicit_deny_in_the_key_policy_binds_the_root_too(kms_stack: KmsStack) -> None:
    policy = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:*"]},
                    "Action": ["kms:*"],
                    "Resource": ["*"],
                },
                {
                    "Effect": "Deny",
                    "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:root"]},
                    "Action": ["kms:Encrypt"],
                    "Resource": ["*"],
                },
            ],
        }
    )
    key = create_key(kms_stack, policy)["KeyId"]
    data = denied(lambda: encrypt(kms_stack.sdk(), key))
    assert data["AccessDeniedDetail"]["PolicyType"] == "ResourceBasedPolicy"
    assert data["AccessDeniedDetail"]["NoPermissionType"] == "ExplicitDeny"
    assert call(kms_stack.sdk(), "DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyId"] == key


def test_role_session_is_authorised_as_its_role(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    caller = unique("caller")
    create_user(kms_stack, caller)
    caller_key, caller_secret = create_access_key(kms_stack, caller)
    policy = unique("assume")
    create_policy(kms_stack, policy, policy_document("sts:AssumeRole"))
    attach_to_user(kms_stack, caller, policy)
    role = create_role(
        kms_stack, unique("role"), trust_document(f"acs:ram::{ACCOUNT_ID}:user/{caller}")
    )
    credentials = assume_role(kms_stack, caller_key, caller_secret, role.arn).credentials
    session = kms(
        kms_stack,
        credentials.access_key_id,
        credentials.access_key_secret,
        credentials.security_token,
    )
    # The default key policy names every identity of the account, roles included.
    assert encrypt(session, key)["KeyId"] == key
    data = denied(lambda: call(session, "ListKeys"))
    assert data["AccessDeniedDetail"]["AuthPrincipalType"] == "AssumedRoleUser"


def test_reencrypt_needs_both_permissions(kms_stack: KmsStack) -> None:
    name, client = user_client(kms_stack)
    source = create_key(kms_stack)["KeyId"]
    only_from = json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:user/{name}"]},
                    "Action": ["kms:Encrypt", "kms:ReEncryptFrom"],
                    "Resource": ["*"],
                }
            ],
        }
    )
    destination = create_key(kms_stack, only_from)["KeyId"]
    blob = encrypt(client, source)["CiphertextBlob"]
    data = denied(
        lambda: call(client, "ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": destination})
    )
    assert data["AccessDeniedDetail"]["AuthAction"] == "kms:ReEncryptTo"
    grant(kms_stack, name, policy_document("kms:ReEncryptTo"))
    result = call(client, "ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": destination})
    assert result["KeyId"] == destination


def test_instance_actions_check_the_instance(kms_stack: KmsStack) -> None:
    name, client = user_client(kms_stack)
    query = {"KmsInstanceId": kms_stack.instance_id}
    data = denied(lambda: call(client, "GetKmsInstance", query))
    assert data["AccessDeniedDetail"]["AuthResource"].endswith(kms_stack.instance_id)
    grant(kms_stack, name, policy_document("kms:GetKmsInstance"))
    assert call(client, "GetKmsInstance", query)["KmsInstance"]["InstanceId"] == (
        kms_stack.instance_id
    )


# --- Another account --------------------------------------------------------------------


def shared_key(stack: KmsStack, foreign_user: str) -> dict[str, Any]:
    policy = build_role_policy(
        ACCOUNT_ID,
        KeyPolicyRoles(cross_account_users=(f"acs:ram::{OTHER_ACCOUNT_ID}:user/{foreign_user}",)),
    )
    return create_key(stack, policy)


def test_cross_account_use_needs_the_key_policy_its_own_grant_and_the_arn(
    kms_stack: KmsStack,
) -> None:
    carol, carol_client = user_client(kms_stack, other_account=True)
    key = shared_key(kms_stack, carol)

    # The key policy names carol, but her own account has not granted her anything yet.
    data = denied(lambda: encrypt(carol_client, key["Arn"]))
    assert data["AccessDeniedDetail"]["PolicyType"] == "AccountLevelIdentityBasedPolicy"

    grant(kms_stack, carol, policy_document("kms:*"), other_account=True)
    blob = encrypt(carol_client, key["Arn"])["CiphertextBlob"]
    plaintext = call(carol_client, "Decrypt", {"CiphertextBlob": blob})["Plaintext"]
    assert base64.b64decode(plaintext) == b"access"

    # By key ID the key is looked up in carol's own account, where it does not exist.
    error = client_error(lambda: encrypt(carol_client, key["KeyId"]))
    assert error.code == "Forbidden.KeyNotFound"


def test_foreign_account_not_in_the_key_policy_learns_nothing(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    other_root = kms_stack.sdk(other_account=True)
    missing = f"acs:kms:{REGION}:{ACCOUNT_ID}:key/key-hzz00000000000000000000"
    present = denied(lambda: encrypt(other_root, key["Arn"]))
    absent = denied(lambda: encrypt(other_root, missing))
    # Both refusals read alike, apart from the key named, and carry no detail.
    assert present["Message"].split(" of account ")[1] == absent["Message"].split(" of account ")[1]
    assert "AccessDeniedDetail" not in present
    assert "AccessDeniedDetail" not in absent


# --- Key policies -----------------------------------------------------------------------


def deny_everything() -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:*"]},
                    "Action": ["kms:*"],
                    "Resource": ["*"],
                }
            ],
        }
    )


def test_root_can_always_repair_its_key_policy(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    root = kms_stack.sdk()
    call(root, "SetKeyPolicy", {"KeyId": key, "Policy": deny_everything()})
    denied(lambda: encrypt(root, key))
    assert json.loads(call(root, "GetKeyPolicy", {"KeyId": key})["Policy"]) == json.loads(
        deny_everything()
    )
    default = build_role_policy(
        ACCOUNT_ID, KeyPolicyRoles(users=(f"acs:ram::{ACCOUNT_ID}:user/nobody",))
    )
    call(root, "SetKeyPolicy", {"KeyId": key, "Policy": default, "PolicyName": "default"})
    assert encrypt(root, key)["KeyId"] == key


def test_key_policy_errors(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    root = kms_stack.sdk()
    bad = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "kms:*"}]})
    error = client_error(lambda: call(root, "SetKeyPolicy", {"KeyId": key, "Policy": bad}))
    assert error.code == "InvalidParameter"
    assert "Statement[0]" in error.data["Message"]
    error = client_error(lambda: call(root, "GetKeyPolicy", {"KeyId": key, "PolicyName": "x"}))
    assert error.code == "Forbidden.ResourceNotFound"
    assert error.status_code == 404
    error = client_error(lambda: call(root, "SetKeyPolicy", {"KeyId": key}))
    assert error.code == "MissingParameter"
    error = client_error(lambda: create_key(kms_stack, bad))
    assert error.code == "InvalidParameter"


def test_user_needs_permission_to_read_or_change_the_key_policy(kms_stack: KmsStack) -> None:
    admin_client, user_client_, key, policy = administered_key(kms_stack)
    assert call(admin_client, "GetKeyPolicy", {"KeyId": key})["Policy"] == policy
    denied(lambda: call(user_client_, "GetKeyPolicy", {"KeyId": key}))
    denied(lambda: call(user_client_, "SetKeyPolicy", {"KeyId": key, "Policy": policy}))
