"""``hyok kmi`` against a live admin API on loopback, run through click's CliRunner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hyok.cli import kmi as kmi_module
from hyok.cli._common import admin_base_url, resolve_config_path
from hyok.cli.kmi import kmi
from hyok.common.secrets import Secret
from hyok.kmi.base import KeyState, KeyUsage
from hyok.xki.admin import create_admin_app
from hyok.xki.settings import AdminSettings, SecretSource
from tests.conftest import register_sensitive
from tests.integration.test_admin import (
    Certificates,
    MemoryKeyManager,
    ServerThread,
    issue_certificates,
)

# Most tests call a live admin server on loopback.
pytestmark = pytest.mark.integration

TOKEN = "cli-admin-token-5e8a2c9d1b7f"
# A wide terminal keeps rich from folding key IDs across table lines.
RUNNER_ENV = {"COLUMNS": "200", "HYOK_DATA_DIR": None}


@dataclass
class Live:
    host: str
    port: int
    backends: dict[str, MemoryKeyManager]
    audit_events: list[Mapping[str, object]]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("cli-tls"))


def start(
    certificates: Certificates, backend_names: Sequence[str], host: str = "127.0.0.1"
) -> tuple[ServerThread, Live]:
    backends = {name: MemoryKeyManager() for name in backend_names}
    events: list[Mapping[str, object]] = []
    app = create_admin_app(backends, token=Secret(TOKEN), audit=events.append)
    server = ServerThread(app, certificates, host=host).__enter__()
    return server, Live(host=host, port=server.port, backends=backends, audit_events=events)


@pytest.fixture
def live(certificates: Certificates) -> Iterator[Live]:
    register_sensitive(TOKEN)
    server, state = start(certificates, ["local"])
    yield state
    server.__exit__(None, None, None)


@pytest.fixture
def live_two(certificates: Certificates) -> Iterator[Live]:
    register_sensitive(TOKEN)
    server, state = start(certificates, ["hsm", "local"])
    yield state
    server.__exit__(None, None, None)


def write_config(
    directory: Path,
    *,
    port: int,
    ca_file: Path | None,
    host: str = "127.0.0.1",
    backends: Sequence[str] = ("local",),
    token: str | None = TOKEN,
    token_source: str = '{ file = "secrets/admin-token" }',
    admin: bool = True,
    name: str = "xki.toml",
) -> Path:
    """Write a proxy configuration whose admin section points at the test server.

    Only [admin] is used by the CLI, but the other sections must still pass
    validation, so they name files that are never opened.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if token is not None:
        (directory / "secrets").mkdir(exist_ok=True)
        (directory / "secrets" / "admin-token").write_text(token + "\n", encoding="utf-8")
    lines = [
        'secrets = { env = "HYOK_TEST_UNUSED_PASSPHRASE" }',
        "",
        "[server]",
        'cert_file = "tls/server.pem"',
        'key_file = "tls/server-key.pem"',
        "",
    ]
    if admin:
        lines += [
            "[admin]",
            f"host = {json.dumps(host)}",
            f"port = {port}",
            f"token = {token_source}",
        ]
        if ca_file is not None:
            lines.append(f"ca_file = {json.dumps(str(ca_file))}")
        lines.append("")
    for backend in backends:
        lines += [
            f"[backends.{backend}]",
            'type = "file"',
            f'path = "{backend}.hyok"',
            'passphrase = { env = "HYOK_TEST_UNUSED_PASSPHRASE" }',
            "",
        ]
    lines += [
        "[[keystores]]",
        'name = "default"',
        f'backend = "{backends[0]}"',
        'credentials_file = "credentials/default.sealed"',
    ]
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path, live: Live, certificates: Certificates) -> Path:
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=certificates.ca_file)
    return directory


def run(
    args: Sequence[str], *, input: str | None = None, env: Mapping[str, str | None] | None = None
) -> Result:
    result = CliRunner().invoke(kmi, list(args), input=input, env={**RUNNER_ENV, **(env or {})})
    assert TOKEN not in result.output
    return result


def run_json(args: Sequence[str]) -> object:
    result = run([*args, "--output", "json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Commands against the live server.


def test_key_lifecycle_json(data_dir: Path, live: Live) -> None:
    where = ["--data-dir", str(data_dir)]

    created = run_json(["create-key", *where])
    assert isinstance(created, dict)
    key_id = created["keyId"]
    assert created["keyStatus"] == "ENABLED"
    assert created["keyUsage"] == ["ENCRYPT", "DECRYPT"]

    listed = run_json(["list-keys", *where])
    assert listed == {"backend": "local", "keys": [created]}
    assert run_json(["describe-key", key_id, *where]) == created

    disabled = run_json(["disable-key", key_id, *where])
    assert isinstance(disabled, dict)
    assert disabled["keyStatus"] == "DISABLED"
    assert live.backends["local"].describe_key(key_id).state is KeyState.DISABLED

    enabled = run_json(["enable-key", key_id, *where])
    assert isinstance(enabled, dict)
    assert enabled["keyStatus"] == "ENABLED"

    deleted = run_json(["delete-key", key_id, "--yes", *where])
    assert deleted == {"backend": "local", "keyId": key_id, "deleted": True}
    assert live.backends["local"].list_keys() == []

    actions = [event["action"] for event in live.audit_events]
    assert actions == [
        "CreateKey",
        "ListKeys",
        "DescribeKey",
        "DisableKey",
        "EnableKey",
        "DeleteKey",
    ]
    assert all(event["outcome"] == "ok" for event in live.audit_events)


def test_create_key_with_id_and_usages(data_dir: Path, live: Live) -> None:
    created = run_json(
        [
            "create-key",
            "--key-id",
            "orders-2024",
            "--usage",
            "encrypt",
            "--usage",
            "DECRYPT",
            "--data-dir",
            str(data_dir),
        ]
    )

    assert isinstance(created, dict)
    assert created["keyId"] == "orders-2024"
    assert live.backends["local"].describe_key("orders-2024").usages == {
        KeyUsage.ENCRYPT,
        KeyUsage.DECRYPT,
    }


def test_table_output(data_dir: Path, live: Live) -> None:
    created = run(["create-key", "--key-id", "k-table", "--data-dir", str(data_dir)])
    listed = run(["list-keys", "--data-dir", str(data_dir)])
    described = run(["describe-key", "k-table", "--data-dir", str(data_dir)])

    assert created.exit_code == 0, created.output
    assert "Created key in backend 'local'" in created.stdout
    assert listed.exit_code == 0, listed.output
    for column in ("Key ID", "Status", "Usage", "Spec", "Created (UTC)"):
        assert column in listed.stdout
    assert "k-table" in listed.stdout
    assert "ENABLED" in listed.stdout
    assert "ENCRYPT, DECRYPT" in listed.stdout
    assert described.exit_code == 0, described.output
    assert "k-table" in described.stdout
    assert "AES_256" in described.stdout


def test_list_keys_empty_table(data_dir: Path) -> None:
    result = run(["list-keys", "--data-dir", str(data_dir)])

    assert result.exit_code == 0
    assert "Backend 'local' has no keys" in result.stdout


def test_api_error_exits_1(data_dir: Path, live: Live) -> None:
    live.backends["local"].create_key("taken")

    missing = run(["describe-key", "nope", "--data-dir", str(data_dir), "--output", "json"])
    duplicate = run(["create-key", "--key-id", "taken", "--data-dir", str(data_dir)])

    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith("error: no key with ID 'nope'")
    assert duplicate.exit_code == 1
    assert duplicate.stderr.startswith("error: a key with ID 'taken' already exists")


def test_invalid_key_id_is_usage_error(data_dir: Path, live: Live) -> None:
    result = run(["describe-key", "bad key!", "--data-dir", str(data_dir)])
    created = run(["create-key", "--key-id", "x" * 129, "--data-dir", str(data_dir)])

    assert result.exit_code == 2
    assert "invalid key ID 'bad key!'" in result.stderr
    assert created.exit_code == 2
    assert "--key-id" in created.stderr
    assert live.audit_events == []


def test_unknown_usage_is_usage_error(data_dir: Path) -> None:
    result = run(["create-key", "--usage", "SEAL", "--data-dir", str(data_dir)])

    assert result.exit_code == 2
    assert "ENCRYPT" in result.stderr


def test_dot_key_id_round_trip(data_dir: Path, live: Live) -> None:
    created = run_json(["create-key", "--key-id", "..", "--data-dir", str(data_dir)])
    described = run_json(["describe-key", "..", "--data-dir", str(data_dir)])

    assert created == described
    assert live.backends["local"].describe_key("..").key_id == ".."


# delete-key confirmation.


def test_delete_prompt_answer_no(
    data_dir: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.backends["local"].create_key("keep-me")
    monkeypatch.setattr(kmi_module, "_stdin_is_tty", lambda: True)

    result = run(["delete-key", "keep-me", "--data-dir", str(data_dir)], input="n\n")

    assert result.exit_code == 1
    assert "undecryptable" in result.stderr
    assert "cannot be undone" in result.stderr
    assert "Delete key 'keep-me'?" in result.stderr
    assert "was not deleted" in result.stderr
    assert live.backends["local"].describe_key("keep-me").key_id == "keep-me"
    assert [event["action"] for event in live.audit_events] == ["DescribeKey"]


def test_delete_prompt_empty_answer_keeps_key(
    data_dir: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.backends["local"].create_key("keep-me")
    monkeypatch.setattr(kmi_module, "_stdin_is_tty", lambda: True)

    result = run(["delete-key", "keep-me", "--data-dir", str(data_dir)], input="\n")

    assert result.exit_code == 1
    assert live.backends["local"].describe_key("keep-me").key_id == "keep-me"


def test_delete_prompt_answer_yes(
    data_dir: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.backends["local"].create_key("drop-me")
    monkeypatch.setattr(kmi_module, "_stdin_is_tty", lambda: True)

    result = run(["delete-key", "drop-me", "--data-dir", str(data_dir)], input="y\n")

    assert result.exit_code == 0, result.output
    assert "Deleted key 'drop-me' from backend 'local'." in result.stdout
    assert live.backends["local"].list_keys() == []


def test_delete_without_tty_needs_yes(data_dir: Path, live: Live) -> None:
    live.backends["local"].create_key("keep-me")

    result = run(["delete-key", "keep-me", "--data-dir", str(data_dir)], input="y\n")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: not deleting key 'keep-me'")
    assert "Pass --yes" in result.stderr
    assert live.backends["local"].describe_key("keep-me").key_id == "keep-me"


def test_delete_unknown_key_fails_before_prompt(
    data_dir: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kmi_module, "_stdin_is_tty", lambda: True)

    result = run(["delete-key", "ghost", "--data-dir", str(data_dir)], input="y\n")

    assert result.exit_code == 1
    assert "Delete key" not in result.output
    assert result.stderr.startswith("error: no key with ID 'ghost'")


# Configuration resolution.


def test_config_option(tmp_path: Path, live: Live, certificates: Certificates) -> None:
    path = write_config(
        tmp_path / "elsewhere", port=live.port, ca_file=certificates.ca_file, name="proxy.toml"
    )

    result = run(["list-keys", "--config", str(path), "--output", "json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"backend": "local", "keys": []}


def test_data_dir_from_environment(data_dir: Path, live: Live) -> None:
    live.backends["local"].create_key("from-env")

    result = run(["list-keys", "--output", "json"], env={"HYOK_DATA_DIR": str(data_dir)})

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["keys"][0]["keyId"] == "from-env"


def test_data_dir_default_is_dot_hyok(
    tmp_path: Path, live: Live, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / ".hyok", port=live.port, ca_file=certificates.ca_file)
    monkeypatch.chdir(tmp_path)

    result = run(["list-keys", "--output", "json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "local"


def test_option_wins_over_environment(data_dir: Path, tmp_path: Path) -> None:
    result = run(
        ["list-keys", "--data-dir", str(data_dir), "--output", "json"],
        env={"HYOK_DATA_DIR": str(tmp_path / "missing")},
    )

    assert result.exit_code == 0, result.output


def test_data_dir_and_config_conflict(data_dir: Path) -> None:
    result = run(["list-keys", "--data-dir", str(data_dir), "--config", str(data_dir / "xki.toml")])

    assert result.exit_code == 2
    assert "pass only one of them" in result.stderr


def test_missing_configuration(tmp_path: Path) -> None:
    result = run(["list-keys", "--data-dir", str(tmp_path / "nowhere")])

    assert result.exit_code == 1
    assert f"error: configuration file {tmp_path / 'nowhere' / 'xki.toml'} does not exist" in (
        result.stderr
    )
    assert "hyok xki init" in result.stderr


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    result = run(["list-keys", "--config", str(tmp_path)])

    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_resolve_config_path_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYOK_DATA_DIR", raising=False)
    assert resolve_config_path(None, None) == Path(".hyok") / "xki.toml"
    assert resolve_config_path(tmp_path, None) == tmp_path / "xki.toml"
    assert resolve_config_path(None, tmp_path / "a.toml") == tmp_path / "a.toml"
    monkeypatch.setenv("HYOK_DATA_DIR", str(tmp_path / "env"))
    assert resolve_config_path(None, None) == tmp_path / "env" / "xki.toml"
    assert resolve_config_path(None, tmp_path / "a.toml") == tmp_path / "a.toml"


def test_admin_section_missing(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    write_config(directory, port=1, ca_file=None, admin=False)

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert "the admin API is not enabled" in result.stderr
    assert "[admin]" in result.stderr


def test_token_from_environment(tmp_path: Path, live: Live, certificates: Certificates) -> None:
    directory = tmp_path / "data"
    write_config(
        directory,
        port=live.port,
        ca_file=certificates.ca_file,
        token=None,
        token_source='{ env = "HYOK_TEST_ADMIN_TOKEN" }',
    )

    result = run(["list-keys", "--data-dir", str(directory)], env={"HYOK_TEST_ADMIN_TOKEN": TOKEN})
    unset = run(["list-keys", "--data-dir", str(directory)], env={"HYOK_TEST_ADMIN_TOKEN": None})

    assert result.exit_code == 0, result.output
    assert unset.exit_code == 1
    assert "HYOK_TEST_ADMIN_TOKEN" in unset.stderr


def test_token_file_missing(tmp_path: Path, live: Live, certificates: Certificates) -> None:
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=certificates.ca_file, token=None)

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert f"admin token file {directory / 'secrets' / 'admin-token'} does not exist" in (
        result.stderr
    )


def test_wrong_token(tmp_path: Path, live: Live, certificates: Certificates) -> None:
    directory = tmp_path / "data"
    write_config(
        directory, port=live.port, ca_file=certificates.ca_file, token="not-the-admin-token"
    )

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid bearer token")
    assert live.audit_events[-1]["outcome"] == "AuthenticationFailedException"


def test_token_with_spaces_is_rejected_locally(
    tmp_path: Path, live: Live, certificates: Certificates
) -> None:
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=certificates.ca_file, token="two words")

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert "not printable ASCII" in result.stderr
    assert "two words" not in result.output
    assert live.audit_events == []


# Backend selection.


def test_several_backends_need_backend_option(
    tmp_path: Path, live_two: Live, certificates: Certificates
) -> None:
    directory = tmp_path / "data"
    write_config(
        directory, port=live_two.port, ca_file=certificates.ca_file, backends=("local", "hsm")
    )

    ambiguous = run(["list-keys", "--data-dir", str(directory)])
    chosen = run(["create-key", "--backend", "hsm", "--data-dir", str(directory)])
    unknown = run(["list-keys", "--backend", "tpm", "--data-dir", str(directory)])

    assert ambiguous.exit_code == 2
    assert "several backends (hsm, local)" in ambiguous.stderr
    assert "--backend NAME" in ambiguous.stderr
    assert chosen.exit_code == 0, chosen.output
    assert len(live_two.backends["hsm"].list_keys()) == 1
    assert live_two.backends["local"].list_keys() == []
    assert unknown.exit_code == 2
    assert "no backend named 'tpm'" in unknown.stderr
    assert "hsm, local" in unknown.stderr


# Connection failures.


def test_unreachable_server(tmp_path: Path, certificates: Certificates) -> None:
    port = free_port()
    directory = tmp_path / "data"
    config = write_config(directory, port=port, ca_file=certificates.ca_file)

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert f"cannot reach the admin API at https://127.0.0.1:{port}/v1/backends/local/keys" in (
        result.stderr
    )
    assert f"hyok xki serve --config {config}" in result.stderr


def test_untrusted_certificate(tmp_path: Path, live: Live) -> None:
    other_ca = issue_certificates(tmp_path)
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=other_ca.ca_file)

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert "is not trusted" in result.stderr
    assert "admin.ca_file" in result.stderr
    assert live.audit_events == []


def test_ca_file_missing(tmp_path: Path, live: Live) -> None:
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=tmp_path / "no-ca.pem")

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 1
    assert f"the CA file {tmp_path / 'no-ca.pem'}" in result.stderr


def test_environment_proxy_is_ignored(data_dir: Path) -> None:
    # A proxy on a closed loopback port would fail the request if httpx used it.
    closed = f"http://127.0.0.1:{free_port()}"

    result = run(
        ["list-keys", "--data-dir", str(data_dir)],
        env={"HTTPS_PROXY": closed, "https_proxy": closed, "ALL_PROXY": closed},
    )

    assert result.exit_code == 0, result.output


def test_wildcard_bind_address_is_reached_on_loopback(
    tmp_path: Path, live: Live, certificates: Certificates
) -> None:
    directory = tmp_path / "data"
    write_config(directory, port=live.port, ca_file=certificates.ca_file, host="0.0.0.0")

    result = run(["list-keys", "--data-dir", str(directory)])

    assert result.exit_code == 0, result.output


def test_ipv6_loopback(tmp_path: Path, certificates: Certificates) -> None:
    try:
        server, state = start(certificates, ["local"], host="::1")
    except OSError as exc:
        pytest.skip(f"IPv6 loopback ::1 is not available: {exc}")
    try:
        directory = tmp_path / "data"
        write_config(directory, port=state.port, ca_file=certificates.ca_file, host="::1")
        result = run(["create-key", "--key-id", "v6", "--data-dir", str(directory)])
    finally:
        server.__exit__(None, None, None)

    assert result.exit_code == 0, result.output
    assert state.audit_events[0]["source"] == "::1"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "https://127.0.0.1:8444"),
        ("0.0.0.0", "https://127.0.0.1:8444"),
        ("::", "https://127.0.0.1:8444"),
        ("::1", "https://[::1]:8444"),
        ("[::1]", "https://[::1]:8444"),
        ("fd00:0:0::5", "https://[fd00::5]:8444"),
        ("proxy.internal", "https://proxy.internal:8444"),
    ],
)
def test_admin_base_url(host: str, url: str) -> None:
    settings = AdminSettings(host=host, port=8444, token=SecretSource(env="UNUSED"))

    assert admin_base_url(settings) == url


# The installed entry point, as a user runs it.


def test_entry_point_reports_unreachable_server(tmp_path: Path, certificates: Certificates) -> None:
    hyok = Path(sys.executable).with_name("hyok")
    if not hyok.exists():
        pytest.skip(f"the hyok entry point is not installed next to {sys.executable}")
    port = free_port()
    config = write_config(tmp_path / "data", port=port, ca_file=certificates.ca_file)

    completed = subprocess.run(
        [str(hyok), "kmi", "list-keys", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.startswith("error: cannot reach the admin API")
    assert "Traceback" not in completed.stderr


def test_entry_point_usage_error_exits_2(tmp_path: Path) -> None:
    hyok = Path(sys.executable).with_name("hyok")
    if not hyok.exists():
        pytest.skip(f"the hyok entry point is not installed next to {sys.executable}")

    completed = subprocess.run(
        [str(hyok), "kmi", "describe-key", "bad key!", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    assert "invalid key ID" in completed.stderr


def test_entry_point_prompts_on_terminal(data_dir: Path, live: Live) -> None:
    hyok = Path(sys.executable).with_name("hyok")
    if not hyok.exists():
        pytest.skip(f"the hyok entry point is not installed next to {sys.executable}")
    pty = pytest.importorskip("pty")
    live.backends["local"].create_key("keep-me")
    primary, secondary = pty.openpty()
    try:
        with subprocess.Popen(
            [str(hyok), "kmi", "delete-key", "keep-me", "--data-dir", str(data_dir)],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            # The terminal buffers the answer until the prompt reads it.
            os.write(primary, b"n\n")
            stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)

    assert process.returncode == 1
    assert "cannot be undone" in stderr
    assert "Delete key 'keep-me'?" in stderr
    assert "was not deleted" in stderr
    assert stdout == ""
    assert live.backends["local"].describe_key("keep-me").key_id == "keep-me"
