"""Key associations through the official SDK: who used a key, and registered resources."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from hyok.kms.audit import read_events
from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server
from tests.integration._ram import create_access_key, create_user, kms, unique
from tests.integration._sdk import call, client_error

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def new_key(stack: KmsStack) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def associations(stack: KmsStack, key_id: str, **extra: str) -> dict[str, Any]:
    return call(stack.sdk(), "ListKeyAssociations", {"KeyId": key_id, **extra})


def encrypt(client: Any, key_id: str, **extra: str) -> str:
    query = {"KeyId": key_id, "Plaintext": base64.b64encode(b"used").decode(), **extra}
    blob: str = call(client, "Encrypt", query)["CiphertextBlob"]
    return blob


def test_uses_are_counted_per_principal_and_service(kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    assert associations(kms_stack, key)["Principals"]["Principal"] == []
    root = kms_stack.sdk()
    blob = encrypt(root, key)
    call(root, "Decrypt", {"CiphertextBlob": blob})
    encrypt(root, key, ViaService="oss")
    name = unique("user")
    create_user(kms_stack, name)
    encrypt(kms(kms_stack, *create_access_key(kms_stack, name)), key)

    rows = associations(kms_stack, key)["Principals"]["Principal"]
    counted = {(row["Principal"], row["ViaService"]): row["UseCount"] for row in rows}
    assert counted == {
        (f"acs:ram::{ACCOUNT_ID}:root", ""): 2,
        (f"acs:ram::{ACCOUNT_ID}:root", "oss"): 1,
        (f"acs:ram::{ACCOUNT_ID}:user/{name}", ""): 1,
    }
    for row in rows:
        assert row["FirstUsed"] <= row["LastUsed"]
    # A failed call is not a use.
    call(root, "DisableKey", {"KeyId": key})
    assert client_error(lambda: encrypt(root, key)).code == "Rejected.Disabled"
    again = associations(kms_stack, key, Days="30")["Principals"]["Principal"]
    assert sum(row["UseCount"] for row in again) == 4


def test_via_service_is_checked(kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    error = client_error(lambda: encrypt(kms_stack.sdk(), key, ViaService="Bad Service"))
    assert error.code == "InvalidParameter"
    assert "ViaService" in error.data["Message"]


def test_registered_resources(kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    query = {"KeyId": key, "Service": "oss", "ResourceId": "bucket/reports"}
    assert call(kms_stack.sdk(), "RegisterKeyAssociation", query)["Registered"] == "true"
    assert call(kms_stack.sdk(), "RegisterKeyAssociation", query)["Registered"] == "false"
    [resource] = associations(kms_stack, key)["Resources"]["Resource"]
    assert (resource["Service"], resource["ResourceId"]) == ("oss", "bucket/reports")
    assert resource["RegisteredBy"] == f"acs:ram::{ACCOUNT_ID}:root"
    assert call(kms_stack.sdk(), "RemoveKeyAssociation", query)["Removed"] == "true"
    assert call(kms_stack.sdk(), "RemoveKeyAssociation", query)["Removed"] == "false"
    assert associations(kms_stack, key)["Resources"]["Resource"] == []

    for bad in ({"Service": "OSS"}, {"ResourceId": "has space"}, {"Service": ""}):
        error = client_error(
            lambda b=bad: call(kms_stack.sdk(), "RegisterKeyAssociation", {**query, **b})  # type: ignore[misc]
        )
        assert error.code in ("InvalidParameter", "MissingParameter")


def test_a_user_needs_permission_to_see_associations(kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    policy = {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:root"]},
                "Action": ["kms:*"],
                "Resource": ["*"],
            }
        ],
    }
    call(kms_stack.sdk(), "SetKeyPolicy", {"KeyId": key, "Policy": json.dumps(policy)})
    name = unique("nosy")
    create_user(kms_stack, name)
    client = kms(kms_stack, *create_access_key(kms_stack, name))
    error = client_error(lambda: call(client, "ListKeyAssociations", {"KeyId": key}))
    assert error.code == "Forbidden.NoPermission"


def test_via_service_reaches_the_proxy_and_the_trail(kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    query = {"KeyId": key, "Plaintext": base64.b64encode(b"via").decode(), "ViaService": "oss"}
    request_id = call(kms_stack.sdk(), "Encrypt", query)["RequestId"]
    assert kms_stack.proxy.audit.for_request(request_id)["viaService"] == "oss"
    deadline = time.monotonic() + 3
    while True:
        events = [
            e for _, e in read_events(kms_stack.audit_path) if e.get("request_id") == request_id
        ]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert events and events[0]["via_service"] == "oss"
