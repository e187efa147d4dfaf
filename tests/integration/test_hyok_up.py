"""``hyok up`` as a user runs it, as a real process in a temporary data directory.

It starts the XKI proxy and the KMS as child processes on loopback and binds an instance
through the KMS API. It stops everything on SIGINT or SIGTERM, or when a child dies.

The instance steps need the KMS actions CreateKmsInstance, UpdateXkiProxyConfiguration,
ConnectKmsInstance and GetKmsInstance, and the printed snippet needs CreateKey, Encrypt
and Decrypt. Without them ``hyok up`` exits with "the KMS has no <action> action", and
``start_up`` fails the test with that message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import pytest
from alibabacloud_kms20160120 import models as kms_models  # type: ignore[import-untyped]
from alibabacloud_kms20160120.client import Client as KmsClient  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
)
from darabonba.runtime import ExtendsParameters  # type: ignore[import-untyped]

from hyok.xki.settings import Pkcs11BackendSettings, load_settings
from tests.conftest import register_sensitive
from tests.integration._sdk import call, client_error, close_sdk_connections, runtime

pytestmark = pytest.mark.integration

HYOK = [sys.executable, "-m", "hyok.cli"]
STATE_FIELDS = {
    "region",
    "kms_endpoint",
    "ca_cert",
    "account_id",
    "access_key_id",
    "access_key_secret",
    "instance_id",
    "xki_endpoint",
    "external_key_id",
    "console_password",
}
READY_LINE = "Press Ctrl-C to stop."
STARTED = re.compile(r"Started server process \[(\d+)\]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Up:
    data_dir: Path
    kms_port: int
    xki_port: int
    admin_port: int
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def text(self) -> str:
        return self.output.read_text(errors="replace")

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "hyok-up.json").read_text())
        return data

    def server_pid(self, log_name: str) -> int:
        """The PID of the newest server process that wrote to DIR/logs/<log_name>."""
        found = STARTED.findall((self.data_dir / "logs" / log_name).read_text())
        assert found, f"no 'Started server process' line in {log_name}"
        return int(found[-1])


def start_up(
    data_dir: Path, *, ports: tuple[int, int, int] | None = None, extra: Sequence[str] = ()
) -> Up:
    kms_port, xki_port, admin_port = ports or (free_port(), free_port(), free_port())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    output = data_dir.parent / f"up-{len(list(data_dir.parent.glob('up-*.out')))}.out"
    with output.open("wb") as stream:
        process = subprocess.Popen(
            [
                *HYOK,
                "up",
                "--data-dir",
                str(data_dir),
                "--kms-port",
                str(kms_port),
                "--xki-port",
                str(xki_port),
                "--xki-admin-port",
                str(admin_port),
                *extra,
            ],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    up = Up(data_dir, kms_port, xki_port, admin_port, process, output)
    deadline = time.monotonic() + 90
    while READY_LINE not in up.text:
        if process.poll() is not None:
            missing = re.search(r"the KMS has no (\w+) action", up.text)
            if missing:
                pytest.fail(
                    f"hyok up needs the KMS action {missing.group(1)}, which is not "
                    f"implemented yet:\n{up.text}",
                    pytrace=False,
                )
            raise AssertionError(f"hyok up exited with {process.returncode}:\n{up.text}")
        if time.monotonic() > deadline:
            stop_up(up)
            raise AssertionError(f"hyok up did not get ready:\n{up.text}")
        time.sleep(0.2)
    register_secrets(data_dir)
    return up


def register_secrets(data_dir: Path) -> None:
    state = json.loads((data_dir / "hyok-up.json").read_text())
    register_sensitive(state["access_key_secret"])
    register_sensitive(state["console_password"])
    for name in ("passphrase", "admin-token", "pkcs11-pin", "pkcs11-so-pin"):
        secret_file = data_dir / "secrets" / name
        if secret_file.exists():
            register_sensitive(secret_file.read_text().strip())
    register_sensitive((data_dir / "kms" / "secrets" / "root-key").read_text().strip())
    document = json.loads((data_dir / "xks-proxy-configuration.json").read_text())
    register_sensitive(document["XksProxyAuthenticationCredential"]["RawSecretAccessKey"])


def stop_up(up: Up, sig: int = signal.SIGINT) -> int:
    if up.process.poll() is None:
        up.process.send_signal(sig)
        try:
            up.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.process.kill()
            up.process.wait()
    return up.process.returncode


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def sdk_config(up: Up) -> Config:
    state = up.state
    return Config(
        access_key_id=state["access_key_id"],
        access_key_secret=state["access_key_secret"],
        endpoint=state["kms_endpoint"],
        protocol="https",
        region_id=state["region"],
        ca=state["ca_cert"],
    )


def sdk(up: Up) -> Client:
    return Client(sdk_config(up))


def run_hyok(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*HYOK, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"hyok {' '.join(args)} failed: {result.stderr}"
    return result


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = start_up(tmp_path_factory.mktemp("up") / "data")
    yield up
    close_sdk_connections(up.state["kms_endpoint"])
    stop_up(up)


# A running stack ---------------------------------------------------------------------


def test_state_file_private_and_complete(stack: Up) -> None:
    path = stack.data_dir / "hyok-up.json"
    assert path.stat().st_mode & 0o777 == 0o600
    state = stack.state
    assert set(state) == STATE_FIELDS
    assert all(state[name] for name in STATE_FIELDS), state.keys()
    assert state["region"] == "cn-hangzhou"
    assert state["kms_endpoint"] == f"127.0.0.1:{stack.kms_port}"
    assert state["xki_endpoint"] == f"https://localhost:{stack.xki_port}"
    assert Path(state["ca_cert"]) == (stack.data_dir / "kms" / "tls" / "ca.pem").resolve()
    assert len(state["account_id"]) == 16
    assert state["access_key_id"].startswith("LTAI")
    assert state["instance_id"].startswith("kst-")


def test_output_keeps_secret_in_file(stack: Up) -> None:
    text = stack.text
    state = stack.state
    assert state["access_key_secret"] not in text
    assert state["instance_id"] in text
    assert str(stack.data_dir / "hyok-up.json") in text


def test_console_password_in_state_only(stack: Up) -> None:
    from hyok.common.secrets import Secret
    from hyok.kms.bootstrap import open_store
    from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
    from hyok.kms.ram import ConsoleSignInError, LoginProfileService
    from hyok.kms.settings import load_settings

    path = stack.data_dir / "hyok-up.json"
    assert path.stat().st_mode & 0o777 == 0o600
    state = stack.state
    password = state["console_password"]
    assert len(password) == 24
    assert f"Console:        https://127.0.0.1:{stack.kms_port}/console" in stack.text
    assert "console_password from the file below" in stack.text
    assert password not in stack.text
    for log in (stack.data_dir / "logs").glob("*.log"):
        assert password not in log.read_text(errors="replace"), log

    store = open_store(load_settings(stack.data_dir / "kms" / "kms.toml"), migrate=False)
    try:
        service = LoginProfileService(store)
        account_id = state["account_id"]
        assert service.sign_in(account_id, Secret(password)) == RamIdentity(
            account_id, CallerKind.ROOT
        )
        with pytest.raises(ConsoleSignInError):
            service.sign_in(account_id, Secret(password + "x"))
    finally:
        store.database.dispose()


def test_data_directory_private(stack: Up) -> None:
    assert stack.data_dir.stat().st_mode & 0o777 == 0o700
    assert (stack.data_dir / "kms" / "secrets" / "root-key").stat().st_mode & 0o777 == 0o600
    for log in (stack.data_dir / "logs").glob("*.log"):
        assert log.stat().st_mode & 0o077 == 0, log


def test_instance_connected_to_proxy(stack: Up) -> None:
    state = stack.state
    body = call(sdk(stack), "GetKmsInstance", {"KmsInstanceId": state["instance_id"]})
    instance = body["KmsInstance"]
    assert instance["Status"] == "Connected"
    assert instance["InstanceId"] == state["instance_id"]


def test_printed_snippet_encrypts(stack: Up, tmp_path: Path) -> None:
    text = stack.text
    start = text.index("import base64, json")
    end = text.index("\n", text.index("print(key.key_id"))
    script = tmp_path / "snippet.py"
    script.write_text(text[start:end] + "\n")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    key_id, _, plaintext = result.stdout.strip().partition(" ")
    assert key_id.startswith("key-")
    assert plaintext == "b'hello'"


def test_kmi_cli_reaches_key_manager(stack: Up) -> None:
    output = run_hyok("kmi", "list-keys", "--data-dir", str(stack.data_dir), "--output", "json")
    keys = json.loads(output.stdout)["keys"]
    assert stack.state["external_key_id"] in [key["keyId"] for key in keys]


def test_kms_cli_reaches_database(stack: Up) -> None:
    state = stack.state
    output = run_hyok(
        "kms",
        "access-key",
        "list",
        "--data-dir",
        str(stack.data_dir),
        "--account-id",
        state["account_id"],
        "--output",
        "json",
    )
    listed = json.loads(output.stdout)["accessKeys"]
    assert [item["accessKeyId"] for item in listed] == [state["access_key_id"]]


# Stopping and restarting -------------------------------------------------------------


def test_restart_reuses_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_up(data_dir)
    before = first.state
    pids = [first.server_pid("xki.log"), first.server_pid("kms.log")]
    status = stop_up(first)
    assert status == 0
    assert "Stopping hyok." in first.text
    assert all(process_gone(pid) for pid in pids)

    second = start_up(data_dir, ports=(free_port(), free_port(), free_port()))
    try:
        after = second.state
        for name in (
            "account_id",
            "access_key_id",
            "access_key_secret",
            "instance_id",
            "console_password",
        ):
            assert after[name] == before[name], name
        assert after["external_key_id"] == before["external_key_id"]
        assert after["kms_endpoint"] == f"127.0.0.1:{second.kms_port}"
        assert after["xki_endpoint"] == f"https://localhost:{second.xki_port}"
        body = call(sdk(second), "GetKmsInstance", {"KmsInstanceId": after["instance_id"]})
        assert body["KmsInstance"]["Status"] == "Connected"
        listed = call(sdk(second), "ListKmsInstances", {})
        assert listed["TotalCount"] == 1
    finally:
        close_sdk_connections(second.state["kms_endpoint"])
        assert stop_up(second, signal.SIGTERM) == 0


def test_dead_child_stops_stack(tmp_path: Path) -> None:
    up = start_up(tmp_path / "data")
    proxy_pid = up.server_pid("xki.log")
    kms_pid = up.server_pid("kms.log")
    os.kill(kms_pid, signal.SIGKILL)
    try:
        up.process.wait(timeout=30)
    finally:
        stop_up(up)
    assert up.process.returncode == 1
    assert f"error: the KMS (pid {kms_pid}) was killed by signal 9" in up.text
    assert process_gone(proxy_pid)


def test_killed_up_takes_children_along(tmp_path: Path) -> None:
    up = start_up(tmp_path / "data")
    pids = [up.server_pid("xki.log"), up.server_pid("kms.log")]
    up.process.kill()
    up.process.wait()
    assert all(process_gone(pid) for pid in pids)


def test_busy_port_names_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *HYOK,
                "up",
                "--data-dir",
                str(tmp_path / "data"),
                "--kms-port",
                str(port),
                "--xki-port",
                str(free_port()),
                "--xki-admin-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1, which the KMS needs, is not available" in result.stderr
    assert "pass --kms-port with a free port" in result.stderr


def test_same_port_twice_rejected(tmp_path: Path) -> None:
    port = str(free_port())
    result = subprocess.run(
        [
            *HYOK,
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--kms-port",
            port,
            "--xki-port",
            port,
            "--xki-admin-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert f"are both set to port {port}" in result.stderr


def test_second_up_on_same_directory_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    data_dir.mkdir(mode=0o700)
    # A running hyok up holds this lock for its whole life.
    with filelock.FileLock(data_dir / "hyok-up.lock"):
        result = subprocess.run(
            [*HYOK, "up", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert "another hyok up is running" in result.stderr
    assert not (data_dir / "xki.toml").exists()


# The PKCS#11 key manager -------------------------------------------------------------

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PKCS11 = ("--kmi", "pkcs11")


def require_softhsm() -> None:
    if not SOFTHSM_MODULE.is_file():
        pytest.skip("SoftHSMv2 is not installed: install the Debian package softhsm2")


@pytest.fixture(scope="module")
def pkcs11_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    require_softhsm()
    up = start_up(tmp_path_factory.mktemp("up-pkcs11") / "data", extra=PKCS11)
    yield up
    close_sdk_connections(up.state["kms_endpoint"])
    stop_up(up)


def kms_client(up: Up) -> KmsClient:
    """The typed client of the official KMS SDK, as an application uses it."""
    return KmsClient(sdk_config(up))


def create_external_key(up: Up, external_key_id: str) -> str:
    options = runtime()
    options.extends_parameters = ExtendsParameters(queries={"ExternalKeyId": external_key_id})
    request = kms_models.CreateKeyRequest(dkmsinstance_id=up.state["instance_id"])
    metadata = kms_client(up).create_key_with_options(request, options).body.key_metadata
    assert metadata.dkmsinstance_id == up.state["instance_id"]
    key_id: str = metadata.key_id
    return key_id


def encrypt(up: Up, key_id: str, plaintext: bytes, context: dict[str, str]) -> str:
    request = kms_models.EncryptRequest(
        key_id=key_id,
        plaintext=base64.b64encode(plaintext).decode(),
        encryption_context=context,
    )
    body = kms_client(up).encrypt_with_options(request, runtime()).body
    assert body.key_id == key_id
    blob: str = body.ciphertext_blob
    return blob


def decrypt(up: Up, blob: str, context: dict[str, str]) -> bytes:
    request = kms_models.DecryptRequest(ciphertext_blob=blob, encryption_context=context)
    return base64.b64decode(kms_client(up).decrypt_with_options(request, runtime()).body.plaintext)


def test_pkcs11_stack_uses_own_softhsm_token(pkcs11_stack: Up) -> None:
    data_dir = pkcs11_stack.data_dir
    settings = load_settings(data_dir / "xki.toml")
    backend = settings.backends[settings.keystores[0].backend]
    assert isinstance(backend, Pkcs11BackendSettings)
    assert backend.module == SOFTHSM_MODULE
    assert [token.label for token in backend.tokens] == ["hyok"]
    assert backend.pin.file == data_dir / "secrets" / "pkcs11-pin"
    conf = Path(backend.environment["SOFTHSM2_CONF"])
    assert conf == (data_dir / "softhsm" / "softhsm2.conf").resolve()
    assert str((data_dir / "softhsm" / "tokens").resolve()) in conf.read_text()
    assert not (data_dir / "keystore.hyok").exists()


def test_pkcs11_pins_private_and_unlogged(pkcs11_stack: Up) -> None:
    data_dir = pkcs11_stack.data_dir
    for name in ("pkcs11-pin", "pkcs11-so-pin"):
        path = data_dir / "secrets" / name
        assert path.stat().st_mode & 0o777 == 0o600, name
        pin = path.read_text().strip()
        assert len(pin) >= 24, name
        assert pin not in pkcs11_stack.text, name
        for log in (data_dir / "logs").glob("*"):
            assert pin not in log.read_text(errors="replace"), (name, log.name)
    assert (data_dir / "softhsm").stat().st_mode & 0o777 == 0o700


def test_pkcs11_sdk_round_trip(pkcs11_stack: Up) -> None:
    key_id = create_external_key(pkcs11_stack, pkcs11_stack.state["external_key_id"])
    context = {"purpose": "hyok-up-pkcs11"}
    plaintext = os.urandom(48)
    blob = encrypt(pkcs11_stack, key_id, plaintext, context)
    assert decrypt(pkcs11_stack, blob, context) == plaintext

    request = kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=context)
    body = kms_client(pkcs11_stack).generate_data_key_with_options(request, runtime()).body
    data_key = base64.b64decode(body.plaintext)
    register_sensitive(data_key)
    assert len(data_key) == 32
    assert decrypt(pkcs11_stack, body.ciphertext_blob, context) == data_key


def test_pkcs11_kmi_commands_manage_token(pkcs11_stack: Up) -> None:
    data_dir = str(pkcs11_stack.data_dir)
    created = run_hyok(
        "kmi", "create-key", "--key-id", "up-cli-key", "--data-dir", data_dir, "--output", "json"
    )
    assert json.loads(created.stdout)["keyStatus"] == "ENABLED"
    key_id = create_external_key(pkcs11_stack, "up-cli-key")
    context = {"step": "before"}
    blob = encrypt(pkcs11_stack, key_id, b"through the token", context)

    run_hyok("kmi", "disable-key", "up-cli-key", "--data-dir", data_dir)
    error = client_error(lambda: decrypt(pkcs11_stack, blob, context))
    assert "is not ENABLED" in error.message

    run_hyok("kmi", "enable-key", "up-cli-key", "--data-dir", data_dir)
    assert decrypt(pkcs11_stack, blob, context) == b"through the token"

    listed = run_hyok("kmi", "list-keys", "--data-dir", data_dir, "--output", "json")
    statuses = {key["keyId"]: key["keyStatus"] for key in json.loads(listed.stdout)["keys"]}
    assert statuses["up-cli-key"] == "ENABLED"
    assert statuses[pkcs11_stack.state["external_key_id"]] == "ENABLED"

    run_hyok("kmi", "create-key", "--key-id", "up-cli-gone", "--data-dir", data_dir)
    run_hyok("kmi", "delete-key", "up-cli-gone", "--yes", "--data-dir", data_dir)
    listed = run_hyok("kmi", "list-keys", "--data-dir", data_dir, "--output", "json")
    assert "up-cli-gone" not in [key["keyId"] for key in json.loads(listed.stdout)["keys"]]


def test_pkcs11_restart_keeps_token_keys(tmp_path: Path) -> None:
    require_softhsm()
    data_dir = tmp_path / "data"
    first = start_up(data_dir, extra=PKCS11)
    try:
        key_id = create_external_key(first, first.state["external_key_id"])
        blob = encrypt(first, key_id, b"kept on the token", {})
    finally:
        close_sdk_connections(first.state["kms_endpoint"])
        assert stop_up(first) == 0

    second = start_up(data_dir, extra=PKCS11)
    try:
        assert decrypt(second, blob, {}) == b"kept on the token"
    finally:
        close_sdk_connections(second.state["kms_endpoint"])
        assert stop_up(second) == 0

    result = subprocess.run(
        [*HYOK, "up", "--data-dir", str(data_dir), "--kmi", "file"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "--kmi file differs from the pkcs11 key manager" in result.stderr


def test_pkcs11_options_need_kmi_pkcs11(tmp_path: Path) -> None:
    result = subprocess.run(
        [*HYOK, "up", "--data-dir", str(tmp_path / "data"), "--pkcs11-token-label", "hsm"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--pkcs11-token-label: valid only with --kmi pkcs11" in result.stderr
    assert not (tmp_path / "data").exists()


# The console password of the account root ---------------------------------------------


def test_console_password_kept_reset_or_left(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hyok.common.secrets import Secret
    from hyok.kms.domain import Account
    from hyok.kms.ram import LoginProfileService
    from hyok.kms.store import KmsStore, SecretBox, open_database, upgrade
    from hyok.up import _console_password

    database = open_database(f"sqlite:///{tmp_path / 'kms.db'}")
    try:
        upgrade(database)
        store = KmsStore(database, SecretBox(bytes(range(32))))
        account_id = "123456789012"
        with store.session() as session:
            session.accounts.create(Account(account_id=account_id, created_at=datetime.now(UTC)))
        service = LoginProfileService(store)

        # A first run generates one; a restart keeps it.
        first = _console_password(store, {}, account_id)
        assert first is not None
        register_sensitive(first)
        saved = {"account_id": account_id, "console_password": first}
        assert _console_password(store, saved, account_id) == first

        # A database that lost the password gets the saved one again.
        with store.session() as session:
            session.console_passwords.delete(account_id)
        assert _console_password(store, saved, account_id) == first
        assert service.sign_in(account_id, Secret(first)).account_id == account_id

        # A saved password of another account is not reused.
        with store.session() as session:
            session.console_passwords.delete(account_id)
        other = _console_password(store, {**saved, "account_id": "999988887777"}, account_id)
        assert other is not None
        assert other != first
        register_sensitive(other)

        # A password changed with 'hyok kms account set-console-password' stays.
        register_sensitive("Changed-by-admin-1")
        service.set_root_console_password(account_id, Secret("Changed-by-admin-1"))
        assert _console_password(store, {**saved, "console_password": other}, account_id) is None
        assert service.sign_in(account_id, Secret("Changed-by-admin-1")).account_id == account_id
    finally:
        database.dispose()


# The KMIP key manager -----------------------------------------------------------------

KMIP = ("--kmi", "kmip")


@pytest.fixture(scope="module")
def kmip_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = start_up(tmp_path_factory.mktemp("up-kmip") / "data", extra=KMIP)
    yield up
    close_sdk_connections(up.state["kms_endpoint"])
    stop_up(up)


def pykmip_pids(up: Up) -> list[int]:
    """The PIDs of the PyKMIP server that hyok up runs and of its helper processes."""
    config = str(up.data_dir / "kmip-server" / "server.conf")
    found = []
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hyok.kmi.kmip.pykmip_server" in arguments and config.encode() in arguments:
            found.append(int(entry.name))
    # The server, its multiprocessing manager and its policy monitor.
    assert len(found) == 3, found
    return found


def test_kmip_stack_uses_own_pykmip_server(kmip_stack: Up) -> None:
    from hyok.xki.settings import KmipBackendSettings

    data_dir = kmip_stack.data_dir
    settings = load_settings(data_dir / "xki.toml")
    backend = settings.backends[settings.keystores[0].backend]
    assert isinstance(backend, KmipBackendSettings)
    assert backend.host == "127.0.0.1"
    assert backend.cert_file == data_dir / "kmip-server" / "client.pem"
    assert (data_dir / "kmip-server").stat().st_mode & 0o777 == 0o700
    assert (data_dir / "kmip-server" / "client-key.pem").stat().st_mode & 0o777 == 0o600
    assert not (data_dir / "keystore.hyok").exists()
    assert "Processing operation: Encrypt" in (data_dir / "logs" / "pykmip.log").read_text()


def test_kmip_sdk_round_trip(kmip_stack: Up) -> None:
    key_id = create_external_key(kmip_stack, kmip_stack.state["external_key_id"])
    context = {"purpose": "hyok-up-kmip"}
    plaintext = os.urandom(48)
    blob = encrypt(kmip_stack, key_id, plaintext, context)
    assert decrypt(kmip_stack, blob, context) == plaintext

    request = kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=context)
    body = kms_client(kmip_stack).generate_data_key_with_options(request, runtime()).body
    data_key = base64.b64decode(body.plaintext)
    register_sensitive(data_key)
    assert len(data_key) == 32
    assert decrypt(kmip_stack, body.ciphertext_blob, context) == data_key


def test_kmip_kmi_commands_manage_server(kmip_stack: Up) -> None:
    data_dir = str(kmip_stack.data_dir)
    created = run_hyok(
        "kmi", "create-key", "--key-id", "up-kmip-key", "--data-dir", data_dir, "--output", "json"
    )
    assert json.loads(created.stdout)["keyStatus"] == "ENABLED"
    key_id = create_external_key(kmip_stack, "up-kmip-key")
    context = {"step": "before"}
    blob = encrypt(kmip_stack, key_id, b"through the KMIP server", context)

    run_hyok("kmi", "disable-key", "up-kmip-key", "--data-dir", data_dir)
    error = client_error(lambda: decrypt(kmip_stack, blob, context))
    assert "is not ENABLED" in error.message

    run_hyok("kmi", "enable-key", "up-kmip-key", "--data-dir", data_dir)
    assert decrypt(kmip_stack, blob, context) == b"through the KMIP server"

    listed = run_hyok("kmi", "list-keys", "--data-dir", data_dir, "--output", "json")
    statuses = {key["keyId"]: key["keyStatus"] for key in json.loads(listed.stdout)["keys"]}
    assert statuses["up-kmip-key"] == "ENABLED"
    assert statuses[kmip_stack.state["external_key_id"]] == "ENABLED"

    run_hyok("kmi", "create-key", "--key-id", "up-kmip-gone", "--data-dir", data_dir)
    run_hyok("kmi", "delete-key", "up-kmip-gone", "--yes", "--data-dir", data_dir)
    listed = run_hyok("kmi", "list-keys", "--data-dir", data_dir, "--output", "json")
    assert "up-kmip-gone" not in [key["keyId"] for key in json.loads(listed.stdout)["keys"]]


def test_kmip_restart_keeps_keys_and_server_dies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_up(data_dir, extra=KMIP)
    try:
        server_pids = pykmip_pids(first)
        key_id = create_external_key(first, first.state["external_key_id"])
        blob = encrypt(first, key_id, b"kept on the KMIP server", {})
        run_hyok("kmi", "create-key", "--key-id", "kept-disabled", "--data-dir", str(data_dir))
        run_hyok("kmi", "disable-key", "kept-disabled", "--data-dir", str(data_dir))
    finally:
        close_sdk_connections(first.state["kms_endpoint"])
        assert stop_up(first) == 0
    assert all(process_gone(pid) for pid in server_pids)

    second = start_up(data_dir)
    try:
        assert decrypt(second, blob, {}) == b"kept on the KMIP server"
        described = run_hyok(
            "kmi", "describe-key", "kept-disabled", "--data-dir", str(data_dir), "--output", "json"
        )
        assert json.loads(described.stdout)["keyStatus"] == "DISABLED"
        server_pids = pykmip_pids(second)
        second.process.kill()
        second.process.wait()
        assert all(process_gone(pid) for pid in server_pids)
    finally:
        close_sdk_connections(second.state["kms_endpoint"])
        stop_up(second)


def test_kmip_options_need_kmi_kmip(tmp_path: Path) -> None:
    result = subprocess.run(
        [*HYOK, "up", "--data-dir", str(tmp_path / "data"), "--kmip-host", "kmip.internal"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--kmip-host: valid only with --kmi kmip" in result.stderr
    assert not (tmp_path / "data").exists()
