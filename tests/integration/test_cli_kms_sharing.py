"""``hyok kms`` key policy role options and instance sharing commands, against the real chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy
from tests.integration._kms import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    KmsStack,
    kms_stack,
    postgres_server,
)
from tests.integration.test_cli_kms_calls import Cli, Sensitive, write_up_file

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

ADMIN = f"acs:ram::{ACCOUNT_ID}:user/admin"
USER = f"acs:ram::{ACCOUNT_ID}:role/app"
FOREIGN_USER = f"acs:ram::{OTHER_ACCOUNT_ID}:user/carol"


@pytest.fixture
def cli(kms_stack: KmsStack, tmp_path: Path, sensitive: Sensitive) -> Cli:
    sensitive(kms_stack.secret)
    empty = tmp_path / "no-stack"
    empty.mkdir()
    return Cli(kms_stack, write_up_file(tmp_path / "hyok-up.json", kms_stack), empty)


def test_create_key_with_role_options(cli: Cli) -> None:
    created = cli.json(
        [
            "create-key",
            "--external-key-id",
            "app-1",
            "--administrator",
            ADMIN,
            "--user",
            USER,
            "--cross-account-user",
            FOREIGN_USER,
        ]
    )
    key_id = created["KeyMetadata"]["KeyId"]
    expected = build_role_policy(
        ACCOUNT_ID,
        KeyPolicyRoles(administrators=(ADMIN,), users=(USER,), cross_account_users=(FOREIGN_USER,)),
    )
    assert cli.json(["get-key-policy", key_id])["Policy"] == expected

    table = cli.ok(["get-key-policy", key_id]).stdout
    roles = table.split('"Statement"')[1]
    for name in ("Administrators", "Users", "CrossAccountUsers"):
        assert name in roles
    row = next(line for line in roles.splitlines() if "CrossAccountUsers" in line)
    assert FOREIGN_USER in row


def test_cross_account_users_alone_take_the_caller_account(cli: Cli) -> None:
    created = cli.json(
        ["create-key", "--external-key-id", "app-1", "--cross-account-user", FOREIGN_USER]
    )
    policy = cli.json(["get-key-policy", created["KeyMetadata"]["KeyId"]])["Policy"]
    assert policy == build_role_policy(
        ACCOUNT_ID, KeyPolicyRoles(cross_account_users=(FOREIGN_USER,))
    )


def test_set_key_policy_from_roles_or_file(cli: Cli, tmp_path: Path) -> None:
    key_id = cli.json(["create-key", "--external-key-id", "app-1"])["KeyMetadata"]["KeyId"]
    assert "Replaced the policy" in cli.ok(["set-key-policy", key_id, "--user", USER]).stdout
    assert cli.json(["get-key-policy", key_id])["Policy"] == build_role_policy(
        ACCOUNT_ID, KeyPolicyRoles(users=(USER,))
    )

    document = {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:*"]},
                "Action": ["kms:*"],
                "Resource": ["*"],
            }
        ],
    }
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(document), encoding="utf-8")
    cli.ok(["set-key-policy", key_id, "--policy-file", str(policy_file)])
    assert json.loads(cli.json(["get-key-policy", key_id])["Policy"]) == document


def test_role_option_errors(cli: Cli, tmp_path: Path) -> None:
    key_id = cli.json(["create-key", "--external-key-id", "app-1"])["KeyMetadata"]["KeyId"]
    policy_file = tmp_path / "policy.json"
    policy_file.write_text("{}", encoding="utf-8")
    both = cli.run(["set-key-policy", key_id, "--policy-file", str(policy_file), "--user", USER])
    assert both.exit_code == 2
    assert "not both" in both.stderr
    neither = cli.run(["set-key-policy", key_id])
    assert neither.exit_code == 2
    assert "no policy given" in neither.stderr
    # A user of another account belongs under --cross-account-user.
    wrong = cli.run(["set-key-policy", key_id, "--user", FOREIGN_USER])
    assert wrong.exit_code == 2
    assert "--user[0]" in wrong.stderr
    assert "cross-account" in wrong.stderr


def test_instance_share_commands(cli: Cli) -> None:
    instance_id = cli.json(["instance", "create", "--share-quota", "3"])["KmsInstanceId"]
    quota = cli.json(["instance", "quota", instance_id])
    assert quota["KmsInstanceQuotaInfos"] == [
        {"ResourceType": "share", "ResourceQuota": 3, "UsedQuantity": 0}
    ]
    assert "0 of 4 accounts" in cli.ok(["instance", "quota", instance_id, "--set", "4"]).stdout

    assert "is not shared" in cli.ok(["instance", "shares", instance_id]).stdout
    cli.ok(["instance", "share", instance_id, OTHER_ACCOUNT_ID])
    listed = cli.json(["instance", "shares", instance_id])["Shares"]["Share"]
    assert [item["AccountId"] for item in listed] == [OTHER_ACCOUNT_ID]
    assert OTHER_ACCOUNT_ID in cli.ok(["instance", "shares", instance_id]).stdout

    cli.ok(["instance", "unshare", instance_id, OTHER_ACCOUNT_ID])
    assert cli.json(["instance", "shares", instance_id])["TotalCount"] == 0
    error = cli.fail(["instance", "unshare", instance_id, OTHER_ACCOUNT_ID])
    assert "Forbidden.ResourceNotFound" in error
