"""The audit event of a successful CreateKey names the new key, and a failed one names none."""

from __future__ import annotations

import pytest

from tests.integration._kms import KmsStack, kms_stack, postgres_server
from tests.integration._sdk import call, client_error
from tests.integration.test_kms_audit import event_for

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def test_create_key_event_names_the_new_key(kms_stack: KmsStack) -> None:
    created = call(
        kms_stack.sdk(),
        "CreateKey",
        {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "app-1"},
    )
    event = event_for(kms_stack, created["RequestId"])
    assert (event["action"], event["outcome"]) == ("CreateKey", "success")
    assert event["key_ids"] == [created["KeyMetadata"]["KeyId"]]

    error = client_error(
        lambda: call(
            kms_stack.sdk(),
            "CreateKey",
            {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "no-such-key"},
        )
    )
    failed = event_for(kms_stack, error.data["RequestId"])
    assert failed["outcome"] == "failed"
    assert failed["key_ids"] == []
