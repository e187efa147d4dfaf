"""Key lifecycle through the official SDK: description, deletion protection, deletion, sweeping.

The sweeper runs in the test process against the stack's store, with a clock
moved past the deletion date, as a KMS node would run it later.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hyok.kms.sweeper import SWEEP_JOB, KeyDeletionSweeper
from tests.integration._kms import KmsStack, kms_stack, postgres_server
from tests.integration._sdk import call, client_error

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def create_key(stack: KmsStack) -> dict[str, Any]:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    metadata: dict[str, Any] = call(stack.sdk(), "CreateKey", query)["KeyMetadata"]
    return metadata


def describe(stack: KmsStack, key_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = call(stack.sdk(), "DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    return metadata


def error_of(stack: KmsStack, action: str, query: dict[str, str]) -> Any:
    return client_error(lambda: call(stack.sdk(), action, query))


def schedule(stack: KmsStack, key_id: str, days: int = 7) -> None:
    call(stack.sdk(), "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": str(days)})


def encrypt(stack: KmsStack, key_id: str) -> str:
    query = {"KeyId": key_id, "Plaintext": base64.b64encode(b"lifecycle").decode()}
    blob: str = call(stack.sdk(), "Encrypt", query)["CiphertextBlob"]
    return blob


# --- UpdateKeyDescription -----------------------------------------------------------------


def test_update_key_description(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    call(kms_stack.sdk(), "UpdateKeyDescription", {"KeyId": key, "Description": "payments"})
    assert describe(kms_stack, key)["Description"] == "payments"
    call(kms_stack.sdk(), "UpdateKeyDescription", {"KeyId": key, "Description": ""})
    assert describe(kms_stack, key)["Description"] == ""

    error = error_of(kms_stack, "UpdateKeyDescription", {"KeyId": key})
    assert error.code == "MissingParameter"
    assert "Description" in error.data["Message"]
    error = error_of(kms_stack, "UpdateKeyDescription", {"KeyId": key, "Description": "x" * 8193})
    assert error.code == "InvalidParameter"

    schedule(kms_stack, key)
    error = error_of(kms_stack, "UpdateKeyDescription", {"KeyId": key, "Description": "late"})
    assert error.code == "Rejected.PendingDeletion"
    assert error.status_code == 409
    assert "CancelKeyDeletion" in error.data["Message"]


# --- Deletion protection ------------------------------------------------------------------


def test_deletion_protection_blocks_scheduling_until_lifted(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)
    arn, key_id = key["Arn"], key["KeyId"]
    call(
        kms_stack.sdk(),
        "SetDeletionProtection",
        {
            "ProtectedResourceArn": arn,
            "EnableDeletionProtection": "true",
            "DeletionProtectionDescription": "used by billing",
        },
    )
    described = describe(kms_stack, key_id)
    assert described["DeletionProtection"] == "Enabled"
    assert described["DeletionProtectionDescription"] == "used by billing"

    error = error_of(
        kms_stack, "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "7"}
    )
    assert error.code == "Rejected.StateModifiedFailed"
    assert "SetDeletionProtection" in error.data["Message"]
    assert "EnableDeletionProtection=false" in error.data["Message"]
    assert describe(kms_stack, key_id)["KeyState"] == "Enabled"

    call(
        kms_stack.sdk(),
        "SetDeletionProtection",
        {"ProtectedResourceArn": arn, "EnableDeletionProtection": "false"},
    )
    described = describe(kms_stack, key_id)
    assert described["DeletionProtection"] == "Disabled"
    assert described["DeletionProtectionDescription"] == ""
    schedule(kms_stack, key_id)
    assert describe(kms_stack, key_id)["KeyState"] == "PendingDeletion"

    error = error_of(
        kms_stack,
        "SetDeletionProtection",
        {"ProtectedResourceArn": arn, "EnableDeletionProtection": "true"},
    )
    assert error.code == "Rejected.StateModifiedFailed"


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ({"EnableDeletionProtection": "true"}, "MissingParameter", "ProtectedResourceArn"),
        (
            {"ProtectedResourceArn": "key-abc", "EnableDeletionProtection": "true"},
            "InvalidParameter",
            "key ARN",
        ),
        ({"ProtectedResourceArn": "ARN"}, "MissingParameter", "EnableDeletionProtection"),
        (
            {
                "ProtectedResourceArn": "ARN",
                "EnableDeletionProtection": "false",
                "DeletionProtectionDescription": "why",
            },
            "InvalidParameter",
            "only for enabling",
        ),
    ],
)
def test_set_deletion_protection_errors(
    kms_stack: KmsStack, query: dict[str, str], code: str, fragment: str
) -> None:
    arn = create_key(kms_stack)["Arn"]
    resolved = {name: arn if value == "ARN" else value for name, value in query.items()}
    error = error_of(kms_stack, "SetDeletionProtection", resolved)
    assert error.code == code
    assert fragment in error.data["Message"]


# --- ScheduleKeyDeletion and CancelKeyDeletion --------------------------------------------


def test_schedule_and_cancel_follow_the_state_matrix(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    before = datetime.now(UTC)
    schedule(kms_stack, key, days=30)
    described = describe(kms_stack, key)
    assert described["KeyState"] == "PendingDeletion"
    delete_date = datetime.strptime(described["DeleteDate"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    assert before + timedelta(days=30, seconds=-2) <= delete_date
    assert delete_date <= before + timedelta(days=30, seconds=60)

    error = client_error(lambda: encrypt(kms_stack, key))
    assert (error.code, error.status_code) == ("Rejected.PendingDeletion", 409)
    for action in ("EnableKey", "DisableKey"):
        assert error_of(kms_stack, action, {"KeyId": key}).code == "Rejected.StateModifiedFailed"
    error = error_of(kms_stack, "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": "7"})
    assert error.code == "Rejected.StateModifiedFailed"
    assert "already pending deletion" in error.data["Message"]

    call(kms_stack.sdk(), "CancelKeyDeletion", {"KeyId": key})
    described = describe(kms_stack, key)
    assert described["KeyState"] == "Enabled"
    assert "DeleteDate" not in described
    assert encrypt(kms_stack, key)

    error = error_of(kms_stack, "CancelKeyDeletion", {"KeyId": key})
    assert error.code == "Rejected.StateModifiedFailed"
    assert "not pending deletion" in error.data["Message"]

    # A Disabled key may be scheduled too, and comes back Enabled when cancelled.
    call(kms_stack.sdk(), "DisableKey", {"KeyId": key})
    schedule(kms_stack, key)
    call(kms_stack.sdk(), "CancelKeyDeletion", {"KeyId": key})
    assert describe(kms_stack, key)["KeyState"] == "Enabled"


@pytest.mark.parametrize("days", ["6", "367", "0", "seven", ""])
def test_pending_window_is_checked(kms_stack: KmsStack, days: str) -> None:
    key = create_key(kms_stack)["KeyId"]
    error = error_of(kms_stack, "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": days})
    assert error.code in ("InvalidParameter", "MissingParameter")
    assert "PendingWindowInDays" in error.data["Message"]
    assert describe(kms_stack, key)["KeyState"] == "Enabled"


# --- The sweeper ----------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sweeper_at(stack: KmsStack, when: datetime) -> KeyDeletionSweeper:
    return KeyDeletionSweeper(dataclasses.replace(stack.services, clock=lambda: when))


@pytest.mark.anyio
async def test_sweeper_deletes_due_keys_only(kms_stack: KmsStack) -> None:
    due = create_key(kms_stack)["KeyId"]
    later = create_key(kms_stack)["KeyId"]
    cancelled = create_key(kms_stack)["KeyId"]
    blob = encrypt(kms_stack, due)
    schedule(kms_stack, due, days=7)
    schedule(kms_stack, later, days=30)
    schedule(kms_stack, cancelled, days=7)
    call(kms_stack.sdk(), "CancelKeyDeletion", {"KeyId": cancelled})

    now = datetime.now(UTC)
    assert await sweeper_at(kms_stack, now + timedelta(days=6)).run_once() == 0
    assert describe(kms_stack, due)["KeyState"] == "PendingDeletion"

    deleted = await sweeper_at(kms_stack, now + timedelta(days=8)).run_once()
    assert deleted is not None and deleted >= 1
    for action, query in (
        ("DescribeKey", {"KeyId": due}),
        ("Encrypt", {"KeyId": due, "Plaintext": "eA=="}),
        ("Decrypt", {"CiphertextBlob": blob}),
    ):
        assert error_of(kms_stack, action, query).code == "Forbidden.KeyNotFound", action
    assert describe(kms_stack, later)["KeyState"] == "PendingDeletion"
    assert describe(kms_stack, cancelled)["KeyState"] == "Enabled"

    # The external key stays in the key manager: deletion touched only KMS metadata.
    manager = kms_stack.data.open_keystore()
    try:
        assert "app-1" in [info.key_id for info in manager.list_keys()]
    finally:
        manager.close()


@pytest.mark.anyio
async def test_sweeper_skips_a_round_another_node_holds(kms_stack: KmsStack) -> None:
    """On PostgreSQL a held job lock makes the round skip; SQLite serves one node and has none."""
    key = create_key(kms_stack)["KeyId"]
    schedule(kms_stack, key, days=7)
    sweeper = sweeper_at(kms_stack, datetime.now(UTC) + timedelta(days=8))
    with kms_stack.store.try_job_lock(SWEEP_JOB) as acquired:
        assert acquired
        if kms_stack.database == "postgresql":
            assert await sweeper.run_once() is None
            assert describe(kms_stack, key)["KeyState"] == "PendingDeletion"
        else:
            # SQLite takes no lock, so a second sweeper on the machine would sweep too.
            assert kms_stack.store.database.dialect == "sqlite"
    assert (await sweeper.run_once() or 0) >= 1
    assert error_of(kms_stack, "DescribeKey", {"KeyId": key}).code == "Forbidden.KeyNotFound"


def expect(stack: KmsStack, action: str, query: dict[str, str], code: str | None) -> None:
    """Call ``action``; it must succeed (``code`` None) or fail with ``code``."""
    if code is None:
        call(stack.sdk(), action, query)
        return
    error = error_of(stack, action, query)
    assert error.code == code, (action, error.data)


@pytest.mark.anyio
async def test_the_whole_state_walk_with_the_state_matrix(kms_stack: KmsStack) -> None:
    """Enabled → Disabled → Enabled → PendingDeletion → Enabled → PendingDeletion → deleted."""
    key = create_key(kms_stack)["KeyId"]
    blob = encrypt(kms_stack, key)
    plain = base64.b64encode(b"walk").decode()
    alias = f"alias/walk-{key[-8:]}"
    schedule_query = {"KeyId": key, "PendingWindowInDays": "7"}
    state_failed, disabled, pending = (
        "Rejected.StateModifiedFailed",
        "Rejected.Disabled",
        "Rejected.PendingDeletion",
    )

    def matrix(rows: list[tuple[str, dict[str, str], str | None]]) -> None:
        for action, query, code in rows:
            expect(kms_stack, action, query, code)

    matrix(
        [
            ("Encrypt", {"KeyId": key, "Plaintext": plain}, None),
            ("CancelKeyDeletion", {"KeyId": key}, state_failed),
            ("CreateAlias", {"AliasName": alias, "KeyId": key}, None),
        ]
    )
    call(kms_stack.sdk(), "DisableKey", {"KeyId": key})
    matrix(
        [
            ("Encrypt", {"KeyId": key, "Plaintext": plain}, disabled),
            ("Decrypt", {"CiphertextBlob": blob}, disabled),
            ("GenerateDataKey", {"KeyId": key}, disabled),
            ("UpdateKeyDescription", {"KeyId": key, "Description": "off"}, None),
            ("CancelKeyDeletion", {"KeyId": key}, state_failed),
            ("DescribeKey", {"KeyId": alias}, None),
        ]
    )
    call(kms_stack.sdk(), "EnableKey", {"KeyId": key})
    expect(kms_stack, "Decrypt", {"CiphertextBlob": blob}, None)
    call(kms_stack.sdk(), "ScheduleKeyDeletion", schedule_query)
    pending_rows: list[tuple[str, dict[str, str], str | None]] = [
        ("Encrypt", {"KeyId": key, "Plaintext": plain}, pending),
        ("Decrypt", {"CiphertextBlob": blob}, pending),
        ("GenerateDataKey", {"KeyId": key}, pending),
        ("EnableKey", {"KeyId": key}, state_failed),
        ("DisableKey", {"KeyId": key}, state_failed),
        ("ScheduleKeyDeletion", schedule_query, state_failed),
        ("UpdateKeyDescription", {"KeyId": key, "Description": "late"}, pending),
        ("TagResource", {"KeyId": key, "Tags": '[{"TagKey":"a","TagValue":"b"}]'}, pending),
        ("CreateAlias", {"AliasName": alias + "-2", "KeyId": key}, state_failed),
        ("DescribeKey", {"KeyId": key}, None),
        ("ListAliasesByKeyId", {"KeyId": key}, None),
    ]
    matrix(pending_rows)
    call(kms_stack.sdk(), "CancelKeyDeletion", {"KeyId": key})
    expect(kms_stack, "Encrypt", {"KeyId": key, "Plaintext": plain}, None)
    call(kms_stack.sdk(), "ScheduleKeyDeletion", schedule_query)
    matrix(pending_rows)

    deleted = await sweeper_at(kms_stack, datetime.now(UTC) + timedelta(days=8)).run_once()
    assert deleted is not None and deleted >= 1
    matrix(
        [
            ("DescribeKey", {"KeyId": key}, "Forbidden.KeyNotFound"),
            ("Decrypt", {"CiphertextBlob": blob}, "Forbidden.KeyNotFound"),
            ("DescribeKey", {"KeyId": alias}, "Forbidden.AliasNotFound"),
        ]
    )
