"""``hyok kms account set-console-password``: the root's console password, set in the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hyok.cli.kms import kms
from hyok.common.secrets import Secret
from hyok.kms.bootstrap import KmsInitOptions, initialise_kms, open_store
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.ram import ConsoleSignInError, LoginProfileService
from hyok.kms.settings import load_settings
from tests.conftest import register_sensitive

pytestmark = pytest.mark.integration

FIRST = "Root-cli-password-1"
SECOND = "Root-cli-password-2"

for _value in (FIRST, SECOND):
    register_sensitive(_value)


def invoke(args: list[str], text: str | None = None, exit_code: int = 0) -> str:
    result = CliRunner().invoke(kms, args, input=text)
    assert result.exit_code == exit_code, result.output
    return result.output


def test_set_console_password(tmp_path: Path) -> None:
    config = initialise_kms(KmsInitOptions(directory=tmp_path / "kms", port=18_999)).config_path
    register_sensitive((tmp_path / "kms" / "secrets" / "root-key").read_text().strip())
    account_id = invoke(["account", "create", "--config", str(config)]).strip()
    command = ["account", "set-console-password", "--config", str(config)]

    output = invoke([*command, "--account-id", account_id], f"{FIRST}\n")
    assert output.strip() == f"Set the console password of account {account_id}."
    password_file = tmp_path / "root-password"
    password_file.write_text(SECOND + "\n")
    from_file = ["--password-file", str(password_file), "--output", "json"]
    output = invoke([*command, "--account-id", account_id, *from_file])
    assert json.loads(output) == {"accountId": account_id, "consolePasswordSet": True}

    store = open_store(load_settings(config))
    try:
        service = LoginProfileService(store)
        assert service.sign_in(account_id, Secret(SECOND)) == RamIdentity(
            account_id, CallerKind.ROOT
        )
        with pytest.raises(ConsoleSignInError):
            service.sign_in(account_id, Secret(FIRST))
    finally:
        store.database.dispose()

    weak = invoke([*command, "--account-id", account_id], "password\n", exit_code=1)
    assert "needs at least one letter" in weak
    missing = invoke([*command, "--account-id", "999988887777"], f"{FIRST}\n", exit_code=1)
    assert "account '999988887777' does not exist" in missing
    for output in (weak, missing):
        assert FIRST not in output
