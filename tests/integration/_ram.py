"""Helpers of the RAM, STS and access tests: SDK clients, and identities made through them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from alibabacloud_kms20160120.client import Client as KmsClient  # type: ignore[import-untyped]
from alibabacloud_ram20150501 import models as ram_models  # type: ignore[import-untyped]
from alibabacloud_ram20150501.client import Client as RamClient  # type: ignore[import-untyped]
from alibabacloud_sts20150401 import models as sts_models  # type: ignore[import-untyped]
from alibabacloud_sts20150401.client import Client as StsClient  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import Config  # type: ignore[import-untyped]

from tests.conftest import register_sensitive
from tests.integration._kms import ACCOUNT_ID, REGION, KmsStack
from tests.integration._sdk import runtime

__all__ = [
    "assume_role",
    "attach_to_role",
    "attach_to_user",
    "check_error",
    "config",
    "create_access_key",
    "create_policy",
    "create_role",
    "create_user",
    "kms",
    "policy_document",
    "ram",
    "role_credentials",
    "sts",
    "trust_document",
    "unique",
]


def config(stack: KmsStack, key_id: str, secret: str, token: str | None = None) -> Config:
    return Config(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=f"127.0.0.1:{stack.port}",
        protocol="https",
        region_id=REGION,
        ca=str(stack.ca_file),
    )


def kms(stack: KmsStack, key_id: str, secret: str, token: str | None = None, **extra: Any) -> Any:
    """A KMS client signing with the given AccessKey (and STS token)."""
    client_config = config(stack, key_id, secret, token)
    for name, value in extra.items():
        setattr(client_config, name, value)
    return KmsClient(client_config)


def ram(stack: KmsStack, key_id: str | None = None, secret: str | None = None) -> RamClient:
    """A RAM client signing as the account root, or with the given AccessKey."""
    return RamClient(config(stack, key_id or stack.access_key_id, secret or stack.secret))


def sts(stack: KmsStack, key_id: str, secret: str, token: str | None = None) -> StsClient:
    return StsClient(config(stack, key_id, secret, token))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def policy_document(action: str = "kms:*", resource: str = "*", effect: str = "Allow") -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [{"Effect": effect, "Action": action, "Resource": resource}],
        }
    )


def trust_document(*principals: str) -> str:
    return json.dumps(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Principal": {"RAM": list(principals)},
                }
            ],
        }
    )


def create_user(stack: KmsStack, name: str) -> Any:
    request = ram_models.CreateUserRequest(user_name=name, display_name="Test", comments="c")
    return ram(stack).create_user_with_options(request, runtime()).body.user


def create_access_key(stack: KmsStack, user: str) -> tuple[str, str]:
    request = ram_models.CreateAccessKeyRequest(user_name=user)
    key = ram(stack).create_access_key_with_options(request, runtime()).body.access_key
    register_sensitive(key.access_key_secret)
    return key.access_key_id, key.access_key_secret


def create_policy(stack: KmsStack, name: str, document: str) -> Any:
    request = ram_models.CreatePolicyRequest(
        policy_name=name, policy_document=document, description="test policy"
    )
    return ram(stack).create_policy_with_options(request, runtime()).body.policy


def attach_to_user(stack: KmsStack, user: str, policy: str, policy_type: str = "Custom") -> None:
    request = ram_models.AttachPolicyToUserRequest(
        policy_type=policy_type, policy_name=policy, user_name=user
    )
    ram(stack).attach_policy_to_user_with_options(request, runtime())


def create_role(stack: KmsStack, name: str, trust: str, **extra: Any) -> Any:
    request = ram_models.CreateRoleRequest(
        role_name=name, assume_role_policy_document=trust, description="test role", **extra
    )
    return ram(stack).create_role_with_options(request, runtime()).body.role


def assume_role(stack: KmsStack, key_id: str, secret: str, role_arn: str, **extra: Any) -> Any:
    request = sts_models.AssumeRoleRequest(
        role_arn=role_arn, role_session_name=extra.pop("session", "session-1"), **extra
    )
    body = sts(stack, key_id, secret).assume_role_with_options(request, runtime()).body
    register_sensitive(body.credentials.access_key_secret)
    register_sensitive(body.credentials.security_token)
    return body


def attach_to_role(stack: KmsStack, role: str, policy: str) -> None:
    request = ram_models.AttachPolicyToRoleRequest(
        policy_type="Custom", policy_name=policy, role_name=role
    )
    ram(stack).attach_policy_to_role_with_options(request, runtime())


def role_credentials(stack: KmsStack, prefix: str, *role_policies: str) -> Any:
    """Return the STS credentials of a new role, assumed by a new RAM user allowed to assume it.

    The custom policies ``role_policies`` are attached to the role first.
    """
    user = unique(prefix)
    create_user(stack, user)
    user_key, user_secret = create_access_key(stack, user)
    policy = unique("assume")
    create_policy(stack, policy, policy_document("sts:AssumeRole"))
    attach_to_user(stack, user, policy)
    role = create_role(stack, unique("role"), trust_document(f"acs:ram::{ACCOUNT_ID}:user/{user}"))
    for role_policy in role_policies:
        attach_to_role(stack, role.role_name, role_policy)
    return assume_role(stack, user_key, user_secret, role.arn).credentials


def check_error(error: Any, code: str, status: int, *fragments: str) -> None:
    assert error.code == code, error.data
    assert error.status_code == status
    for fragment in fragments:
        assert fragment in error.data["Message"], error.data["Message"]
