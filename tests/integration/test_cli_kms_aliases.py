"""``hyok kms alias`` through click's CliRunner, against the whole chain of ``_kms``.

Each test runs on SQLite and on PostgreSQL. Output is checked for the
AccessKey secret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from hyok.cli._kms_api import ACCESS_KEY_ID_ENV, ACCESS_KEY_SECRET_ENV
from hyok.cli.kms_calls import register
from tests.integration._kms import ACCOUNT_ID, REGION, KmsStack, kms_stack, postgres_server
from tests.integration._sdk import call

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


@click.group()
def kms() -> None:
    """The API commands in a group of their own, as ``hyok kms`` registers them."""


register(kms)


def run(stack: KmsStack, tmp_path: Path, args: Sequence[str]) -> Result:
    result = CliRunner().invoke(
        kms,
        [*args, "--endpoint", f"127.0.0.1:{stack.port}", "--ca-cert", str(stack.ca_file)],
        env={
            "COLUMNS": "200",
            "HYOK_DATA_DIR": str(tmp_path),
            ACCESS_KEY_ID_ENV: stack.access_key_id,
            ACCESS_KEY_SECRET_ENV: stack.secret,
        },
    )
    assert stack.secret not in result.output
    return result


def ok(stack: KmsStack, tmp_path: Path, args: Sequence[str]) -> str:
    result = run(stack, tmp_path, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(stack: KmsStack, tmp_path: Path, args: Sequence[str]) -> Any:
    return json.loads(ok(stack, tmp_path, [*args, "--output", "json"]))


def create_key(stack: KmsStack) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def test_alias_commands(kms_stack: KmsStack, tmp_path: Path) -> None:
    first, second = create_key(kms_stack), create_key(kms_stack)
    name = f"alias/cli-{uuid.uuid4().hex[:12]}"

    output = ok(kms_stack, tmp_path, ["alias", "create", name, first])
    assert output == f"Created alias {name} for key {first}.\n"
    listed = as_json(kms_stack, tmp_path, ["alias", "list", "--key-id", first])
    assert listed["Aliases"]["Alias"] == [
        {
            "AliasName": name,
            "AliasArn": f"acs:kms:{REGION}:{ACCOUNT_ID}:{name}",
            "KeyId": first,
        }
    ]
    assert listed["TotalCount"] == 1

    ok(kms_stack, tmp_path, ["alias", "update", name, second])
    table = ok(kms_stack, tmp_path, ["alias", "list", "--all"])
    assert name in table
    assert second in table
    every = as_json(kms_stack, tmp_path, ["alias", "list", "--all", "--page-size", "1"])
    assert {row["AliasName"]: row["KeyId"] for row in every["Aliases"]["Alias"]}[name] == second
    assert every["TotalCount"] == len(every["Aliases"]["Alias"])
    # The alias works wherever a key is named.
    described = as_json(kms_stack, tmp_path, ["describe-key", name])
    assert described["KeyMetadata"]["KeyId"] == second

    ok(kms_stack, tmp_path, ["alias", "delete", name])
    output = ok(kms_stack, tmp_path, ["alias", "list", "--key-id", second])
    assert output.startswith(f"No aliases found for key {second}.")


def test_alias_command_errors(kms_stack: KmsStack, tmp_path: Path) -> None:
    key = create_key(kms_stack)
    result = run(kms_stack, tmp_path, ["alias", "create", "payments", key])
    assert result.exit_code == 1
    assert "InvalidParameter" in result.stderr
    assert "alias/" in result.stderr

    result = run(kms_stack, tmp_path, ["alias", "delete", "alias/nothing-here"])
    assert result.exit_code == 1
    assert "Forbidden.AliasNotFound" in result.stderr

    result = run(kms_stack, tmp_path, ["alias", "list", "--all", "--page-number", "2"])
    assert result.exit_code == 2
    assert "--all" in result.stderr
