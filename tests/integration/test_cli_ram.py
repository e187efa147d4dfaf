"""The ``hyok ram`` and ``hyok sts`` commands against a real KMS on loopback.

The commands run in-process through click's CliRunner, with the endpoint,
CA and AccessKey given by options and the SDK's environment variables.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hyok.cli._kms_api import ACCESS_KEY_ID_ENV, ACCESS_KEY_SECRET_ENV
from hyok.cli.ram import ram, sts
from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


@click.group()
def hyok() -> None:
    """The two groups as ``hyok`` registers them."""


hyok.add_command(ram)
hyok.add_command(sts)


def run(stack: KmsStack, args: list[str], *, key: tuple[str, str] | None = None) -> Any:
    key_id, secret = key or (stack.access_key_id, stack.secret)
    where = ["--endpoint", f"127.0.0.1:{stack.port}", "--ca-cert", str(stack.ca_file)]
    env = {ACCESS_KEY_ID_ENV: key_id, ACCESS_KEY_SECRET_ENV: secret, "COLUMNS": "200"}
    result = CliRunner().invoke(hyok, [*args, *where, "--output", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fail(stack: KmsStack, args: list[str], exit_code: int = 1) -> str:
    where = ["--endpoint", f"127.0.0.1:{stack.port}", "--ca-cert", str(stack.ca_file)]
    env = {ACCESS_KEY_ID_ENV: stack.access_key_id, ACCESS_KEY_SECRET_ENV: stack.secret}
    result = CliRunner().invoke(hyok, [*args, *where], env=env)
    assert result.exit_code == exit_code, result.output
    return str(result.stderr)


def test_cli_identity_flow(kms_stack: KmsStack, tmp_path: Path) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    role = f"cli-role-{uuid.uuid4().hex[:8]}"
    policy = f"cli-assume-{uuid.uuid4().hex[:8]}"
    role_arn = f"acs:ram::{ACCOUNT_ID}:role/{role}"

    assert run(kms_stack, ["ram", "user", "create", user])["User"]["UserName"] == user
    assert run(kms_stack, ["ram", "user", "get", user])["User"]["UserName"] == user
    listed = run(kms_stack, ["ram", "user", "list"])["Users"]["User"]
    assert user in [item["UserName"] for item in listed]

    key = run(kms_stack, ["ram", "access-key", "create", "--user", user])["AccessKey"]
    keys = run(kms_stack, ["ram", "access-key", "list", "--user", user])
    assert [item["AccessKeyId"] for item in keys["AccessKeys"]["AccessKey"]] == [key["AccessKeyId"]]

    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps(
            {
                "Version": "1",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"RAM": f"acs:ram::{ACCOUNT_ID}:root"},
                    }
                ],
            }
        )
    )
    created = run(kms_stack, ["ram", "role", "create", role, "--trust-policy", str(trust)])
    assert created["Role"]["Arn"] == role_arn
    assert run(kms_stack, ["ram", "role", "get", role])["Role"]["RoleName"] == role

    document = tmp_path / "policy.json"
    document.write_text(
        json.dumps(
            {
                "Version": "1",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}
                ],
            }
        )
    )
    run(kms_stack, ["ram", "policy", "create", policy, "--document", str(document)])
    assert run(kms_stack, ["ram", "policy", "get", policy])["Policy"]["PolicyName"] == policy
    run(kms_stack, ["ram", "policy", "attach", policy, "--user", user])
    attached = run(kms_stack, ["ram", "policy", "list-for-user", user])["Policies"]["Policy"]
    assert [item["PolicyName"] for item in attached] == [policy]

    credentials = run(
        kms_stack,
        ["sts", "assume-role", role_arn, "--session-name", "cli", "--duration-seconds", "900"],
        key=(key["AccessKeyId"], key["AccessKeySecret"]),
    )["Credentials"]
    assert credentials["AccessKeyId"].startswith("STS.")

    error = fail(kms_stack, ["ram", "user", "delete", user])
    assert "DeleteConflict.User.AccessKey" in error
    error = fail(kms_stack, ["ram", "policy", "attach", policy, "--user", user, "--role", role], 2)
    assert "exactly one of --user and --role" in error

    run(kms_stack, ["ram", "policy", "detach", policy, "--user", user])
    run(kms_stack, ["ram", "policy", "delete", policy])
    run(kms_stack, ["ram", "access-key", "delete", "--user", user, key["AccessKeyId"]])
    run(kms_stack, ["ram", "user", "delete", user])
    run(kms_stack, ["ram", "role", "delete", role])
    error = fail(kms_stack, ["ram", "role", "get", role])
    assert "EntityNotExist.Role" in error


def run_with_input(stack: KmsStack, args: list[str], text: str, exit_code: int = 0) -> Any:
    where = ["--endpoint", f"127.0.0.1:{stack.port}", "--ca-cert", str(stack.ca_file)]
    env = {ACCESS_KEY_ID_ENV: stack.access_key_id, ACCESS_KEY_SECRET_ENV: stack.secret}
    result = CliRunner().invoke(hyok, [*args, *where, "--output", "json"], env=env, input=text)
    assert result.exit_code == exit_code, result.output
    return result


def test_cli_login_profile_flow(kms_stack: KmsStack, tmp_path: Path) -> None:
    from hyok.common.secrets import Secret
    from hyok.kms.ram import ConsoleSignInError, LoginProfileService
    from tests.conftest import register_sensitive

    first, second, third = "Cli-console-pass-1", "Cli-console-pass-2", "Cli-console-pass-3"
    for value in (first, second, third):
        register_sensitive(value)
    user = f"cli-lp-{uuid.uuid4().hex[:8]}"
    service = LoginProfileService(kms_stack.store)
    run(kms_stack, ["ram", "user", "create", user])

    # The password comes from standard input when it is not a terminal.
    created = run_with_input(
        kms_stack,
        ["ram", "login-profile", "create", user, "--password-reset-required"],
        f"{first}\n",
    )
    assert first not in created.output
    profile = json.loads(created.stdout)["LoginProfile"]
    assert profile["UserName"] == user
    assert profile["PasswordResetRequired"] is True
    assert service.sign_in(f"{user}@{ACCOUNT_ID}", Secret(first)).name == user

    fetched = run(kms_stack, ["ram", "login-profile", "get", user])["LoginProfile"]
    assert fetched["MFABindRequired"] is False

    password_file = tmp_path / "password.txt"
    password_file.write_text(f"{second}\n")
    run(kms_stack, ["ram", "login-profile", "update", user, "--password-file", str(password_file)])
    with pytest.raises(ConsoleSignInError):
        service.sign_in(f"{user}@{ACCOUNT_ID}", Secret(first))
    assert service.sign_in(f"{user}@{ACCOUNT_ID}", Secret(second)).name == user

    run_with_input(
        kms_stack,
        ["ram", "login-profile", "update", user, "--password-file", "-"],
        f"{third}\r\n",
    )
    assert service.sign_in(f"{user}@{ACCOUNT_ID}", Secret(third)).name == user
    run(kms_stack, ["ram", "login-profile", "update", user, "--no-password-reset-required"])
    fetched = run(kms_stack, ["ram", "login-profile", "get", user])["LoginProfile"]
    assert fetched["PasswordResetRequired"] is False
    assert service.sign_in(f"{user}@{ACCOUNT_ID}", Secret(third)).name == user

    error = fail(kms_stack, ["ram", "login-profile", "update", user], 2)
    assert "nothing to update" in error
    weak = run_with_input(
        kms_stack, ["ram", "login-profile", "update", user, "--change-password"], "weakpass\n", 1
    )
    assert "InvalidParameter.Password.Weak" in weak.stderr
    assert "weakpass" not in weak.output
    empty = run_with_input(kms_stack, ["ram", "login-profile", "create", user], "\n", 1)
    assert "no password in standard input" in empty.stderr

    error = fail(kms_stack, ["ram", "user", "delete", user])
    assert "DeleteConflict.User.LoginProfile" in error
    run(kms_stack, ["ram", "login-profile", "delete", user])
    error = fail(kms_stack, ["ram", "login-profile", "get", user])
    assert "EntityNotExist.User.LoginProfile" in error
    run(kms_stack, ["ram", "user", "delete", user])
