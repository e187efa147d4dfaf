"""The KMIP backend against a real PyKMIP server: keys, cryptography, state, recovery, errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.errors import (
    ConfigError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    ValidationError,
)
from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_client_certificate
from hyok.kmi.base import HealthStatus, KeyState, KeyUsage
from hyok.kmi.kmip import KmipKeyManager, ServerAddress, tls_context
from hyok.kmi.kmip.pykmip_server import prepare_server, start_server
from hyok.xki.settings import KmipBackendSettings, load_settings
from tests.conftest import register_sensitive
from tests.integration._pykmip import (
    Pykmip,
    free_port,
    open_manager,
    pykmip,  # noqa: F401 - a pytest fixture, found by name
)
from tests.integration._xks import (
    expect_ok,
    init_data_dir,
    keystore_entry,
    run_proxy,
    secret_bytes,
)

pytestmark = pytest.mark.integration

HYOK = [sys.executable, "-m", "hyok.cli"]


@pytest.fixture(scope="module")
def manager(pykmip: Pykmip) -> Iterator[KmipKeyManager]:  # noqa: F811 - the fixture
    backend = open_manager(pykmip)
    yield backend
    backend.close()


def new_key_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------
# Key management


def test_create_describe_list(manager: KmipKeyManager) -> None:
    key_id = new_key_id()

    created = manager.create_key(key_id)
    described = manager.describe_key(key_id)
    listed = {info.key_id: info for info in manager.list_keys()}

    assert created == described
    assert described.state is KeyState.ENABLED
    assert described.usages == {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}
    assert listed[key_id] == described


def test_create_existing_key_rejected(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    with pytest.raises(KeyAlreadyExistsError, match=key_id):
        manager.create_key(key_id)


def test_create_without_id_generates_one(manager: KmipKeyManager) -> None:
    info = manager.create_key()

    assert uuid.UUID(info.key_id)
    assert manager.describe_key(info.key_id).key_id == info.key_id


def test_list_hides_health_key_and_markers(manager: KmipKeyManager) -> None:
    disabled = new_key_id()
    manager.create_key(disabled)
    manager.disable_key(disabled)
    manager.health()

    listed = {info.key_id: info for info in manager.list_keys()}

    assert list(listed) == sorted(listed)
    assert all(" " not in key_id and ":" not in key_id for key_id in listed)
    assert listed[disabled].state is KeyState.DISABLED


def test_delete_key(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.encrypt(key_id, b"warm the cache", b"")

    manager.delete_key(key_id)

    with pytest.raises(KeyNotFoundError, match=key_id):
        manager.describe_key(key_id)
    with pytest.raises(KeyNotFoundError):
        manager.encrypt(key_id, b"after delete", b"")
    with pytest.raises(KeyNotFoundError):
        manager.delete_key(key_id)


def test_recreated_key_starts_enabled(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.disable_key(key_id)
    manager.delete_key(key_id)

    info = manager.create_key(key_id)

    assert info.state is KeyState.ENABLED
    assert manager.describe_key(key_id).state is KeyState.ENABLED
    manager.encrypt(key_id, b"new key", b"")


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 129, "colon:inside"])
def test_invalid_key_id_rejected(manager: KmipKeyManager, key_id: str) -> None:
    with pytest.raises(ValidationError, match="invalid key ID"):
        manager.create_key(key_id)
    with pytest.raises(ValidationError, match="invalid key ID"):
        manager.encrypt(key_id, b"data", b"")


def test_unsupported_usage_rejected(manager: KmipKeyManager) -> None:
    with pytest.raises(ValidationError, match="SIGN"):
        manager.create_key(new_key_id(), [KeyUsage.SIGN])
    with pytest.raises(ValidationError, match="no key usage"):
        manager.create_key(new_key_id(), [])


def test_missing_key_not_found(manager: KmipKeyManager) -> None:
    with pytest.raises(KeyNotFoundError, match="no-such-key"):
        manager.describe_key("no-such-key")
    with pytest.raises(KeyNotFoundError):
        manager.decrypt("no-such-key", bytes(12), b"data", bytes(16), b"")


# ---------------------------------------------------------------------------
# Cryptography


def test_encrypt_decrypt_round_trip(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    plaintext = secret_bytes(64)
    aad = secret_bytes(40)

    result = manager.encrypt(key_id, plaintext, aad)

    assert len(result.iv) == 12
    assert len(result.tag) == 16
    assert len(result.ciphertext) == len(plaintext)
    assert result.ciphertext != plaintext
    assert manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, aad) == plaintext


def test_empty_plaintext_and_aad(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    result = manager.encrypt(key_id, b"", b"")

    assert result.ciphertext == b""
    assert manager.decrypt(key_id, result.iv, b"", result.tag, b"") == b""


def test_ivs_differ(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    ivs = {manager.encrypt(key_id, b"same", b"").iv for _ in range(30)}

    assert len(ivs) == 30


def test_matches_independent_aes_gcm(manager: KmipKeyManager, pykmip: Pykmip) -> None:  # noqa: F811
    # A key with known material checks the server's AES-GCM against the
    # cryptography package, in both directions, with 12- and 16-byte IVs.
    key_id = new_key_id()
    material = os.urandom(32)
    pykmip.import_key(key_id, material)
    reference = AESGCM(material)
    plaintext = secret_bytes(33)
    aad = b"associated data"

    result = manager.encrypt(key_id, plaintext, aad)
    opened = reference.decrypt(result.iv, result.ciphertext + result.tag, aad)

    assert opened == plaintext
    for iv_length in (12, 16):
        iv = os.urandom(iv_length)
        sealed = reference.encrypt(iv, plaintext, aad)
        assert manager.decrypt(key_id, iv, sealed[:-16], sealed[-16:], aad) == plaintext


def test_tampered_input_rejected(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    aad = b"context"
    result = manager.encrypt(key_id, secret_bytes(32), aad)

    def flipped(data: bytes) -> bytes:
        return bytes([data[0] ^ 1]) + data[1:]

    cases = {
        "ciphertext": (result.iv, flipped(result.ciphertext), result.tag, aad),
        "tag": (result.iv, result.ciphertext, flipped(result.tag), aad),
        "iv": (flipped(result.iv), result.ciphertext, result.tag, aad),
        "aad": (result.iv, result.ciphertext, result.tag, b"other context"),
        "missing aad": (result.iv, result.ciphertext, result.tag, b""),
        "short tag": (result.iv, result.ciphertext, result.tag[:12], aad),
        "bad iv length": (result.iv[:8], result.ciphertext, result.tag, aad),
    }
    messages = set()
    for case, (iv, ciphertext, tag, case_aad) in cases.items():
        with pytest.raises(InvalidCiphertextError) as caught:
            manager.decrypt(key_id, iv, ciphertext, tag, case_aad)
        messages.add(caught.value.message)
        assert caught.value.code == "InvalidCiphertextException", case

    assert len(messages) == 1


def test_ciphertext_bound_to_key(manager: KmipKeyManager) -> None:
    first, second = new_key_id(), new_key_id()
    manager.create_key(first)
    manager.create_key(second)
    result = manager.encrypt(first, b"for the first key", b"")

    with pytest.raises(InvalidCiphertextError):
        manager.decrypt(second, result.iv, result.ciphertext, result.tag, b"")


def test_oversized_input_rejected(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    with pytest.raises(ValidationError, match="65536"):
        manager.encrypt(key_id, bytes(65_537), b"")


def test_encrypt_only_key_refuses_decrypt(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    info = manager.create_key(key_id, [KeyUsage.ENCRYPT])
    result = manager.encrypt(key_id, b"one way", b"")

    assert info.usages == {KeyUsage.ENCRYPT}
    with pytest.raises(InvalidKeyUsageError, match="DECRYPT"):
        manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"")


# ---------------------------------------------------------------------------
# Key state


def test_disabled_key_refused(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    result = manager.encrypt(key_id, b"before disable", b"")

    disabled = manager.disable_key(key_id)

    assert disabled.state is KeyState.DISABLED
    assert manager.describe_key(key_id).state is KeyState.DISABLED
    with pytest.raises(InvalidStateError, match="disabled"):
        manager.encrypt(key_id, b"while disabled", b"")
    with pytest.raises(InvalidStateError):
        manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"")

    assert manager.enable_key(key_id).state is KeyState.ENABLED
    assert manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"") == (
        b"before disable"
    )


def test_disable_twice_is_idempotent(manager: KmipKeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    manager.disable_key(key_id)
    manager.disable_key(key_id)
    manager.enable_key(key_id)

    assert manager.describe_key(key_id).state is KeyState.ENABLED


def test_state_change_seen_by_second_manager(
    manager: KmipKeyManager,
    pykmip: Pykmip,  # noqa: F811
) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    other = open_manager(pykmip, state_cache_seconds=0.0)
    try:
        other.encrypt(key_id, b"enabled", b"")

        manager.disable_key(key_id)

        with pytest.raises(InvalidStateError):
            other.encrypt(key_id, b"disabled elsewhere", b"")
    finally:
        other.close()


def test_pre_active_key_enabled_by_activation(
    manager: KmipKeyManager,
    pykmip: Pykmip,  # noqa: F811
) -> None:
    key_id = new_key_id()
    pykmip.create_pre_active(key_id)

    assert manager.describe_key(key_id).state is KeyState.DISABLED
    with pytest.raises(InvalidStateError):
        manager.encrypt(key_id, b"pre-active", b"")

    assert manager.enable_key(key_id).state is KeyState.ENABLED
    manager.encrypt(key_id, b"now active", b"")


def test_deactivated_key_cannot_be_enabled(
    manager: KmipKeyManager,
    pykmip: Pykmip,  # noqa: F811
) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.encrypt(key_id, b"cached as active", b"")

    pykmip.revoke(pykmip.uid_of(key_id))

    with pytest.raises(InvalidStateError, match="Deactivated"):
        manager.encrypt(key_id, b"after revoke", b"")
    assert manager.describe_key(key_id).state is KeyState.DISABLED
    with pytest.raises(InvalidStateError, match="cannot make it Active again"):
        manager.enable_key(key_id)
    manager.delete_key(key_id)


# ---------------------------------------------------------------------------
# Restarts and broken connections


def test_state_survives_server_restart(pykmip: Pykmip) -> None:  # noqa: F811
    backend = open_manager(pykmip, retry_deadline_seconds=5.0)
    try:
        disabled, enabled = new_key_id(), new_key_id()
        backend.create_key(disabled)
        backend.create_key(enabled)
        before = backend.encrypt(enabled, b"before the restart", b"aad")
        backend.disable_key(disabled)

        # Every pooled connection breaks, as after a server restart or failover.
        pykmip.restart()

        after = backend.encrypt(enabled, b"after the restart", b"aad")
        health = backend.health()
        fresh = open_manager(pykmip)
        try:
            assert fresh.describe_key(disabled).state is KeyState.DISABLED
            assert fresh.describe_key(enabled).state is KeyState.ENABLED
        finally:
            fresh.close()

        assert backend.decrypt(enabled, before.iv, before.ciphertext, before.tag, b"aad") == (
            b"before the restart"
        )
        assert backend.decrypt(enabled, after.iv, after.ciphertext, after.tag, b"aad") == (
            b"after the restart"
        )
        # The pool found the closed connections before using them.
        assert health[0].status is HealthStatus.ACTIVE
    finally:
        backend.close()


def test_broken_connection_retried(
    pykmip: Pykmip,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = open_manager(pykmip, retry_deadline_seconds=5.0)
    try:
        key_id = new_key_id()
        backend.create_key(key_id)
        before = backend.encrypt(key_id, b"before the break", b"")
        # The idle connection is swapped for a socket whose peer closes it
        # once the request arrives: it looks open when taken from the pool and
        # breaks mid-request, as when a load balancer drops the connection.
        pooled, peer = socket.socketpair()
        closer = threading.Thread(target=lambda: (peer.recv(1), peer.close()))
        closer.start()
        [connection] = backend._pool._idle
        connection.sock.close()
        connection.sock = pooled
        caplog.set_level(logging.INFO)

        opened = backend.decrypt(key_id, before.iv, before.ciphertext, before.tag, b"")
        health = backend.health()
        closer.join()

        assert opened == b"before the break"
        assert "reconnecting" in caplog.text
        assert health[0].status is HealthStatus.DEGRADED
        assert "recovered from" in health[0].detail
        assert backend.health()[0].status is HealthStatus.ACTIVE
    finally:
        backend.close()


def test_server_down_reported(pykmip: Pykmip) -> None:  # noqa: F811
    backend = open_manager(pykmip, retry_deadline_seconds=0.5)
    key_id = new_key_id()
    backend.create_key(key_id)
    pykmip.stop()
    try:
        with pytest.raises(InternalError, match="unavailable") as caught:
            backend.encrypt(key_id, b"server down", b"")
        health = backend.health()
    finally:
        pykmip.restart()
        backend.close()

    assert caught.value.http_status == 500
    assert health[0].status is HealthStatus.UNAVAILABLE
    assert health[0].id == f"kmip:127.0.0.1:{pykmip.files.port}"


def test_health_reports_server(manager: KmipKeyManager, pykmip: Pykmip) -> None:  # noqa: F811
    health = manager.health()

    assert [(member.id, member.status) for member in health] == [
        (f"kmip:127.0.0.1:{pykmip.files.port}", HealthStatus.ACTIVE)
    ]
    assert health[0].model == "PyKMIP 0.11.0 Software Server"
    assert manager.vendor == "PyKMIP"


# ---------------------------------------------------------------------------
# Configuration errors and secrets


def test_unknown_ca_rejected(pykmip: Pykmip, tmp_path: Path) -> None:  # noqa: F811
    other = create_ca("another CA", days=30)
    other.write(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    files = pykmip.files
    context = tls_context(tmp_path / "ca.pem", files.client_cert_file, files.client_key_file, None)

    with pytest.raises(ConfigError, match="failed verification"):
        KmipKeyManager(pykmip.address, context)


def test_client_certificate_of_other_ca_rejected(pykmip: Pykmip, tmp_path: Path) -> None:  # noqa: F811
    other = create_ca("another CA", days=30)
    client = issue_client_certificate(other, subject="CN=intruder", days=10)
    client.write(tmp_path / "client.pem", tmp_path / "client-key.pem")
    context = tls_context(
        pykmip.files.ca_file, tmp_path / "client.pem", tmp_path / "client-key.pem", None
    )

    with pytest.raises(ConfigError, match=f"127.0.0.1:{pykmip.files.port}"):
        KmipKeyManager(pykmip.address, context, connect_timeout_seconds=2.0)


def test_wrong_server_name_rejected(pykmip: Pykmip) -> None:  # noqa: F811
    files = pykmip.files
    context = tls_context(files.ca_file, files.client_cert_file, files.client_key_file, None)
    address = ServerAddress("127.0.0.1", files.port, server_name="kmip.example.invalid")

    with pytest.raises(ConfigError, match="failed verification"):
        KmipKeyManager(address, context)


def test_nothing_listening_rejected(tmp_path: Path, pykmip: Pykmip) -> None:  # noqa: F811
    files = pykmip.files
    context = tls_context(files.ca_file, files.client_cert_file, files.client_key_file, None)

    with pytest.raises(ConfigError, match="cannot connect"):
        KmipKeyManager(ServerAddress("127.0.0.1", free_port()), context)


def test_encrypted_client_key_and_password(pykmip: Pykmip, tmp_path: Path) -> None:  # noqa: F811
    password = "kmip-key-password-3c9d1e"
    register_sensitive(password)
    files = pykmip.files
    key = serialization.load_pem_private_key(files.client_key_file.read_bytes(), None)
    encrypted = tmp_path / "client-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )

    context = tls_context(files.ca_file, files.client_cert_file, encrypted, Secret(password))
    backend = KmipKeyManager(pykmip.address, context)
    backend.close()
    with pytest.raises(ConfigError) as caught:
        tls_context(files.ca_file, files.client_cert_file, encrypted, Secret("wrong-password-99"))

    assert "key password is wrong" in caught.value.message
    assert password not in caught.value.message
    assert password not in repr(backend)
    assert "wrong-password-99" not in caught.value.message


def test_missing_files_rejected(tmp_path: Path, pykmip: Pykmip) -> None:  # noqa: F811
    files = pykmip.files
    with pytest.raises(ConfigError, match=r"CA file .* does not exist"):
        tls_context(tmp_path / "none.pem", files.client_cert_file, files.client_key_file, None)
    with pytest.raises(ConfigError, match=r"client key file .* does not exist"):
        tls_context(files.ca_file, files.client_cert_file, tmp_path / "none.pem", None)


def test_settings_checked() -> None:
    base = {
        "type": "kmip",
        "host": "kmip.internal",
        "ca_file": "ca.pem",
        "cert_file": "c.pem",
        "key_file": "k.pem",
    }

    settings = KmipBackendSettings.model_validate(base)

    assert settings.port == 5696
    assert settings.max_connections == 8
    with pytest.raises(pydantic.ValidationError, match="port"):
        KmipBackendSettings.model_validate({**base, "port": 0})
    with pytest.raises(pydantic.ValidationError, match="host"):
        KmipBackendSettings.model_validate({**base, "host": ""})
    with pytest.raises(pydantic.ValidationError, match="max_connections"):
        KmipBackendSettings.model_validate({**base, "max_connections": 0})


def test_key_and_data_never_logged(
    manager: KmipKeyManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_id = new_key_id()
    manager.create_key(key_id)
    plaintext, aad = secret_bytes(40), secret_bytes(24)
    result = manager.encrypt(key_id, plaintext, aad)
    with pytest.raises(InvalidCiphertextError):
        manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"wrong aad value")

    text = caplog.text
    assert plaintext.hex() not in text
    assert result.ciphertext.hex() not in text
    assert result.tag.hex() not in text


# ---------------------------------------------------------------------------
# hyok xki init --kmi kmip, and the XKS proxy over a KMIP backend


def test_xki_init_kmip(pykmip: Pykmip, tmp_path: Path) -> None:  # noqa: F811
    files = pykmip.files
    directory = tmp_path / "proxy"
    result = subprocess.run(
        [
            *HYOK,
            "xki",
            "init",
            "--dir",
            str(directory),
            "--kmi",
            "kmip",
            "--kmip-host",
            "127.0.0.1",
            "--kmip-port",
            str(files.port),
            "--kmip-ca-file",
            str(files.ca_file),
            "--kmip-cert-file",
            str(files.client_cert_file),
            "--kmip-key-file",
            str(files.client_key_file),
            "--key-id",
            "first-on-kmip",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keyId"] == "first-on-kmip"
    settings = load_settings(directory / "xki.toml")
    backend = settings.backends[settings.keystores[0].backend]
    assert isinstance(backend, KmipBackendSettings)
    assert (backend.host, backend.port) == ("127.0.0.1", files.port)
    assert backend.cert_file == files.client_cert_file
    assert not (directory / "keystore.hyok").exists()
    check = open_manager(pykmip)
    try:
        assert check.describe_key("first-on-kmip").state is KeyState.ENABLED
    finally:
        check.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kmi", "kmip"], "--kmi kmip needs --kmip-host"),
        (["--kmi", "kmip", "--kmip-host", "h"], "needs --kmip-ca-file, --kmip-cert-file"),
        (["--kmip-host", "h"], "--kmip-host: valid only with --kmi kmip"),
    ],
)
def test_xki_init_kmip_option_errors(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [*HYOK, "xki", "init", "--dir", str(tmp_path / "proxy"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "proxy").exists()


def test_xks_proxy_over_kmip(tmp_path: Path) -> None:
    # A server of its own: PyKMIP runs Locate by scanning every object, and
    # the other tests leave hundreds of them on the module's server.
    files = prepare_server(tmp_path / "pykmip", free_port())
    server = Pykmip(files, start_server(files))
    try:
        check_proxy_over_kmip(server, tmp_path)
    finally:
        server.stop()


def check_proxy_over_kmip(pykmip: Pykmip, tmp_path: Path) -> None:  # noqa: F811
    data = init_data_dir(tmp_path / "xki", key_id="kmip-key-1")
    seed = open_manager(pykmip)
    try:
        seed.create_key("kmip-key-1")
    finally:
        seed.close()
    files = pykmip.files
    settings = data.write_config(
        backends={
            "kmip": {
                "type": "kmip",
                "host": "127.0.0.1",
                "port": files.port,
                "ca_file": str(files.ca_file),
                "cert_file": str(files.client_cert_file),
                "key_file": str(files.client_key_file),
            }
        },
        keystores=[keystore_entry("default", backend="kmip")],
    )
    plaintext = secret_bytes(48)
    aad = secret_bytes(20)

    with run_proxy(data, settings) as running:
        client = running.client()
        metadata = expect_ok(client.metadata("kmip-key-1"))
        encrypted = client.encrypt_ok("kmip-key-1", plaintext, aad=aad, cdiv=True)
        opened = client.decrypted("kmip-key-1", encrypted, aad=aad)
        health = expect_ok(client.health())
        missing = client.metadata("no-such-key")

    assert metadata["keyStatus"] == "ENABLED"
    assert opened == plaintext
    assert health["ekmVendor"] == "PyKMIP"
    assert health["ekmFleetDetails"] == [
        {
            "id": f"kmip:127.0.0.1:{files.port}",
            "model": "PyKMIP 0.11.0 Software Server",
            "healthStatus": "ACTIVE",
        }
    ]
    assert missing.status_code == 404
