"""``hyok kms`` key state, deletion and tag commands, through CliRunner against the whole chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hyok.cli.kms import kms
from hyok.cli.main import _register
from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server
from tests.integration._ram import role_credentials
from tests.integration._sdk import call
from tests.integration.test_cli_kms_calls import write_up_file

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


class Runner:
    def __init__(self, stack: KmsStack, up_file: Path) -> None:
        self.stack = stack
        self.up_file = up_file
        _register()

    def run(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(kms, [*args, "--up-file", str(self.up_file)], input=input)
        assert self.stack.secret not in result.output
        return result

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def runner(kms_stack: KmsStack, tmp_path: Path) -> Runner:
    return Runner(kms_stack, write_up_file(tmp_path / "hyok-up.json", kms_stack))


def new_key(stack: KmsStack) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def state(stack: KmsStack, key_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = call(stack.sdk(), "DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    return metadata


def test_disable_shows_usage_and_always_asks(runner: Runner, kms_stack: KmsStack) -> None:
    unused = new_key(kms_stack)
    refused = runner.run("disable-key", unused, input="n\n")
    assert refused.exit_code == 1
    assert "has no recorded use in the last 30 days" in refused.stderr
    assert state(kms_stack, unused)["KeyState"] == "Enabled"
    runner.ok("disable-key", unused, "--yes")
    assert state(kms_stack, unused)["KeyState"] == "Disabled"
    assert f"Key {unused} is Enabled." in runner.ok("enable-key", unused)

    used = new_key(kms_stack)
    call(kms_stack.sdk(), "Encrypt", {"KeyId": used, "Plaintext": "dXNlZA=="})
    refused = runner.run("disable-key", used, input="n\n")
    assert refused.exit_code == 1
    assert f"was used in the last 30 days by:\n  acs:ram::{ACCOUNT_ID}:root: 1 use(s)" in (
        refused.stderr
    )
    assert refused.stdout == ""
    assert state(kms_stack, used)["KeyState"] == "Enabled"
    runner.ok("disable-key", used, input="y\n")
    assert state(kms_stack, used)["KeyState"] == "Disabled"
    runner.ok("enable-key", used)
    listed = json.loads(runner.ok("list-key-associations", used, "--output", "json"))
    assert listed["Principals"]["Principal"][0]["UseCount"] == 1
    assert "Principals" in runner.ok("list-key-associations", used, "--days", "1")


def test_protection_schedule_and_cancel(runner: Runner, kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    runner.ok("update-key-description", key, "ledger")
    runner.ok("set-deletion-protection", key, "--enable", "--description", "audit data")
    assert state(kms_stack, key)["DeletionProtection"] == "Enabled"
    refused = runner.run("schedule-key-deletion", key, "--pending-window-days", "7", "--yes")
    assert refused.exit_code == 1
    assert "Rejected.StateModifiedFailed" in refused.stderr
    assert "SetDeletionProtection" in refused.stderr
    runner.ok("set-deletion-protection", key, "--disable")
    out = runner.ok("schedule-key-deletion", key, "--pending-window-days", "7", "--yes")
    assert "cancel-key-deletion" in out
    assert state(kms_stack, key)["KeyState"] == "PendingDeletion"
    runner.ok("cancel-key-deletion", key)
    described = state(kms_stack, key)
    assert (described["KeyState"], described["Description"]) == ("Enabled", "ledger")


def test_window_and_option_checks(runner: Runner, kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    result = runner.run("schedule-key-deletion", key, "--pending-window-days", "6", "--yes")
    assert result.exit_code == 2
    assert "6 is not in the range 7<=x<=366" in result.output
    result = runner.run("set-deletion-protection", key, "--disable", "--description", "x")
    assert result.exit_code == 2
    assert "goes only with --enable" in result.output


def test_tag_commands(runner: Runner, kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    runner.ok("tag-key", key, "--tag", "team=payments", "--tag", "env=prod")
    listed = json.loads(runner.ok("list-key-tags", key, "--output", "json"))
    assert {tag["TagKey"]: tag["TagValue"] for tag in listed["Tags"]["Tag"]} == {
        "team": "payments",
        "env": "prod",
    }
    runner.ok("untag-key", key, "--tag-key", "env")
    assert "team" in runner.ok("list-key-tags", key)
    assert "env" not in runner.ok("list-key-tags", key)
    result = runner.run("tag-key", key, "--tag", "novalue")
    assert result.exit_code == 2
    assert "is not KEY=VALUE" in result.output


def test_owner_repairs_a_locked_key_policy_by_arn(runner: Runner, kms_stack: KmsStack) -> None:
    query = {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "app-1"}
    metadata = call(kms_stack.sdk(), "CreateKey", query)["KeyMetadata"]
    key, arn = metadata["KeyId"], metadata["Arn"]
    lock = {
        "Version": "1",
        "Statement": [
            {
                "Sid": "lock",
                "Effect": "Deny",
                "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:*"]},
                "Action": ["kms:*"],
                "Resource": ["*"],
            }
        ],
    }
    call(kms_stack.sdk(), "SetKeyPolicy", {"KeyId": key, "Policy": json.dumps(lock)})
    # By key ID, finding the account for the role options needs DescribeKey, which is denied.
    result = runner.run("set-key-policy", key, "--user", f"acs:ram::{ACCOUNT_ID}:user/carol")
    assert result.exit_code == 1
    assert "pass the key ARN" in result.stderr
    assert "lock" in runner.ok("get-key-policy", key)
    # By ARN it needs no other call, and the root may always set the policy.
    runner.ok("set-key-policy", arn, "--user", f"acs:ram::{ACCOUNT_ID}:user/carol")
    assert "carol" in call(kms_stack.sdk(), "GetKeyPolicy", {"KeyId": key})["Policy"]
    assert state(kms_stack, key)["KeyId"] == key


def test_cli_signs_with_sts_credentials(runner: Runner, kms_stack: KmsStack) -> None:
    key = new_key(kms_stack)
    credentials = role_credentials(kms_stack, "cli-sts")
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": credentials.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": credentials.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": credentials.security_token,
    }
    result = CliRunner().invoke(
        kms, ["describe-key", key, "--up-file", str(runner.up_file), "--output", "json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["KeyMetadata"]["KeyId"] == key
    assert credentials.security_token not in result.output

    only_token = {"ALIBABA_CLOUD_SECURITY_TOKEN": credentials.security_token}
    result = CliRunner().invoke(
        kms, ["describe-key", key, "--up-file", str(runner.up_file)], env=only_token
    )
    assert result.exit_code == 1
    assert "ALIBABA_CLOUD_SECURITY_TOKEN is set without ALIBABA_CLOUD_ACCESS_KEY_ID" in (
        result.stderr
    )
