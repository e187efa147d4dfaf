"""``hyok kms`` API commands through click's CliRunner, against the whole chain of ``_kms``.

The commands call a real KMS over TLS with the official SDK; the KMS calls a
real XKI proxy over TLS, which uses the file key manager. Every test runs on
SQLite and on PostgreSQL. Each command's stdout and stderr are checked for
the AccessKey secret and the proxy secret.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from darabonba.core import DaraCore  # type: ignore[import-untyped]

from hyok.cli import kms_instances
from hyok.cli._kms_api import ACCESS_KEY_ID_ENV, ACCESS_KEY_SECRET_ENV
from hyok.cli.kms_calls import register
from tests.integration._kms import REGION, KmsStack, kms_stack, postgres_server

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

Sensitive = Callable[[bytes | str], None]


@click.group()
def kms() -> None:
    """The API commands in a group of their own, as ``hyok kms`` registers them."""


register(kms)


class Cli:
    """Runs ``hyok kms`` commands with one connection file and checks for leaked secrets."""

    def __init__(self, stack: KmsStack, up_file: Path, empty_dir: Path) -> None:
        self.stack = stack
        self.up_file = up_file
        self.secrets = [stack.secret, stack.data.credentials["default"].credential.secret.reveal()]
        # No hyok-up.json is found by default, and no AccessKey comes from the environment.
        self.env: dict[str, str | None] = {
            "COLUMNS": "200",
            "HYOK_DATA_DIR": str(empty_dir),
            ACCESS_KEY_ID_ENV: None,
            ACCESS_KEY_SECRET_ENV: None,
        }

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        up_file: bool = True,
    ) -> Result:
        where = ["--up-file", str(self.up_file)] if up_file else []
        result = CliRunner().invoke(
            kms, [*args, *where], input=input, env={**self.env, **(env or {})}
        )
        for secret in self.secrets:
            assert secret not in result.stdout
            assert secret not in result.stderr
        return result

    def ok(self, args: Sequence[str], **options: Any) -> Result:
        result = self.run(args, **options)
        assert result.exit_code == 0, result.output
        return result

    def json(self, args: Sequence[str], **options: Any) -> Any:
        result = self.ok([*args, "--output", "json"], **options)
        assert result.stderr == ""
        return json.loads(result.stdout)

    def fail(self, args: Sequence[str], **options: Any) -> str:
        """Run a command that must fail with exit code 1; return its one error line."""
        result = self.run(args, **options)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("error: "), result.stderr
        return result.stderr


def write_up_file(path: Path, stack: KmsStack, **changes: str | None) -> Path:
    document: dict[str, str | None] = {
        "region": REGION,
        "kms_endpoint": f"127.0.0.1:{stack.port}",
        "ca_cert": str(stack.ca_file),
        "account_id": "1234567890123456",
        "access_key_id": stack.access_key_id,
        "access_key_secret": stack.secret,
        "instance_id": stack.instance_id,
        "xki_endpoint": stack.proxy.url,
        "external_key_id": "app-1",
    }
    document.update(changes)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def cli(kms_stack: KmsStack, tmp_path: Path, sensitive: Sensitive) -> Cli:
    sensitive(kms_stack.secret)
    empty = tmp_path / "no-stack"
    empty.mkdir()
    return Cli(kms_stack, write_up_file(tmp_path / "hyok-up.json", kms_stack), empty)


@pytest.fixture(scope="module")
def module_key(kms_stack: KmsStack) -> str:
    """A key made by create-key with --endpoint, --ca-cert and AccessKey environment variables."""
    result = CliRunner().invoke(
        kms,
        [
            "create-key",
            "--external-key-id",
            "app-1",
            "--instance-id",
            kms_stack.instance_id,
            "--endpoint",
            f"127.0.0.1:{kms_stack.port}",
            "--ca-cert",
            str(kms_stack.ca_file),
            "--output",
            "json",
        ],
        env={
            ACCESS_KEY_ID_ENV: kms_stack.access_key_id,
            ACCESS_KEY_SECRET_ENV: kms_stack.secret,
        },
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["KeyMetadata"]["KeyId"])


# --- Keys ---------------------------------------------------------------------------


def test_key_commands_table_output(cli: Cli, tmp_path: Path, sensitive: Sensitive) -> None:
    created = cli.ok(["create-key", "--external-key-id", "app-1", "--description", "cli table"])
    first_line = created.stdout.splitlines()[0]
    assert first_line.startswith("Created key key-")
    assert first_line.endswith(f"in instance {cli.stack.instance_id}.")
    key_id = first_line.split()[2]
    assert "ExternalKeyId" in created.stdout
    assert "cli table" in created.stdout

    described = cli.ok(["describe-key", key_id])
    assert key_id in described.stdout
    assert "Enabled" in described.stdout
    assert "ExternalKeyState" in described.stdout
    assert "ENABLED" in described.stdout

    listed = cli.ok(["list-keys", "--all"])
    assert key_id in listed.stdout
    assert f"acs:kms:{REGION}:" in listed.stdout

    # Bytes that are not UTF-8 survive the round trip from a file.
    data = b"\x00\xffcli round trip \xfe\x80" + os.urandom(16)
    sensitive(data)
    source = tmp_path / "plain.bin"
    source.write_bytes(data)
    context = ["--context", "purpose=test", "--context", "team=pay"]
    blob = cli.ok(["encrypt", "--key-id", key_id, "--in", str(source), *context]).stdout.strip()
    assert base64.b64decode(blob, validate=True)

    decrypted = cli.ok(["decrypt", "--ciphertext", blob, *context])
    assert decrypted.stdout_bytes == data

    blob_file = tmp_path / "blob.txt"
    blob_file.write_text(blob + "\n", encoding="ascii")
    target = tmp_path / "plain.out"
    written = cli.ok(["decrypt", "--in", str(blob_file), "--out", str(target), *context])
    assert written.stdout == ""
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    generated = cli.ok(["generate-data-key", "--key-id", key_id, *context])
    assert "CiphertextBlob" in generated.stdout
    assert "Plaintext" in generated.stdout


def test_key_commands_json_output(cli: Cli, sensitive: Sensitive) -> None:
    created = cli.json(
        [
            "create-key",
            "--external-key-id",
            "app-1",
            "--description",
            "cli json",
            "--tag",
            "team=pay",
            "--tag",
            "env=test",
        ]
    )
    metadata = created["KeyMetadata"]
    key_id = metadata["KeyId"]
    assert metadata["DKMSInstanceId"] == cli.stack.instance_id
    assert metadata["ExternalKeyId"] == "app-1"
    assert metadata["Description"] == "cli json"
    assert created["RequestId"]
    with cli.stack.store.session(read_only=True) as session:
        assert sorted(session.keys.list_tags(key_id)) == [("env", "test"), ("team", "pay")]

    described = cli.json(["describe-key", key_id])
    assert described["KeyMetadata"]["KeyId"] == key_id
    assert described["KeyMetadata"]["KmsInstanceStatus"] == "Connected"

    everything = cli.json(["list-keys", "--all", "--page-size", "1"])
    all_ids = [key["KeyId"] for key in everything["Keys"]["Key"]]
    assert key_id in all_ids
    assert everything["TotalCount"] == len(all_ids)
    assert len(set(all_ids)) == len(all_ids)

    page = cli.json(
        ["list-keys", "--page-size", "1", "--filter", f"DKMSInstanceId={cli.stack.instance_id}"]
    )
    assert page["PageSize"] == 1
    assert page["PageNumber"] == 1
    assert len(page["Keys"]["Key"]) == 1
    assert page["TotalCount"] == len(all_ids)
    none = cli.json(["list-keys", "--filter", "KeyState=PendingDeletion"])
    assert none["TotalCount"] == 0

    data = b"json round trip plaintext"
    sensitive(data)
    encrypted = cli.json(
        ["encrypt", "--key-id", key_id, "--plaintext", data.decode(), "--context", "a=b"]
    )
    assert encrypted["KeyId"] == key_id
    assert encrypted["KeyVersionId"]
    decrypted = cli.json(
        ["decrypt", "--ciphertext", encrypted["CiphertextBlob"], "--context", "a=b"]
    )
    assert base64.b64decode(decrypted["Plaintext"]) == data
    assert decrypted["KeyId"] == key_id

    data_key = cli.json(["generate-data-key", "--key-id", key_id])
    plaintext_key = base64.b64decode(data_key["Plaintext"])
    sensitive(plaintext_key)
    assert len(plaintext_key) == 32
    unwrapped = cli.json(["decrypt", "--ciphertext", data_key["CiphertextBlob"]])
    assert unwrapped["Plaintext"] == data_key["Plaintext"]

    short = cli.json(["generate-data-key", "--key-id", key_id, "--key-spec", "AES_128"])
    assert len(base64.b64decode(short["Plaintext"])) == 16
    odd = cli.json(["generate-data-key", "--key-id", key_id, "--number-of-bytes", "24"])
    assert len(base64.b64decode(odd["Plaintext"])) == 24
    wrapped_only = cli.json(["generate-data-key", "--key-id", key_id, "--without-plaintext"])
    assert "Plaintext" not in wrapped_only
    assert wrapped_only["CiphertextBlob"]


def test_encrypt_reads_standard_input(cli: Cli, module_key: str, sensitive: Sensitive) -> None:
    data = b"from standard input \x01\x02"
    sensitive(data)
    blob = cli.ok(["encrypt", "--key-id", module_key], input=data).stdout.strip()
    decrypted = cli.ok(["decrypt", "--in", "-"], input=blob)
    assert decrypted.stdout_bytes == data


def test_decrypt_json_with_out_omits_plaintext(
    cli: Cli, module_key: str, tmp_path: Path, sensitive: Sensitive
) -> None:
    data = b"written to a file, not shown"
    sensitive(data)
    blob = cli.json(["encrypt", "--key-id", module_key, "--plaintext", data.decode()])
    target = tmp_path / "out.bin"
    body = cli.json(["decrypt", "--ciphertext", blob["CiphertextBlob"], "--out", str(target)])
    assert "Plaintext" not in body
    assert body["KeyId"] == module_key
    assert target.read_bytes() == data


def test_decrypt_with_wrong_context_fails(cli: Cli, module_key: str) -> None:
    blob = cli.json(["encrypt", "--key-id", module_key, "--plaintext", "bound to a=b"])
    message = cli.fail(["decrypt", "--ciphertext", blob["CiphertextBlob"], "--context", "a=other"])
    assert message.startswith("error: InvalidParameter: ")
    assert "(request " in message


# --- Connection ---------------------------------------------------------------------


def test_environment_overrides_file(cli: Cli, tmp_path: Path, module_key: str) -> None:
    stale = write_up_file(
        tmp_path / "stale.json",
        cli.stack,
        access_key_id="LTAIstalestalestale1",
        access_key_secret="stale-secret-value-0000",
    )
    env = {ACCESS_KEY_ID_ENV: cli.stack.access_key_id, ACCESS_KEY_SECRET_ENV: cli.stack.secret}
    described = cli.json(
        ["describe-key", module_key, "--up-file", str(stale)], env=env, up_file=False
    )
    assert described["KeyMetadata"]["KeyId"] == module_key

    unknown = {ACCESS_KEY_ID_ENV: "LTAIunknownunknown01", ACCESS_KEY_SECRET_ENV: "x" * 30}
    message = cli.fail(["describe-key", module_key], env=unknown)
    assert message.startswith("error: InvalidAccessKeyId.NotFound: ")
    assert "x" * 30 not in message


def test_endpoint_options_without_file(cli: Cli, module_key: str) -> None:
    env = {ACCESS_KEY_ID_ENV: cli.stack.access_key_id, ACCESS_KEY_SECRET_ENV: cli.stack.secret}
    where = ["--endpoint", f"https://127.0.0.1:{cli.stack.port}/", "--ca-cert"]
    described = cli.json(
        ["describe-key", module_key, *where, str(cli.stack.ca_file), "--region", REGION],
        env=env,
        up_file=False,
    )
    assert described["KeyMetadata"]["KeyId"] == module_key


def close_sdk_sessions(port: int) -> None:
    """Close the SDK's pooled sessions to the KMS, which would skip a new TLS handshake."""
    for key in [key for key in DaraCore._sessions if f":{port}:" in key]:
        DaraCore._sessions.pop(key).close()


def test_untrusted_kms_certificate(cli: Cli, module_key: str) -> None:
    close_sdk_sessions(cli.stack.port)
    env = {ACCESS_KEY_ID_ENV: cli.stack.access_key_id, ACCESS_KEY_SECRET_ENV: cli.stack.secret}
    # The proxy's CA did not sign the KMS certificate.
    where = ["--endpoint", f"127.0.0.1:{cli.stack.port}", "--ca-cert", str(cli.stack.data.ca_file)]
    message = cli.fail(["describe-key", module_key, *where], env=env, up_file=False)
    assert f"the TLS certificate of the KMS at https://127.0.0.1:{cli.stack.port}" in message
    assert "--ca-cert" in message


def test_unknown_key_fails(cli: Cli) -> None:
    message = cli.fail(["describe-key", "key-doesnotexist0000000000"])
    assert message.startswith("error: Forbidden.KeyNotFound: ")
    assert "key-doesnotexist0000000000" in message
    assert "(request " in message
    assert message.count("\n") == 1


def test_create_key_unknown_external_key(cli: Cli) -> None:
    message = cli.fail(["create-key", "--external-key-id", "no-such-key"])
    assert message.startswith("error: InvalidParameter: ")
    assert "no-such-key" in message


def test_create_key_needs_an_instance(cli: Cli, tmp_path: Path) -> None:
    without = write_up_file(tmp_path / "no-instance.json", cli.stack, instance_id=None)
    result = cli.run(
        ["create-key", "--external-key-id", "app-1", "--up-file", str(without)], up_file=False
    )
    assert result.exit_code == 2
    assert "--instance-id" in result.stderr


def test_group_readable_up_file_warns(cli: Cli, module_key: str) -> None:
    cli.up_file.chmod(0o640)
    result = cli.ok(["describe-key", module_key, "--output", "json"])
    assert result.stderr.startswith(f"warning: {cli.up_file} contains an AccessKey secret")
    assert "chmod 600" in result.stderr
    assert json.loads(result.stdout)["KeyMetadata"]["KeyId"] == module_key


# --- Instances ----------------------------------------------------------------------
# These need the instance actions of the KMS (CreateKmsInstance,
# UpdateXkiProxyConfiguration, ConnectKmsInstance, DisconnectKmsInstance,
# GetKmsInstance, ListKmsInstances).


def proxy_endpoint(stack: KmsStack) -> str:
    port = stack.proxy.url.rsplit(":", 1)[1]
    return f"https://localhost:{port}"


def test_instance_lifecycle(cli: Cli, sensitive: Sensitive) -> None:
    created = cli.json(["instance", "create", "--name", "cli instance"])
    instance_id = created["KmsInstanceId"]
    assert instance_id.startswith("kst-")
    assert created["KmsInstanceArn"].endswith(f":keystore/{instance_id}")

    described = cli.json(["instance", "describe", instance_id])["KmsInstance"]
    assert described["InstanceName"] == "cli instance"
    assert described["Status"] == "Uninitialized"

    config_file = cli.stack.data.root / "xks-proxy-configuration.json"
    configured = cli.json(
        [
            "instance",
            "configure",
            instance_id,
            "--connectivity",
            "public",
            "--proxy-endpoint",
            proxy_endpoint(cli.stack),
            "--proxy-config-file",
            str(config_file),
        ]
    )["KmsInstance"]
    credential = cli.stack.data.credentials["default"].credential
    assert configured["XkiProxy"]["Connectivity"] == "PUBLIC_ENDPOINT"
    assert configured["XkiProxy"]["UriEndpoint"] == proxy_endpoint(cli.stack)
    assert configured["XkiProxy"]["UriPath"] == "/kms/xks/v1"
    assert configured["XkiProxy"]["AccessKeyId"] == credential.access_key_id

    connected = cli.ok(["instance", "connect", instance_id])
    assert connected.stdout.startswith(f"Connected instance {instance_id}.")
    assert "Connected" in connected.stdout
    assert cli.json(["instance", "describe", instance_id])["KmsInstance"]["Status"] == "Connected"

    listed = cli.json(["instance", "list", "--all"])
    assert instance_id in [item["KmsInstanceId"] for item in listed["KmsInstances"]["KmsInstance"]]
    table = cli.ok(["instance", "list"])
    assert instance_id in table.stdout

    key = cli.json(["create-key", "--instance-id", instance_id, "--external-key-id", "app-1"])[
        "KeyMetadata"
    ]
    assert key["DKMSInstanceId"] == instance_id

    disconnected = cli.json(["instance", "disconnect", instance_id])["KmsInstance"]
    assert disconnected["Status"] == "Disconnected"
    message = cli.fail(["encrypt", "--key-id", key["KeyId"], "--plaintext", "not now"])
    assert "error: " in message


def test_instance_configure_secret_from_stdin_and_prompt(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance_id = cli.json(["instance", "create"])["KmsInstanceId"]
    credential = cli.stack.data.credentials["default"].credential
    options = [
        "instance",
        "configure",
        instance_id,
        "--connectivity",
        "public",
        "--proxy-endpoint",
        proxy_endpoint(cli.stack),
        "--uri-path",
        "/kms/xks/v1",
        "--proxy-access-key-id",
        credential.access_key_id,
    ]
    secret = credential.secret.reveal()
    cli.ok([*options, "--proxy-secret-file", "-"], input=secret + "\n")
    cli.ok(["instance", "connect", instance_id])

    monkeypatch.setattr(kms_instances, "_stdin_is_tty", lambda: True)
    prompted = cli.ok(options, input=secret + "\n")
    assert "Secret access key of the XKI proxy" in prompted.stderr
    assert prompted.stdout.startswith(f"Updated the XKI proxy of instance {instance_id}.")
    cli.ok(["instance", "connect", instance_id])


def test_instance_connect_with_wrong_secret(cli: Cli, tmp_path: Path) -> None:
    instance_id = cli.json(["instance", "create"])["KmsInstanceId"]
    credential = cli.stack.data.credentials["default"].credential
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("A" * 43 + "=\n", encoding="ascii")
    cli.ok(
        [
            "instance",
            "configure",
            instance_id,
            "--connectivity",
            "public",
            "--proxy-endpoint",
            proxy_endpoint(cli.stack),
            "--uri-path",
            "/kms/xks/v1",
            "--proxy-access-key-id",
            credential.access_key_id,
            "--proxy-secret-file",
            str(wrong),
        ]
    )
    message = cli.fail(["instance", "connect", instance_id])
    assert message.startswith("error: Forbidden.DKMSInstanceStateInvalid: ")
    status = cli.json(["instance", "describe", instance_id])["KmsInstance"]
    assert status["Status"] == "Error"
    assert status["ErrorReason"] == "CredentialsRejected"


def test_instance_describe_unknown(cli: Cli) -> None:
    message = cli.fail(["instance", "describe", "kst-doesnotexist000000"])
    assert message.startswith("error: Forbidden.DKMSInstanceNotFound: ")


def test_instance_of_fixture_is_connected(cli: Cli) -> None:
    described = cli.ok(["instance", "describe", cli.stack.instance_id])
    assert cli.stack.instance_id in described.stdout
    assert "Connected" in described.stdout
