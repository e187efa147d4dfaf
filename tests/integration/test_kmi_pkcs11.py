"""The PKCS#11 backend against real SoftHSMv2 tokens: keys, cryptography, state, recovery, fleet."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.errors import (
    ConfigError,
    DependencyTimeoutError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    ValidationError,
)
from hyok.common.secrets import Secret
from hyok.kmi.base import HealthStatus, KeyState, KeyUsage
from hyok.kmi.pkcs11 import Pkcs11KeyManager, TokenSelector
from hyok.kmi.pkcs11._token import _count_fork
from hyok.xki.runtime import backend_thread_count
from hyok.xki.settings import Pkcs11BackendSettings, ProxySettings
from tests.integration._softhsm import (
    SOFTHSM_MODULE,
    USER_PIN,
    SoftHsm,
    open_manager,
    softhsm,  # noqa: F401 - a pytest fixture, found by name
)
from tests.integration._xks import (
    expect_ok,
    init_data_dir,
    keystore_entry,
    run_proxy,
    secret_bytes,
)

pytestmark = pytest.mark.integration

MAIN = "hyok-main"


@pytest.fixture(scope="module")
def manager(softhsm: SoftHsm) -> Iterator[Pkcs11KeyManager]:  # noqa: F811 - the fixture
    backend = open_manager(MAIN)
    yield backend
    backend.close()


def new_key_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------
# Key management


def test_create_describe_list(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()

    created = manager.create_key(key_id)
    described = manager.describe_key(key_id)
    listed = {info.key_id: info for info in manager.list_keys()}

    assert created == described
    assert described.state is KeyState.ENABLED
    assert described.usages == {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}
    assert listed[key_id] == described


def test_create_existing_key_rejected(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    with pytest.raises(KeyAlreadyExistsError, match=key_id):
        manager.create_key(key_id)


def test_create_without_id_generates_one(manager: Pkcs11KeyManager) -> None:
    info = manager.create_key()

    assert uuid.UUID(info.key_id)
    assert manager.describe_key(info.key_id).key_id == info.key_id


def test_list_is_sorted_and_hides_health_keys(manager: Pkcs11KeyManager) -> None:
    manager.health()

    key_ids = [info.key_id for info in manager.list_keys()]

    assert key_ids == sorted(key_ids)
    assert all(" " not in key_id for key_id in key_ids)


def test_delete_key(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.encrypt(key_id, b"warm the key cache", b"")

    manager.delete_key(key_id)

    with pytest.raises(KeyNotFoundError, match=key_id):
        manager.describe_key(key_id)
    with pytest.raises(KeyNotFoundError):
        manager.encrypt(key_id, b"after delete", b"")
    with pytest.raises(KeyNotFoundError):
        manager.delete_key(key_id)


def test_recreated_key_starts_enabled(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.disable_key(key_id)
    manager.delete_key(key_id)

    info = manager.create_key(key_id)

    assert info.state is KeyState.ENABLED
    assert manager.describe_key(key_id).state is KeyState.ENABLED


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 129, "slash/inside"])
def test_invalid_key_id_rejected(manager: Pkcs11KeyManager, key_id: str) -> None:
    with pytest.raises(ValidationError, match="invalid key ID"):
        manager.create_key(key_id)
    with pytest.raises(ValidationError, match="invalid key ID"):
        manager.encrypt(key_id, b"data", b"")


def test_unsupported_usage_rejected(manager: Pkcs11KeyManager) -> None:
    with pytest.raises(ValidationError, match="SIGN"):
        manager.create_key(new_key_id(), [KeyUsage.SIGN])
    with pytest.raises(ValidationError, match="no key usage"):
        manager.create_key(new_key_id(), [])


def test_missing_key_not_found(manager: Pkcs11KeyManager) -> None:
    with pytest.raises(KeyNotFoundError, match="no-such-key"):
        manager.describe_key("no-such-key")
    with pytest.raises(KeyNotFoundError):
        manager.decrypt("no-such-key", bytes(12), b"data", bytes(16), b"")


# ---------------------------------------------------------------------------
# Cryptography


def test_encrypt_decrypt_round_trip(manager: Pkcs11KeyManager) -> None:
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


def test_empty_plaintext_and_aad(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    result = manager.encrypt(key_id, b"", b"")

    assert result.ciphertext == b""
    assert manager.decrypt(key_id, result.iv, b"", result.tag, b"") == b""


def test_ivs_differ(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    # The backend draws IVs in batches of 32, so 100 encryptions span four draws.
    ivs = [manager.encrypt(key_id, b"same", b"").iv for _ in range(100)]

    assert all(len(iv) == 12 for iv in ivs)
    assert len(set(ivs)) == 100


def test_ivs_redrawn_after_fork(softhsm: SoftHsm) -> None:  # noqa: F811
    backend = open_manager(MAIN)
    member = backend._members[0]
    pooled = member._take(time.monotonic() + 1.0)
    try:
        pooled.next_iv()
        inherited = pooled.ivs[12:24]
        _count_fork()  # what os.register_at_fork runs in a child
        after_fork = pooled.next_iv()

        assert after_fork != inherited
        assert pooled.iv_offset == 12
    finally:
        member._give_back(pooled)
        backend.close()


def test_matches_independent_aes_gcm(manager: Pkcs11KeyManager, softhsm: SoftHsm) -> None:  # noqa: F811
    # A key with known material checks the token's AES-GCM against the
    # cryptography package, in both directions, with 12- and 16-byte IVs.
    key_id = new_key_id()
    material = os.urandom(32)
    softhsm.import_key(MAIN, key_id, material)
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


def test_tampered_input_rejected(manager: Pkcs11KeyManager) -> None:
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


def test_ciphertext_bound_to_key(manager: Pkcs11KeyManager) -> None:
    first, second = new_key_id(), new_key_id()
    manager.create_key(first)
    manager.create_key(second)
    result = manager.encrypt(first, b"for the first key", b"")

    with pytest.raises(InvalidCiphertextError):
        manager.decrypt(second, result.iv, result.ciphertext, result.tag, b"")


def test_oversized_input_rejected(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    with pytest.raises(ValidationError, match="65536"):
        manager.encrypt(key_id, bytes(65_537), b"")


def test_encrypt_only_key_refuses_decrypt(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    info = manager.create_key(key_id, [KeyUsage.ENCRYPT])
    result = manager.encrypt(key_id, b"one way", b"")

    assert info.usages == {KeyUsage.ENCRYPT}
    with pytest.raises(InvalidKeyUsageError, match="DECRYPT"):
        manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"")


def test_parallel_requests(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                plaintext = os.urandom(24)
                result = manager.encrypt(key_id, plaintext, b"aad")
                opened = manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"aad")
                if opened != plaintext:
                    raise AssertionError("a round trip returned other data")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []


# ---------------------------------------------------------------------------
# Key state


def test_disabled_key_refused(manager: Pkcs11KeyManager) -> None:
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


def test_disable_twice_is_idempotent(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)

    manager.disable_key(key_id)
    manager.disable_key(key_id)
    manager.enable_key(key_id)

    assert manager.describe_key(key_id).state is KeyState.ENABLED


def test_state_survives_reopen(manager: Pkcs11KeyManager, softhsm: SoftHsm) -> None:  # noqa: F811
    key_id = new_key_id()
    manager.create_key(key_id)
    manager.disable_key(key_id)
    manager.close()

    # A new process loads the module afresh, as a restarted proxy would.
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from hyok.common.secrets import Secret\n"
        "from hyok.kmi.pkcs11 import Pkcs11KeyManager, TokenSelector\n"
        "pin = Secret(os.environ['TEST_TOKEN_PIN'])\n"
        "selector = TokenSelector(sys.argv[2], None, pin, 'test PIN')\n"
        "manager = Pkcs11KeyManager(Path(sys.argv[1]), [selector])\n"
        "print(manager.describe_key(sys.argv[3]).state)\n"
    )
    environment = {**os.environ, "SOFTHSM2_CONF": str(softhsm.conf), "TEST_TOKEN_PIN": USER_PIN}
    completed = subprocess.run(
        [sys.executable, "-c", script, str(SOFTHSM_MODULE), MAIN, key_id],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "DISABLED"
    assert manager.describe_key(key_id).state is KeyState.DISABLED


def test_state_change_seen_by_second_manager(manager: Pkcs11KeyManager) -> None:
    key_id = new_key_id()
    manager.create_key(key_id)
    other = open_manager(MAIN, state_cache_seconds=0.0)
    try:
        other.encrypt(key_id, b"enabled", b"")

        manager.disable_key(key_id)

        with pytest.raises(InvalidStateError):
            other.encrypt(key_id, b"disabled elsewhere", b"")
    finally:
        other.close()


# ---------------------------------------------------------------------------
# Configuration errors and secrets


def test_wrong_pin_refused(softhsm: SoftHsm) -> None:  # noqa: F811
    wrong = "wrong-pin-1f9e2a7c"

    with pytest.raises(ConfigError) as caught:
        open_manager(MAIN, pin=wrong)

    message = caught.value.message
    assert "rejected the user PIN" in message
    assert "CKR_PIN_INCORRECT" in message
    assert "test PIN" in message
    assert wrong not in message
    assert USER_PIN not in message


def test_missing_token_refused(softhsm: SoftHsm) -> None:  # noqa: F811
    with pytest.raises(ConfigError) as caught:
        open_manager("no-such-token")

    assert "'no-such-token'" in caught.value.message
    assert repr(MAIN) in caught.value.message


def test_missing_slot_refused(softhsm: SoftHsm) -> None:  # noqa: F811
    selector = TokenSelector(None, 987_654_321, Secret(USER_PIN), "test PIN")

    with pytest.raises(ConfigError, match="slot 987654321"):
        Pkcs11KeyManager(SOFTHSM_MODULE, [selector])


def test_token_by_slot(softhsm: SoftHsm) -> None:  # noqa: F811
    selector = TokenSelector(None, softhsm.slot_of(MAIN), Secret(USER_PIN), "test PIN")

    backend = Pkcs11KeyManager(SOFTHSM_MODULE, [selector])
    try:
        assert [member.id for member in backend.health()] == [f"pkcs11:{MAIN}"]
    finally:
        backend.close()


def test_missing_module_refused(tmp_path: Path) -> None:
    missing = tmp_path / "libmissing-pkcs11.so"
    selector = TokenSelector(MAIN, None, Secret(USER_PIN), "test PIN")

    with pytest.raises(ConfigError, match=r"libmissing-pkcs11\.so does not exist"):
        Pkcs11KeyManager(missing, [selector])


def test_non_pkcs11_library_refused(tmp_path: Path) -> None:
    fake = tmp_path / "not-a-module.so"
    fake.write_bytes(b"not a shared library")
    selector = TokenSelector(MAIN, None, Secret(USER_PIN), "test PIN")

    with pytest.raises(ConfigError, match="cannot load PKCS#11 module"):
        Pkcs11KeyManager(fake, [selector])


def test_pin_never_in_repr_or_logs(
    softhsm: SoftHsm,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = open_manager(MAIN)
    try:
        key_id = new_key_id()
        backend.create_key(key_id)
        backend.encrypt(key_id, b"data", b"")
        backend.health()
        with pytest.raises(ConfigError) as caught:
            open_manager(MAIN, pin="another-wrong-pin-77aa")

        assert USER_PIN not in repr(backend)
        assert USER_PIN not in repr(backend.capabilities)
        assert USER_PIN not in caught.value.message
        assert USER_PIN not in caplog.text
        assert "another-wrong-pin-77aa" not in caplog.text
    finally:
        backend.close()


def test_capabilities(manager: Pkcs11KeyManager) -> None:
    capabilities = manager.capabilities

    assert capabilities.blocking is True
    assert capabilities.decrypt_iv_lengths == {12, 16}
    assert capabilities.usages == {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}
    assert capabilities.extra["iv_source"] == f"pkcs11:{MAIN}: token RNG"


def test_event_loop_calls_not_blocking(softhsm: SoftHsm) -> None:  # noqa: F811
    backend = open_manager(MAIN, event_loop_calls=True)
    try:
        key_id = new_key_id()
        backend.create_key(key_id)
        result = backend.encrypt(key_id, b"on the loop", b"")

        assert backend.capabilities.blocking is False
        assert backend.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"") == (
            b"on the loop"
        )
    finally:
        backend.close()


def test_session_leases_bounded(softhsm: SoftHsm) -> None:  # noqa: F811
    backend = open_manager(MAIN, max_sessions=2)
    member = backend._members[0]
    try:
        first = member._take(time.monotonic() + 1.0)
        second = member._take(time.monotonic() + 1.0)

        with pytest.raises(DependencyTimeoutError, match="all 2 sessions"):
            member._take(time.monotonic() + 0.05)
        member._give_back(first)
        third = member._take(time.monotonic() + 0.05)

        assert third is first
        member._give_back(second)
        member._give_back(third, broken=True)
        assert member._leased == 0
        assert member._idle == [second]
    finally:
        backend.close()


def test_backend_thread_count_follows_backends() -> None:
    def settings(threads: int | None = None, **backends: dict[str, object]) -> ProxySettings:
        return ProxySettings.model_validate({
            "server": {"cert_file": "c.pem", "key_file": "k.pem", "backend_threads": threads},
            "secrets": {"env": "SECRETS"},
            "backends": backends,
            "keystores": [{"name": "a", "backend": next(iter(backends)),
                           "credentials_file": "a.sealed"}],
        })

    pkcs11 = {"type": "pkcs11", "module": str(SOFTHSM_MODULE), "pin": {"env": "HSM_PIN"},
              "tokens": [{"label": "a"}, {"label": "b"}]}
    file = {"type": "file", "path": "k.hyok", "passphrase": {"env": "PASSPHRASE"}}
    parallel = {**pkcs11, "parallel_calls": True, "max_sessions": 4}

    assert backend_thread_count(settings(hsm=pkcs11)) == 2
    assert backend_thread_count(settings(hsm=pkcs11, local=file)) == 3
    assert backend_thread_count(settings(hsm={**pkcs11, "event_loop_calls": True})) == 2
    assert backend_thread_count(settings(hsm=parallel)) == 8
    assert backend_thread_count(settings(5, hsm=pkcs11)) == 5


def test_settings_need_one_token_selector() -> None:
    base = {"type": "pkcs11", "module": str(SOFTHSM_MODULE), "pin": {"env": "HSM_PIN"}}

    with pytest.raises(pydantic.ValidationError, match="exactly one of 'label'"):
        Pkcs11BackendSettings.model_validate({**base, "tokens": [{"label": "a", "slot": 1}]})
    with pytest.raises(pydantic.ValidationError, match="exactly one of 'label'"):
        Pkcs11BackendSettings.model_validate({**base, "tokens": [{}]})
    with pytest.raises(pydantic.ValidationError, match="at least 1"):
        Pkcs11BackendSettings.model_validate({**base, "tokens": []})


# ---------------------------------------------------------------------------
# Recovery


def test_sessions_closed_mid_run(softhsm: SoftHsm) -> None:  # noqa: F811
    backend = open_manager("hyok-reset")
    try:
        key_id = new_key_id()
        backend.create_key(key_id)
        before = backend.encrypt(key_id, b"before the break", b"")

        # Ends every session and the login, as a device reset or an HSM
        # failover does.
        softhsm.close_all_sessions("hyok-reset")

        after = backend.encrypt(key_id, b"after the break", b"")
        health = backend.health()
        opened = backend.decrypt(key_id, before.iv, before.ciphertext, before.tag, b"")

        assert opened == b"before the break"
        assert backend.decrypt(key_id, after.iv, after.ciphertext, after.tag, b"") == (
            b"after the break"
        )
        assert health[0].status is HealthStatus.DEGRADED
        assert "CKR_SESSION_HANDLE_INVALID" in health[0].detail
        assert backend.health()[0].status is HealthStatus.ACTIVE
    finally:
        backend.close()


def test_module_reinitialised_mid_run(softhsm: SoftHsm) -> None:  # noqa: F811
    from hyok.kmi.pkcs11._module import load_module

    backend = open_manager("hyok-reset")
    try:
        key_id = new_key_id()
        backend.create_key(key_id)
        backend.disable_key(key_id)
        backend.enable_key(key_id)

        load_module(SOFTHSM_MODULE).lib.reinitialize()

        result = backend.encrypt(key_id, b"after C_Finalize", b"")
        assert backend.decrypt(key_id, result.iv, result.ciphertext, result.tag, b"") == (
            b"after C_Finalize"
        )
        assert backend.describe_key(key_id).state is KeyState.ENABLED
    finally:
        backend.close()


# ---------------------------------------------------------------------------
# Fleet


def test_fleet_avoids_failed_member(
    softhsm: SoftHsm,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    key_id = new_key_id()
    material = os.urandom(32)
    for label in ("hyok-fleet-a", "hyok-fleet-b"):
        softhsm.import_key(label, key_id, material)
    # Member b comes first, so that requests reach it before a.
    backend = open_manager("hyok-fleet-b", "hyok-fleet-a")
    changed_pin = "hyok-changed-pin-5e0b"
    try:
        before = backend.encrypt(key_id, b"made on b", b"")
        assert [m.status for m in backend.health()] == [HealthStatus.ACTIVE] * 2

        # Member b fails: its PIN changes and its sessions end, so it can
        # no longer log in.
        softhsm.change_pin("hyok-fleet-b", USER_PIN, changed_pin)
        softhsm.close_all_sessions("hyok-fleet-b")

        after = backend.encrypt(key_id, b"made on a", b"")
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        opened = backend.decrypt(key_id, before.iv, before.ciphertext, before.tag, b"")
        health = {member.id: member for member in backend.health()}

        assert opened == b"made on b"
        assert backend.decrypt(key_id, after.iv, after.ciphertext, after.tag, b"") == b"made on a"
        # The request after the failure went to a without trying b again.
        assert "pkcs11:hyok-fleet-b" not in "".join(
            record.getMessage() for record in caplog.records if record.name.endswith("_token")
        )
        assert health["pkcs11:hyok-fleet-b"].status is HealthStatus.UNAVAILABLE
        assert "CKR_PIN_INCORRECT" in health["pkcs11:hyok-fleet-b"].detail
        assert health["pkcs11:hyok-fleet-a"].status is HealthStatus.ACTIVE
        assert changed_pin not in caplog.text
    finally:
        backend.close()
        softhsm.change_pin("hyok-fleet-b", changed_pin, USER_PIN)


def test_fleet_state_change_reaches_every_member(softhsm: SoftHsm) -> None:  # noqa: F811
    key_id = new_key_id()
    material = os.urandom(32)
    for label in ("hyok-fleet-a", "hyok-fleet-b"):
        softhsm.import_key(label, key_id, material)
    backend = open_manager("hyok-fleet-a", "hyok-fleet-b", state_cache_seconds=0.0)
    only_b = open_manager("hyok-fleet-b", state_cache_seconds=0.0)
    try:
        backend.disable_key(key_id)

        assert only_b.describe_key(key_id).state is KeyState.DISABLED

        backend.delete_key(key_id)

        with pytest.raises(KeyNotFoundError):
            only_b.describe_key(key_id)
    finally:
        backend.close()
        only_b.close()


# ---------------------------------------------------------------------------
# The XKS proxy over a PKCS#11 backend


def test_xks_proxy_over_softhsm(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    data = init_data_dir(tmp_path / "xki", key_id="hsm-key-1")
    (data.root / "secrets" / "hsm-pin").write_text(USER_PIN + "\n", encoding="utf-8")
    seed = open_manager("hyok-xks")
    try:
        seed.create_key("hsm-key-1")
    finally:
        seed.close()
    settings = data.write_config(
        backends={
            "hsm": {
                "type": "pkcs11",
                "module": str(SOFTHSM_MODULE),
                "pin": {"file": "secrets/hsm-pin"},
                "tokens": [{"label": "hyok-xks"}],
            }
        },
        keystores=[keystore_entry("default", backend="hsm")],
    )
    plaintext = secret_bytes(48)
    aad = secret_bytes(20)

    with run_proxy(data, settings) as running:
        client = running.client()
        metadata = expect_ok(client.metadata("hsm-key-1"))
        encrypted = client.encrypt_ok("hsm-key-1", plaintext, aad=aad, cdiv=True)
        opened = client.decrypted("hsm-key-1", encrypted, aad=aad)
        health = expect_ok(client.health())
        missing = client.metadata("no-such-key")

    assert metadata["keyStatus"] == "ENABLED"
    assert opened == plaintext
    assert health["ekmVendor"] == "SoftHSM"
    assert health["ekmFleetDetails"] == [
        {"id": "pkcs11:hyok-xks", "model": "SoftHSM project SoftHSM v2", "healthStatus": "ACTIVE"}
    ]
    assert missing.status_code == 404
