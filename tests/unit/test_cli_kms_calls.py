"""``hyok kms`` API commands without a KMS: connection settings, option checks and messages.

The calls against a running KMS are in tests/integration/test_cli_kms_calls.py.
Here, the one network attempt goes to a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click
import pytest
from alibabacloud_tea_openapi.exceptions import (  # type: ignore[import-untyped]
    ClientException,
    ServerException,
)
from click.testing import CliRunner, Result

from hyok.cli._common import CliError
from hyok.cli._kms_api import (
    ACCESS_KEY_ID_ENV,
    ACCESS_KEY_SECRET_ENV,
    ConnectionOptions,
    api_error_message,
    flatten,
    private_file_warning,
    resolve_target,
)
from hyok.cli.kms_calls import register
from hyok.cli.kms_instances import read_proxy_configuration
from hyok.common.tls import create_ca
from hyok.xki.credentials import generate_credential, proxy_configuration

Sensitive = Callable[[bytes | str], None]

SECRET = "unit-test-access-key-secret-7c41"
CA_PEM = create_ca("unit test CA", days=1).cert_pem
ACCESS_KEY_ID = "LTAIunittestunittest01"


@click.group()
def kms() -> None:
    """The API commands in a group of their own, as ``hyok kms`` registers them."""


register(kms)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AccessKey in the environment, and a data directory without hyok-up.json."""
    empty = tmp_path / "no-stack"
    empty.mkdir()
    monkeypatch.setenv("HYOK_DATA_DIR", str(empty))
    monkeypatch.delenv(ACCESS_KEY_ID_ENV, raising=False)
    monkeypatch.delenv(ACCESS_KEY_SECRET_ENV, raising=False)
    return empty


def write_up_file(path: Path, mode: int = 0o600, **fields: object) -> Path:
    document: dict[str, object] = {
        "region": "cn-shanghai",
        "kms_endpoint": "127.0.0.1:18443",
        "ca_cert": None,
        "account_id": "1234567890123456",
        "access_key_id": ACCESS_KEY_ID,
        "access_key_secret": SECRET,
        "instance_id": "kst-unittest0001",
        "xki_endpoint": "https://localhost:18444",
        "external_key_id": "app-1",
    }
    document.update(fields)
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(mode)
    return path


def options(
    up_file: Path | None = None,
    endpoint: str | None = None,
    region: str | None = None,
    ca_cert: Path | None = None,
) -> ConnectionOptions:
    return ConnectionOptions(up_file=up_file, endpoint=endpoint, region=region, ca_cert=ca_cert)


def resolve_error(connection: ConnectionOptions) -> str:
    with pytest.raises(CliError) as caught:
        resolve_target(connection)
    message = caught.value.format_message()
    assert SECRET not in message
    return message


def run(
    args: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None
) -> Result:
    result = CliRunner().invoke(kms, list(args), input=input, env={"COLUMNS": "200", **(env or {})})
    assert SECRET not in result.output
    return result


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- Commands -----------------------------------------------------------------------


def test_register_adds_commands() -> None:
    assert set(kms.commands) == {
        "create-key",
        "describe-key",
        "list-keys",
        "encrypt",
        "decrypt",
        "generate-data-key",
        "set-key-policy",
        "get-key-policy",
        "instance",
        "alias",
    }
    instance = kms.commands["instance"]
    assert isinstance(instance, click.Group)
    assert set(instance.commands) == {
        "create",
        "configure",
        "connect",
        "disconnect",
        "describe",
        "list",
        "share",
        "unshare",
        "shares",
        "quota",
    }


def test_every_command_has_connection_options() -> None:
    groups = [kms, kms.commands["instance"]]
    for group in groups:
        assert isinstance(group, click.Group)
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                continue
            option_names = {option for param in command.params for option in param.opts}
            missing = {
                "--up-file",
                "--endpoint",
                "--region",
                "--ca-cert",
                "--output",
            } - option_names
            assert missing == set(), f"{name} lacks {missing}"


# --- Resolving the connection ---------------------------------------------------------


def test_no_file_and_no_endpoint(isolated_environment: Path) -> None:
    message = resolve_error(options())
    assert str(isolated_environment / "hyok-up.json") in message
    assert "'hyok up'" in message
    assert "--endpoint HOST:PORT" in message
    assert ACCESS_KEY_ID_ENV in message


def test_no_file_message_from_command() -> None:
    result = run(["describe-key", "key-1"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no KMS to call: ")
    assert "'hyok up'" in result.stderr


def test_explicit_up_file_missing(tmp_path: Path) -> None:
    message = resolve_error(options(up_file=tmp_path / "absent.json"))
    assert f"the connection file {tmp_path / 'absent.json'} does not exist" in message
    assert "'hyok up'" in message


def test_default_up_file_is_read(isolated_environment: Path) -> None:
    write_up_file(isolated_environment / "hyok-up.json")
    target = resolve_target(options())
    assert target.endpoint == "127.0.0.1:18443"
    assert target.region == "cn-shanghai"
    assert target.access_key_id == ACCESS_KEY_ID
    assert target.access_key_secret.reveal() == SECRET
    assert target.instance_id == "kst-unittest0001"
    assert target.up_file == isolated_environment / "hyok-up.json"
    assert target.ca_cert is None
    assert SECRET not in repr(target)


def test_endpoint_option_ignores_default_file(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_up_file(isolated_environment / "hyok-up.json")
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, "LTAIfromenvironment01")
    monkeypatch.setenv(ACCESS_KEY_SECRET_ENV, "secret-from-environment-01")
    target = resolve_target(options(endpoint="kms.internal:8443"))
    assert target.up_file is None
    assert target.endpoint == "kms.internal:8443"
    assert target.region == "cn-hangzhou"
    assert target.instance_id is None


def test_options_override_file(tmp_path: Path) -> None:
    ca_file = tmp_path / "other-ca.pem"
    ca_file.write_bytes(CA_PEM)
    up_file = write_up_file(tmp_path / "hyok-up.json")
    target = resolve_target(
        options(up_file=up_file, endpoint="127.0.0.1:9443", region="cn-beijing", ca_cert=ca_file)
    )
    assert target.endpoint == "127.0.0.1:9443"
    assert target.region == "cn-beijing"
    assert target.ca_cert == ca_file
    assert target.access_key_id == ACCESS_KEY_ID


def test_relative_ca_cert_is_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "kms" / "tls").mkdir(parents=True)
    (tmp_path / "kms" / "tls" / "ca.pem").write_bytes(CA_PEM)
    up_file = write_up_file(tmp_path / "hyok-up.json", ca_cert="kms/tls/ca.pem")
    assert resolve_target(options(up_file=up_file)).ca_cert == tmp_path / "kms" / "tls" / "ca.pem"


def test_missing_ca_cert(tmp_path: Path) -> None:
    up_file = write_up_file(tmp_path / "hyok-up.json", ca_cert=str(tmp_path / "gone.pem"))
    message = resolve_error(options(up_file=up_file))
    assert f"the CA certificate {tmp_path / 'gone.pem'} named by ca_cert in {up_file}" in message
    message = resolve_error(options(up_file=up_file, ca_cert=tmp_path / "also-gone.pem"))
    assert "named by --ca-cert does not exist" in message


@pytest.mark.parametrize("content", [b"junk\n", b"", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_ca_cert_without_certificate(tmp_path: Path, content: bytes) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(content)
    message = resolve_error(options(up_file=write_up_file(tmp_path / "up.json"), ca_cert=junk))
    assert message == (
        f"the file {junk} named by --ca-cert contains no valid PEM certificate; pass the PEM file "
        "of the CA that signed the KMS certificate with --ca-cert"
    )


def test_environment_overrides_file_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up_file = write_up_file(tmp_path / "hyok-up.json")
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, "LTAIfromenvironment01")
    monkeypatch.setenv(ACCESS_KEY_SECRET_ENV, "secret-from-environment-01")
    target = resolve_target(options(up_file=up_file))
    assert target.access_key_id == "LTAIfromenvironment01"
    assert target.access_key_secret.reveal() == "secret-from-environment-01"
    assert target.endpoint == "127.0.0.1:18443"


def test_half_set_environment_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    up_file = write_up_file(tmp_path / "hyok-up.json")
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, "LTAIfromenvironment01")
    message = resolve_error(options(up_file=up_file))
    assert f"{ACCESS_KEY_ID_ENV} is set but {ACCESS_KEY_SECRET_ENV} is not" in message


def test_no_credentials_anywhere(tmp_path: Path) -> None:
    message = resolve_error(options(endpoint="127.0.0.1:9443"))
    assert "no AccessKey to sign requests with" in message
    up_file = write_up_file(tmp_path / "hyok-up.json", access_key_secret=None)
    message = resolve_error(options(up_file=up_file))
    assert f"the connection file {up_file} has none" in message


def test_invalid_json_hides_content(tmp_path: Path) -> None:
    broken = tmp_path / "hyok-up.json"
    broken.write_text('{"access_key_secret": "' + SECRET + '",\n oops', encoding="utf-8")
    message = resolve_error(options(up_file=broken))
    assert f"the connection file {broken} is not valid JSON (line 2)" in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "must contain a JSON object"),
        ('{"kms_endpoint": 8443}', "the field kms_endpoint of the connection file"),
        ('{"access_key_id": "x"}', "has no kms_endpoint"),
    ],
)
def test_bad_up_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "hyok-up.json"
    path.write_text(content, encoding="utf-8")
    assert fragment in resolve_error(options(up_file=path))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:18443", "127.0.0.1:18443"),
        ("https://127.0.0.1:18443/", "127.0.0.1:18443"),
        ("kms.example.internal", "kms.example.internal"),
        ("[::1]:8443", "[::1]:8443"),
    ],
)
def test_endpoint_forms(given: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, ACCESS_KEY_ID)
    monkeypatch.setenv(ACCESS_KEY_SECRET_ENV, SECRET)
    assert resolve_target(options(endpoint=given)).endpoint == expected


@pytest.mark.parametrize(
    "given", ["http://127.0.0.1:8443", "127.0.0.1:99999", "127.0.0.1:8443/path", "", "a b"]
)
def test_invalid_endpoints(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ACCESS_KEY_ID_ENV, ACCESS_KEY_ID)
    monkeypatch.setenv(ACCESS_KEY_SECRET_ENV, SECRET)
    message = resolve_error(options(endpoint=given))
    assert f"the KMS endpoint {given!r} from --endpoint is invalid" in message
    assert "HOST:PORT" in message


def test_group_readable_file_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up_file = write_up_file(tmp_path / "hyok-up.json", mode=0o644)
    resolve_target(options(up_file=up_file))
    warning = capsys.readouterr().err
    assert warning == (
        f"warning: {up_file} contains an AccessKey secret and is readable by group or others "
        f"(mode 0644); restrict it with: chmod 600 {up_file}\n"
    )


def test_private_file_warning_modes(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x", encoding="ascii")
    for mode, warns in ((0o600, False), (0o400, False), (0o640, True), (0o604, True)):
        path.chmod(mode)
        assert (private_file_warning(path, "a secret") is not None) is warns, oct(mode)
    assert private_file_warning(tmp_path / "absent", "a secret") is None


# --- Calling and reporting -------------------------------------------------------------


def test_api_error_message() -> None:
    error = ClientException(
        status_code=404,
        code="Forbidden.KeyNotFound",
        message="code: 404, The key key-1 is not found. request id: R-1",
        request_id="R-1",
        data={
            "Code": "Forbidden.KeyNotFound",
            "Message": "The key key-1 is not found.",
            "RequestId": "R-1",
        },
    )
    assert (
        api_error_message(error)
        == "Forbidden.KeyNotFound: The key key-1 is not found. (request R-1)"
    )
    server = ServerException(status_code=500, code="InternalFailure", message="boom", data={})
    assert api_error_message(server) == "InternalFailure: boom"


def test_connection_refused_names_endpoint(tmp_path: Path, sensitive: Sensitive) -> None:
    port = closed_port()
    plaintext = "plaintext-that-must-not-show-9d2e"
    sensitive(plaintext)
    env = {ACCESS_KEY_ID_ENV: ACCESS_KEY_ID, ACCESS_KEY_SECRET_ENV: SECRET}
    args = ["encrypt", "--key-id", "key-1", "--plaintext", plaintext]
    result = run([*args, "--endpoint", f"127.0.0.1:{port}"], env=env)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot connect to the KMS at https://127.0.0.1:{port}: connection refused; "
        f"check the host and port of --endpoint 127.0.0.1:{port}, or start a local KMS with "
        "'hyok up'\n"
    )

    up_file = write_up_file(tmp_path / "hyok-up.json", kms_endpoint=f"127.0.0.1:{port}")
    result = run([*args, "--up-file", str(up_file)])
    assert result.exit_code == 1
    assert f"Start it with 'hyok up --data-dir {tmp_path}'" in result.stderr

    # A wrong --endpoint with a running stack's file: the hint is the endpoint, not the stack.
    result = run([*args, "--up-file", str(up_file), "--endpoint", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert f"leave --endpoint out to use the kms_endpoint of {up_file}" in result.stderr
    assert "Start it with" not in result.stderr
    assert plaintext not in result.output


def test_flatten_nested_objects() -> None:
    fields = flatten(
        {
            "InstanceId": "kst-1",
            "KeyNum": 2,
            "ZoneIds": ["a", "b"],
            "XkiProxy": {"UriPath": "/kms/xks/v1", "Tags": [{"k": "v"}]},
            "ErrorReason": None,
        }
    )
    assert fields == [
        ("InstanceId", "kst-1"),
        ("KeyNum", "2"),
        ("ZoneIds", "a, b"),
        ("XkiProxy.UriPath", "/kms/xks/v1"),
        ("XkiProxy.Tags", '[{"k": "v"}]'),
        ("ErrorReason", ""),
    ]


# --- Option checks that fail before any call -------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["encrypt", "--key-id", "k", "--plaintext", "x", "--context", "novalue"],
            "'novalue' is not NAME=VALUE",
        ),
        (
            ["encrypt", "--key-id", "k", "--plaintext", "x", "--context", "=v"],
            "'=v' is not NAME=VALUE",
        ),
        (
            [
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "x",
                "--context",
                "a=1",
                "--context",
                "a=2",
            ],
            "the name 'a' is given twice",
        ),
        (["encrypt", "--key-id", "k", "--plaintext", "x", "--in", "f"], "pass only one of them"),
        (["decrypt", "--ciphertext", "x", "--in", "f"], "pass only one"),
        (
            [
                "generate-data-key",
                "--key-id",
                "k",
                "--number-of-bytes",
                "16",
                "--key-spec",
                "AES_128",
            ],
            "pass only one of them",
        ),
        (["generate-data-key", "--key-id", "k", "--number-of-bytes", "1025"], "1025"),
        (["list-keys", "--all", "--page-number", "2"], "cannot be combined with --page-number"),
        (["list-keys", "--page-size", "101"], "101"),
        (["list-keys", "--filter", "KeyState"], "'KeyState' is not NAME=VALUE"),
        (["create-key", "--external-key-id", "app-1", "--tag", "team"], "'team' is not NAME=VALUE"),
        (["instance", "list", "--all", "--page-number", "1"], "cannot be combined"),
    ],
)
def test_option_errors(args: list[str], fragment: str) -> None:
    result = run(args)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr


def test_policy_file_must_be_json(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text("{not json", encoding="utf-8")
    result = run(["create-key", "--external-key-id", "app-1", "--policy-file", str(policy)])
    assert result.exit_code == 2
    assert f"the file {policy} is not valid JSON" in result.stderr


def test_encrypt_without_input_on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyok.cli import kms_calls

    monkeypatch.setattr(kms_calls, "_stdin_is_tty", lambda: True)
    result = run(["encrypt", "--key-id", "k"])
    assert result.exit_code == 2
    assert "no data given: pass it with --in FILE, or pipe it to standard input" in result.stderr


def test_encrypt_with_empty_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyok.cli import kms_calls

    monkeypatch.setattr(kms_calls, "_stdin_is_tty", lambda: False)
    result = run(["encrypt", "--key-id", "k"], input="")
    assert result.exit_code == 2
    assert "standard input is empty, so there is no data" in result.stderr


# --- Instance configure ------------------------------------------------------------------


CONFIGURE = ["instance", "configure", "kst-unittest0001", "--proxy-endpoint", "https://xki.example"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--connectivity", "vpc"], "--connectivity vpc needs --vpc-endpoint-service NAME"),
        (
            ["--connectivity", "public", "--vpc-endpoint-service", "svc"],
            "--vpc-endpoint-service applies only to --connectivity vpc",
        ),
        (["--connectivity", "public"], "Missing option '--uri-path'"),
        (
            ["--connectivity", "public", "--uri-path", "/kms/xks/v1"],
            "Missing option '--proxy-access-key-id'",
        ),
        (
            [
                "--connectivity",
                "public",
                "--uri-path",
                "/kms/xks/v1",
                "--proxy-access-key-id",
                "AKID",
            ],
            "no proxy secret given: pass --proxy-secret-file FILE",
        ),
        (["--connectivity", "other"], "'other' is not one of"),
    ],
)
def test_configure_option_errors(args: list[str], fragment: str) -> None:
    result = run([*CONFIGURE, *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr


def test_configure_needs_proxy_endpoint() -> None:
    result = run(["instance", "configure", "kst-1", "--connectivity", "public"])
    assert result.exit_code == 2
    assert "Missing option '--proxy-endpoint'" in result.stderr


def test_configure_empty_secret_file(tmp_path: Path) -> None:
    empty = tmp_path / "secret"
    empty.write_text("\n", encoding="ascii")
    result = run(
        [
            *CONFIGURE,
            "--connectivity",
            "public",
            "--uri-path",
            "/kms/xks/v1",
            "--proxy-access-key-id",
            "AKID",
            "--proxy-secret-file",
            str(empty),
        ]
    )
    assert result.exit_code == 2
    assert f"{empty} contains no secret" in result.stderr


def test_read_proxy_configuration(tmp_path: Path, sensitive: Sensitive) -> None:
    stored = generate_credential()
    secret = stored.credential.secret.reveal()
    sensitive(secret)
    path = tmp_path / "xks-proxy-configuration.json"
    path.write_text(json.dumps(proxy_configuration("/team/kms/xks/v1", stored.credential)))
    path.chmod(0o600)
    parsed = read_proxy_configuration(path)
    assert parsed.uri_path == "/team/kms/xks/v1"
    assert parsed.access_key_id == stored.credential.access_key_id
    assert parsed.secret.reveal() == secret
    assert secret not in repr(parsed)


def test_read_proxy_configuration_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "xks-proxy-configuration.json"
    path.write_text(
        json.dumps({"XksProxyAuthenticationCredential": {"RawSecretAccessKey": SECRET}}),
        encoding="utf-8",
    )
    with pytest.raises(click.BadParameter) as caught:
        read_proxy_configuration(path)
    message = caught.value.format_message()
    assert (
        "lacks the string field XksProxyUriPath, XksProxyAuthenticationCredential.AccessKeyId"
        in message
    )
    assert SECRET not in message
