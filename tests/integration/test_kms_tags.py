"""Tags on keys through the official SDK: the rules, atomic batches, and the kms:tag condition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy
from tests.integration._kms import ACCOUNT_ID, REGION, KmsStack, kms_stack, postgres_server
from tests.integration._ram import create_access_key, create_user, kms, unique
from tests.integration._sdk import call, client_error

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def create_key(stack: KmsStack, **extra: str) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1", **extra}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def tags_of(stack: KmsStack, key_id: str) -> dict[str, str]:
    body = call(stack.sdk(), "ListResourceTags", {"KeyId": key_id})
    return {tag["TagKey"]: tag["TagValue"] for tag in body["Tags"]["Tag"]}


def tag(stack: KmsStack, key_id: str, tags: dict[str, str]) -> dict[str, Any]:
    document = json.dumps([{"TagKey": k, "TagValue": v} for k, v in tags.items()])
    return call(stack.sdk(), "TagResource", {"KeyId": key_id, "Tags": document})


def error_of(stack: KmsStack, action: str, query: dict[str, str]) -> Any:
    return client_error(lambda: call(stack.sdk(), action, query))


def test_tag_untag_and_list(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack, Tags=json.dumps([{"TagKey": "team", "TagValue": "payments"}]))
    assert tags_of(kms_stack, key) == {"team": "payments"}
    tag(kms_stack, key, {"team": "billing", "env": "prod one", "path": "a/b\\c_d-e.f+g=h:i@j"})
    assert tags_of(kms_stack, key) == {
        "team": "billing",
        "env": "prod one",
        "path": "a/b\\c_d-e.f+g=h:i@j",
    }
    call(kms_stack.sdk(), "UntagResource", {"KeyId": key, "TagKeys": '["team","absent"]'})
    assert set(tags_of(kms_stack, key)) == {"env", "path"}
    call(kms_stack.sdk(), "UntagResource", {"KeyId": key, "TagKeys": "env, path"})
    assert tags_of(kms_stack, key) == {}


@pytest.mark.parametrize(
    ("tags", "code", "fragment"),
    [
        ({"aliyun-x": "v"}, "InvalidParameter.TagKey", "reserved"),
        ({"ACS:x": "v"}, "InvalidParameter.TagKey", "reserved"),
        ({"k" * 129: "v"}, "InvalidParameter.TagKey", "1 to 128"),
        ({"ok": "v" * 129}, "InvalidParameter.TagValue", "0 to 128"),
        ({"bad#key": "v"}, "InvalidParameter.TagKey", "bad#key"),
        ({"ok": "bad\nvalue"}, "InvalidParameter.TagValue", "0 to 128"),
    ],
)
def test_one_bad_tag_changes_nothing(
    kms_stack: KmsStack, tags: dict[str, str], code: str, fragment: str
) -> None:
    key = create_key(kms_stack)
    tag(kms_stack, key, {"keep": "1"})
    error = client_error(lambda: tag(kms_stack, key, {"good": "1", **tags}))
    assert error.code == code
    assert fragment in error.data["Message"]
    assert tags_of(kms_stack, key) == {"keep": "1"}


def test_at_most_twenty_tags_per_key(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    tag(kms_stack, key, {f"k{index}": "v" for index in range(15)})
    error = client_error(lambda: tag(kms_stack, key, {f"n{index}": "v" for index in range(6)}))
    assert error.code == "InvalidParameter"
    assert "21 tags" in error.data["Message"]
    assert len(tags_of(kms_stack, key)) == 15
    # Replacing values of existing keys does not count twice.
    tag(kms_stack, key, {f"k{index}": "w" for index in range(15)} | {"n0": "v"})
    assert len(tags_of(kms_stack, key)) == 16


def test_batch_tagging_is_all_or_nothing(kms_stack: KmsStack) -> None:
    first, second = create_key(kms_stack), create_key(kms_stack)
    call(
        kms_stack.sdk(),
        "TagResources",
        {
            "RegionId": REGION,
            "ResourceType": "key",
            "ResourceId.1": first,
            "ResourceId.2": second,
            "Tag.1.Key": "team",
            "Tag.1.Value": "ops",
        },
    )
    assert tags_of(kms_stack, first) == tags_of(kms_stack, second) == {"team": "ops"}

    missing = "key-hzz00000000000000000000"
    error = error_of(
        kms_stack,
        "TagResources",
        {
            "RegionId": REGION,
            "ResourceType": "key",
            "ResourceId.1": first,
            "ResourceId.2": missing,
            "Tag.1.Key": "more",
            "Tag.1.Value": "x",
        },
    )
    assert error.code == "Forbidden.KeyNotFound"
    assert tags_of(kms_stack, first) == {"team": "ops"}

    listed = call(
        kms_stack.sdk(),
        "ListTagResources",
        {"RegionId": REGION, "ResourceType": "key", "ResourceId.1": first, "ResourceId.2": second},
    )
    rows = listed["TagResources"]["TagResource"]
    assert {(row["ResourceId"], row["TagKey"]) for row in rows} == {
        (first, "team"),
        (second, "team"),
    }
    assert listed["NextToken"] == ""

    call(
        kms_stack.sdk(),
        "UntagResources",
        {"RegionId": REGION, "ResourceType": "key", "ResourceId.1": first, "All": "true"},
    )
    assert tags_of(kms_stack, first) == {}
    assert tags_of(kms_stack, second) == {"team": "ops"}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (
            {"ResourceType": "secret", "ResourceId.1": "KEY", "Tag.1.Key": "a"},
            "UnsupportedOperation",
        ),
        ({"ResourceType": "key", "ResourceId.1": "KEY"}, "MissingParameter"),
        ({"ResourceType": "key", "Tag.1.Key": "a"}, "MissingParameter"),
    ],
)
def test_batch_parameter_errors(kms_stack: KmsStack, query: dict[str, str], code: str) -> None:
    key = create_key(kms_stack)
    resolved = {"RegionId": REGION} | {k: key if v == "KEY" else v for k, v in query.items()}
    assert error_of(kms_stack, "TagResources", resolved).code == code


def test_secrets_are_not_tagged_here(kms_stack: KmsStack) -> None:
    error = error_of(kms_stack, "TagResource", {"SecretName": "s", "Tags": "[]"})
    assert error.code == "UnsupportedOperation"


def test_pending_deletion_keys_refuse_tag_changes(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    call(kms_stack.sdk(), "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": "7"})
    error = client_error(lambda: tag(kms_stack, key, {"a": "b"}))
    assert (error.code, error.status_code) == ("Rejected.PendingDeletion", 409)
    assert tags_of(kms_stack, key) == {}


def test_kms_tag_condition_uses_the_key_tags(kms_stack: KmsStack) -> None:
    """A key policy that allows a user only on keys tagged team=payments follows the tags."""
    name = unique("tagged")
    create_user(kms_stack, name)
    client = kms(kms_stack, *create_access_key(kms_stack, name))
    policy = json.loads(
        build_role_policy(ACCOUNT_ID, KeyPolicyRoles(users=(f"acs:ram::{ACCOUNT_ID}:user/{name}",)))
    )
    for statement in policy["Statement"]:
        statement["Condition"] = {"StringEquals": {"kms:tag/team": "payments"}}
    key = create_key(kms_stack, Policy=json.dumps(policy))
    query = {"KeyId": key, "Plaintext": "aGk="}
    assert client_error(lambda: call(client, "Encrypt", query)).code == "Forbidden.NoPermission"
    tag(kms_stack, key, {"team": "payments"})
    assert call(client, "Encrypt", query)["KeyId"] == key
