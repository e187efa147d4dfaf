"""Unit tests of hyok.kmi.file: the encrypted file keystore, on real files in tmp_path."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import pickle
import resource
import signal
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.errors import (
    ConfigError,
    HyokError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    KeystoreCorruptError,
    KeystorePassphraseError,
    KeystoreVersionError,
    ValidationError,
)
from hyok.common.sealed import Sealer
from hyok.common.secrets import Secret
from hyok.kmi.base import HealthStatus, KeySpec, KeyState, KeyUsage
from hyok.kmi.file import KEYSTORE_PURPOSE, FileKeyManager
from hyok.xki.settings import FileBackendSettings, SecretSource

PASSPHRASE = "file-keystore test passphrase 3d81"
WRONG_PASSPHRASE = "not the keystore passphrase 99ab"
PLAINTEXT = b"file keystore test plaintext 4c2e77"
AAD = b"kms key id and encryption context"
COST = 10


@pytest.fixture(autouse=True)
def _register(sensitive: Callable[[bytes | str], None]) -> None:
    sensitive(PASSPHRASE)
    sensitive(WRONG_PASSPHRASE)
    sensitive(PLAINTEXT)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys.hyok"


@pytest.fixture
def manager(path: Path) -> FileKeyManager:
    return FileKeyManager.create_keystore(path, Secret(PASSPHRASE), kdf_cost=COST)


def open_again(path: Path) -> FileKeyManager:
    return FileKeyManager(path, Secret(PASSPHRASE), kdf_cost=COST)


def read_document(path: Path) -> dict[str, Any]:
    data = Sealer(Secret(PASSPHRASE), kdf_cost=COST).unseal(
        path.read_bytes(), purpose=KEYSTORE_PURPOSE
    )
    document: dict[str, Any] = json.loads(data)
    return document


def write_document(path: Path, document: dict[str, Any]) -> None:
    data = json.dumps(document).encode()
    path.write_bytes(Sealer(Secret(PASSPHRASE), kdf_cost=COST).seal(data, purpose="keystore"))


def key_material(path: Path, key_id: str) -> bytes:
    return base64.b64decode(read_document(path)["keys"][key_id]["material"])


def leftovers(directory: Path) -> list[str]:
    """Names in the directory other than the keystore and its lock file."""
    return sorted(
        p.name for p in directory.iterdir() if p.name not in {"keys.hyok", "keys.hyok.lock"}
    )


def assert_no_passphrase(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", "")):
        assert PASSPHRASE not in text
        assert WRONG_PASSPHRASE not in text


# -- functions run in child processes (spawned, so they must be importable) ----------


def create_keys_in_child(path: str, prefix: str, count: int) -> None:
    manager = FileKeyManager(Path(path), Secret(PASSPHRASE), kdf_cost=COST)
    for index in range(count):
        manager.create_key(f"{prefix}-{index:03d}")


def disable_key_in_child(path: str, key_id: str) -> None:
    FileKeyManager(Path(path), Secret(PASSPHRASE), kdf_cost=COST).disable_key(key_id)


def create_key_over_file_size_limit(path: str, limit: int) -> None:
    manager = FileKeyManager(Path(path), Secret(PASSPHRASE), kdf_cost=COST)
    # Writes past the limit fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        manager.create_key("too-big")
    except InternalError as exc:
        assert "cannot write keystore file" in exc.message
    else:
        raise AssertionError("create_key succeeded despite the file size limit")


def run_children(target: Callable[..., None], argument_lists: list[tuple[Any, ...]]) -> None:
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=target, args=args) for args in argument_lists]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=90)
    assert [child.exitcode for child in children] == [0] * len(children)


# -- creating and opening ----------------------------------------------------------


def test_create_keystore_empty_and_private(manager: FileKeyManager, path: Path) -> None:
    assert manager.list_keys() == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"HYOKSEAL\x01")
    assert leftovers(path.parent) == []


def test_keystore_document_layout(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("doc-key", [KeyUsage.ENCRYPT])
    document = read_document(path)
    assert document["format"] == 1
    assert set(document) == {"format", "keys", "canary"}
    entry = document["keys"]["doc-key"]
    assert set(entry) == {"material", "usages", "state", "created_at"}
    assert len(base64.b64decode(entry["material"])) == 32
    assert entry["usages"] == ["ENCRYPT"]
    assert entry["state"] == "ENABLED"
    assert datetime.fromisoformat(entry["created_at"]).tzinfo is not None
    assert entry["created_at"].endswith("Z")
    assert len(base64.b64decode(document["canary"]["material"])) == 32


def test_create_keystore_refuses_existing(manager: FileKeyManager, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        FileKeyManager.create_keystore(path, Secret(PASSPHRASE), kdf_cost=COST)
    assert path.read_bytes() == before


def test_create_keystore_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        FileKeyManager.create_keystore(tmp_path / "absent" / "keys.hyok", Secret(PASSPHRASE))


def test_open_missing_file(path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        open_again(path)
    assert str(path) in info.value.message
    assert "hyok xki init" in info.value.message
    assert not path.exists()


def test_open_wrong_passphrase(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("k1")
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(KeystorePassphraseError, match="wrong passphrase") as info:
        FileKeyManager(path, Secret(WRONG_PASSPHRASE), kdf_cost=COST)
    assert str(path) in info.value.message
    assert_no_passphrase(info.value)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime


def test_open_truncated_file(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("k1")
    data = path.read_bytes()
    for length in (0, 5, 40, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:length])
        with pytest.raises(KeystoreCorruptError) as info:
            open_again(path)
        assert str(path) in info.value.message
        assert path.read_bytes() == data[:length]


@pytest.mark.parametrize("from_end", [1, 17, 40])
def test_open_flipped_ciphertext_byte(manager: FileKeyManager, path: Path, from_end: int) -> None:
    manager.create_key("k1")
    damaged = bytearray(path.read_bytes())
    damaged[-from_end] ^= 0x40
    path.write_bytes(bytes(damaged))
    with pytest.raises(KeystoreCorruptError, match="restore the file from a backup"):
        open_again(path)
    assert path.read_bytes() == bytes(damaged)


def test_open_flipped_header_byte(manager: FileKeyManager, path: Path) -> None:
    damaged = bytearray(path.read_bytes())
    damaged[damaged.index(b'"purpose"') + 3] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(KeystoreCorruptError):
        open_again(path)


def test_open_newer_file_version(manager: FileKeyManager, path: Path) -> None:
    damaged = bytearray(path.read_bytes())
    damaged[8] = 2
    path.write_bytes(bytes(damaged))
    with pytest.raises(KeystoreVersionError, match=r"newer hyok; .*upgrade hyok"):
        open_again(path)
    assert path.read_bytes() == bytes(damaged)


def test_open_newer_document_format(manager: FileKeyManager, path: Path) -> None:
    document = read_document(path)
    document["format"] = 2
    write_document(path, document)
    with pytest.raises(KeystoreVersionError, match=r"keystore format 2 .*upgrade hyok"):
        open_again(path)


def test_open_file_sealed_for_other_purpose(path: Path) -> None:
    path.write_bytes(Sealer(Secret(PASSPHRASE), kdf_cost=COST).seal(b"[]", purpose="credentials"))
    with pytest.raises(KeystoreCorruptError, match="sealed for purpose 'credentials'"):
        open_again(path)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.update(format="1"), "no format number"),
        (lambda d: d.update(format=0), "unknown keystore format 0"),
        (lambda d: d.pop("keys"), "no 'keys' object"),
        (lambda d: d.pop("canary"), "health canary is not a JSON object"),
        (lambda d: d["keys"].update({"bad id!": d["keys"]["k1"]}), "invalid key ID"),
        (lambda d: d["keys"]["k1"].update(material="AAAA"), "no valid 32-byte key material"),
        (lambda d: d["keys"]["k1"].update(usages=["SIGN"]), "unsupported usage 'SIGN'"),
        (lambda d: d["keys"]["k1"].update(usages=[]), "has no usages"),
        (lambda d: d["keys"]["k1"].update(state="PENDING"), "invalid state"),
        (lambda d: d["keys"]["k1"].update(created_at="yesterday"), "invalid created_at"),
        (lambda d: d["keys"]["k1"].update(created_at="2024-01-01T00:00:00"), "without a time"),
    ],
)
def test_open_invalid_document(
    manager: FileKeyManager, path: Path, edit: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    manager.create_key("k1")
    document = read_document(path)
    edit(document)
    write_document(path, document)
    with pytest.raises(KeystoreCorruptError, match=reason) as info:
        open_again(path)
    material = document.get("keys", {}).get("k1", {}).get("material")
    if material:
        assert material not in info.value.message


def test_document_that_is_not_json(path: Path) -> None:
    path.write_bytes(Sealer(Secret(PASSPHRASE), kdf_cost=COST).seal(b"{", purpose="keystore"))
    with pytest.raises(KeystoreCorruptError, match="not valid JSON"):
        open_again(path)


def test_default_cost_keystore(path: Path) -> None:
    created = FileKeyManager.create_keystore(path, Secret(PASSPHRASE))
    created.create_key("default-cost")
    assert b'"n":131072' in path.read_bytes()[:300]
    reopened = FileKeyManager(path, Secret(PASSPHRASE))
    result = reopened.encrypt("default-cost", PLAINTEXT, AAD)
    assert created.decrypt("default-cost", result.iv, result.ciphertext, result.tag, AAD) == (
        PLAINTEXT
    )


def test_from_settings(
    manager: FileKeyManager, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_key("from-settings")
    monkeypatch.setenv("HYOK_TEST_KEYSTORE_PASSPHRASE", PASSPHRASE)
    settings = FileBackendSettings(
        type="file",
        path=path,
        passphrase=SecretSource(env="HYOK_TEST_KEYSTORE_PASSPHRASE"),
        kdf_cost=COST,
    )
    opened = FileKeyManager.from_settings(settings)
    assert [key.key_id for key in opened.list_keys()] == ["from-settings"]


def test_from_settings_passphrase_file(manager: FileKeyManager, path: Path) -> None:
    secret_file = path.parent / "passphrase.txt"
    secret_file.write_text(WRONG_PASSPHRASE + "\n")
    settings = FileBackendSettings(
        type="file", path=path, passphrase=SecretSource(file=secret_file), kdf_cost=COST
    )
    with pytest.raises(KeystorePassphraseError) as info:
        FileKeyManager.from_settings(settings)
    assert_no_passphrase(info.value)


# -- key management ----------------------------------------------------------------


def test_create_key_defaults(manager: FileKeyManager) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    info = manager.create_key()
    assert len(info.key_id) == 36
    assert info.spec is KeySpec.AES_256
    assert info.usages == {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}
    assert info.state is KeyState.ENABLED
    assert info.created_at.tzinfo is not None
    assert before <= info.created_at <= datetime.now(UTC)
    assert manager.describe_key(info.key_id) == info


def test_create_key_persists(manager: FileKeyManager, path: Path) -> None:
    created = manager.create_key("persisted", [KeyUsage.DECRYPT])
    assert open_again(path).describe_key("persisted") == created


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 129, "slash/no", "caf\u00e9"])
def test_create_key_invalid_id(manager: FileKeyManager, path: Path, key_id: str) -> None:
    before = path.read_bytes()
    with pytest.raises(ValidationError, match="invalid key ID"):
        manager.create_key(key_id)
    assert path.read_bytes() == before


def test_create_key_existing_id(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("taken")
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(KeyAlreadyExistsError, match="'taken' already exists"):
        manager.create_key("taken")
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        ([KeyUsage.ENCRYPT], {KeyUsage.ENCRYPT}),
        ([KeyUsage.DECRYPT], {KeyUsage.DECRYPT}),
        ({KeyUsage.DECRYPT, KeyUsage.ENCRYPT}, {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}),
        ([KeyUsage.ENCRYPT, KeyUsage.ENCRYPT], {KeyUsage.ENCRYPT}),
        (KeyUsage.ENCRYPT, {KeyUsage.ENCRYPT}),
        (["DECRYPT"], {KeyUsage.DECRYPT}),
    ],
)
def test_create_key_usages(manager: FileKeyManager, usages: Any, expected: set[KeyUsage]) -> None:
    assert manager.create_key("usage-key", usages).usages == expected


@pytest.mark.parametrize(
    ("usages", "reason"),
    [
        ([], "no key usage given"),
        ([KeyUsage.SIGN], "unsupported key usage 'SIGN'"),
        ([KeyUsage.ENCRYPT, KeyUsage.WRAP], "unsupported key usage 'WRAP'"),
        (["encrypt"], "unsupported key usage 'encrypt'"),
    ],
)
def test_create_key_bad_usages(manager: FileKeyManager, usages: Any, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as info:
        manager.create_key("usage-key", usages)
    assert "DECRYPT and ENCRYPT" in info.value.message
    assert manager.list_keys() == []


def test_list_keys_sorted_without_canary(manager: FileKeyManager) -> None:
    for key_id in ["m", "B", "a", "Z-2", "0"]:
        manager.create_key(key_id)
    assert [key.key_id for key in manager.list_keys()] == ["0", "B", "Z-2", "a", "m"]


def test_canary_not_addressable(manager: FileKeyManager) -> None:
    for key_id in ["<health canary>", "health canary"]:
        with pytest.raises(ValidationError):
            manager.describe_key(key_id)
        with pytest.raises(ValidationError):
            manager.encrypt(key_id, PLAINTEXT, AAD)
    for key_id in ["canary", "health-canary"]:
        with pytest.raises(KeyNotFoundError):
            manager.describe_key(key_id)


def test_disable_enable_key(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("toggle")
    disabled = manager.disable_key("toggle")
    assert disabled.state is KeyState.DISABLED
    assert manager.describe_key("toggle").state is KeyState.DISABLED
    assert open_again(path).describe_key("toggle").state is KeyState.DISABLED
    enabled = manager.enable_key("toggle")
    assert enabled.state is KeyState.ENABLED
    assert enabled.created_at == disabled.created_at
    assert open_again(path).describe_key("toggle").state is KeyState.ENABLED


def test_unchanged_state_skips_write(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("steady")
    mtime = path.stat().st_mtime_ns
    assert manager.enable_key("steady").state is KeyState.ENABLED
    assert path.stat().st_mtime_ns == mtime


def test_delete_key(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("doomed")
    manager.create_key("kept")
    manager.delete_key("doomed")
    assert [key.key_id for key in manager.list_keys()] == ["kept"]
    with pytest.raises(KeyNotFoundError, match="'doomed' not found"):
        manager.describe_key("doomed")
    assert "doomed" not in read_document(path)["keys"]


def test_recreated_key_has_new_material(manager: FileKeyManager) -> None:
    manager.create_key("reborn")
    result = manager.encrypt("reborn", PLAINTEXT, AAD)
    manager.delete_key("reborn")
    manager.create_key("reborn")
    with pytest.raises(InvalidCiphertextError):
        manager.decrypt("reborn", result.iv, result.ciphertext, result.tag, AAD)


@pytest.mark.parametrize("operation", ["describe", "enable", "disable", "delete", "encrypt"])
def test_missing_key_names_id(manager: FileKeyManager, operation: str) -> None:
    calls: dict[str, Callable[[], object]] = {
        "describe": lambda: manager.describe_key("ghost-key"),
        "enable": lambda: manager.enable_key("ghost-key"),
        "disable": lambda: manager.disable_key("ghost-key"),
        "delete": lambda: manager.delete_key("ghost-key"),
        "encrypt": lambda: manager.encrypt("ghost-key", PLAINTEXT, AAD),
    }
    with pytest.raises(KeyNotFoundError, match="key 'ghost-key' not found"):
        calls[operation]()


def test_missing_key_decrypt(manager: FileKeyManager) -> None:
    with pytest.raises(KeyNotFoundError, match="'ghost-key'"):
        manager.decrypt("ghost-key", bytes(12), b"", bytes(16), AAD)


# -- encrypt and decrypt ------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"x", PLAINTEXT, bytes(4096)])
@pytest.mark.parametrize("aad", [b"", AAD])
def test_encrypt_decrypt_round_trip(manager: FileKeyManager, plaintext: bytes, aad: bytes) -> None:
    manager.create_key("round")
    result = manager.encrypt("round", plaintext, aad)
    assert len(result.iv) == 12
    assert len(result.tag) == 16
    assert len(result.ciphertext) == len(plaintext)
    assert manager.decrypt("round", result.iv, result.ciphertext, result.tag, aad) == plaintext


def test_encrypt_fresh_iv(manager: FileKeyManager) -> None:
    manager.create_key("ivs")
    ivs = {manager.encrypt("ivs", PLAINTEXT, AAD).iv for _ in range(50)}
    assert len(ivs) == 50


def test_encrypt_is_standard_aes_gcm(
    manager: FileKeyManager, path: Path, sensitive: Callable[[bytes | str], None]
) -> None:
    manager.create_key("standard")
    material = key_material(path, "standard")
    sensitive(material)
    result = manager.encrypt("standard", PLAINTEXT, AAD)
    sealed = AESGCM(material).encrypt(result.iv, PLAINTEXT, AAD)
    assert sealed == result.ciphertext + result.tag


def test_decrypt_sixteen_byte_iv(
    manager: FileKeyManager, path: Path, sensitive: Callable[[bytes | str], None]
) -> None:
    manager.create_key("long-iv")
    material = key_material(path, "long-iv")
    sensitive(material)
    iv = os.urandom(16)
    sealed = AESGCM(material).encrypt(iv, PLAINTEXT, AAD)
    assert manager.decrypt("long-iv", iv, sealed[:-16], sealed[-16:], AAD) == PLAINTEXT


def test_decrypt_tampering_is_opaque(manager: FileKeyManager) -> None:
    manager.create_key("tamper")
    manager.create_key("other")
    good = manager.encrypt("tamper", PLAINTEXT, AAD)

    def flip(data: bytes) -> bytes:
        return bytes([data[0] ^ 0x01]) + data[1:]

    cases = {
        "ciphertext": ("tamper", good.iv, flip(good.ciphertext), good.tag, AAD),
        "tag": ("tamper", good.iv, good.ciphertext, flip(good.tag), AAD),
        "aad": ("tamper", good.iv, good.ciphertext, good.tag, flip(AAD)),
        "empty aad": ("tamper", good.iv, good.ciphertext, good.tag, b""),
        "iv": ("tamper", flip(good.iv), good.ciphertext, good.tag, AAD),
        "iv of 16 bytes": ("tamper", good.iv + bytes(4), good.ciphertext, good.tag, AAD),
        "iv of 8 bytes": ("tamper", good.iv[:8], good.ciphertext, good.tag, AAD),
        "empty iv": ("tamper", b"", good.ciphertext, good.tag, AAD),
        "short tag": ("tamper", good.iv, good.ciphertext, good.tag[:12], AAD),
        "truncated ciphertext": ("tamper", good.iv, good.ciphertext[:-1], good.tag, AAD),
        "other key": ("other", good.iv, good.ciphertext, good.tag, AAD),
    }
    messages = set()
    for name, arguments in cases.items():
        with pytest.raises(InvalidCiphertextError) as info:
            manager.decrypt(*arguments)
        assert info.value.code == "InvalidCiphertextException", name
        messages.add(info.value.message)
    assert len(messages) == 1
    assert manager.decrypt("tamper", good.iv, good.ciphertext, good.tag, AAD) == PLAINTEXT


def test_disabled_key_rejects_crypto(manager: FileKeyManager) -> None:
    manager.create_key("sleepy")
    result = manager.encrypt("sleepy", PLAINTEXT, AAD)
    manager.disable_key("sleepy")
    with pytest.raises(InvalidStateError, match="'sleepy' is disabled") as info:
        manager.encrypt("sleepy", PLAINTEXT, AAD)
    assert "hyok kmi enable-key sleepy" in info.value.message
    with pytest.raises(InvalidStateError, match="hyok kmi enable-key sleepy"):
        manager.decrypt("sleepy", result.iv, result.ciphertext, result.tag, AAD)
    assert manager.describe_key("sleepy").state is KeyState.DISABLED
    manager.enable_key("sleepy")
    assert manager.decrypt("sleepy", result.iv, result.ciphertext, result.tag, AAD) == PLAINTEXT


def test_usage_checks(manager: FileKeyManager) -> None:
    manager.create_key("encrypt-only", [KeyUsage.ENCRYPT])
    manager.create_key("decrypt-only", [KeyUsage.DECRYPT])
    result = manager.encrypt("encrypt-only", PLAINTEXT, AAD)
    with pytest.raises(InvalidKeyUsageError, match="'encrypt-only' does not allow DECRYPT"):
        manager.decrypt("encrypt-only", result.iv, result.ciphertext, result.tag, AAD)
    with pytest.raises(InvalidKeyUsageError, match="'decrypt-only' does not allow ENCRYPT"):
        manager.encrypt("decrypt-only", PLAINTEXT, AAD)


# -- capabilities, health, reprs -----------------------------------------------------


def test_capabilities(manager: FileKeyManager) -> None:
    capabilities = manager.capabilities
    assert capabilities.blocking is False
    assert capabilities.usages == {KeyUsage.ENCRYPT, KeyUsage.DECRYPT}
    assert capabilities.decrypt_iv_lengths == {12, 16}
    assert capabilities.can_disable is True
    assert capabilities.can_delete is True
    assert manager.vendor == "hyok"


def test_health_active(manager: FileKeyManager) -> None:
    members = manager.health()
    assert len(members) == 1
    assert members[0].id == "file:keys.hyok"
    assert members[0].model == "hyok file keystore (format 1)"
    assert members[0].status is HealthStatus.ACTIVE
    assert members[0].detail == ""


def test_health_unaffected_by_customer_keys(manager: FileKeyManager) -> None:
    manager.create_key("only-key")
    manager.disable_key("only-key")
    assert manager.health()[0].status is HealthStatus.ACTIVE


def test_health_unavailable_when_file_damaged(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("k1")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    member = manager.health()[0]
    assert member.status is HealthStatus.UNAVAILABLE
    assert member.detail == "keystore file cannot be read (KeystoreCorrupt)"
    with pytest.raises(InternalError, match="cannot be read") as info:
        manager.encrypt("k1", PLAINTEXT, AAD)
    assert str(path) not in info.value.message

    path.write_bytes(good)
    assert manager.health()[0].status is HealthStatus.ACTIVE
    manager.encrypt("k1", PLAINTEXT, AAD)


def test_health_unavailable_when_file_missing(manager: FileKeyManager, path: Path) -> None:
    path.unlink()
    member = manager.health()[0]
    assert member.status is HealthStatus.UNAVAILABLE
    assert "cannot be read" in member.detail
    with pytest.raises(InternalError):
        manager.list_keys()


def test_health_after_passphrase_change(manager: FileKeyManager, path: Path) -> None:
    data = Sealer(Secret(PASSPHRASE), kdf_cost=COST).unseal(path.read_bytes(), purpose="keystore")
    path.write_bytes(Sealer(Secret(WRONG_PASSPHRASE), kdf_cost=COST).seal(data, purpose="keystore"))
    member = manager.health()[0]
    assert member.status is HealthStatus.UNAVAILABLE
    assert member.detail == "keystore file cannot be read (KeystorePassphraseIncorrect)"
    assert PASSPHRASE not in member.detail


def test_change_rejected_while_file_unreadable(manager: FileKeyManager, path: Path) -> None:
    path.write_bytes(b"HYOKSEAL\x01garbage")
    with pytest.raises(InternalError):
        manager.create_key("new-key")
    assert path.read_bytes() == b"HYOKSEAL\x01garbage"
    assert leftovers(path.parent) == []


def test_repr_shows_path_only(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("repr-key")
    assert repr(manager) == f"FileKeyManager(path={str(path)!r})"
    assert PASSPHRASE not in repr(manager.__dict__)
    assert "material" not in repr(manager.list_keys())


def test_not_picklable(manager: FileKeyManager) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(manager)


def test_error_messages_omit_passphrase(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("k1")
    calls: list[Callable[[], object]] = [
        lambda: FileKeyManager(path, Secret(WRONG_PASSPHRASE), kdf_cost=COST),
        lambda: manager.create_key("k1"),
        lambda: manager.describe_key("missing"),
        lambda: manager.create_key("bad id"),
        lambda: manager.decrypt("k1", bytes(12), b"x", bytes(16), b""),
        lambda: FileKeyManager.create_keystore(path, Secret(PASSPHRASE)),
    ]
    errors: list[HyokError] = []
    for call in calls:
        with pytest.raises(HyokError) as info:
            call()
        errors.append(info.value)
    for error in errors:
        assert_no_passphrase(error)


def test_close_then_reuse(manager: FileKeyManager) -> None:
    manager.create_key("after-close")
    manager.close()
    assert [key.key_id for key in manager.list_keys()] == ["after-close"]


# -- files on disk -------------------------------------------------------------------


def test_no_temporary_files_after_writes(manager: FileKeyManager, path: Path) -> None:
    for index in range(5):
        manager.create_key(f"k{index}")
    manager.disable_key("k1")
    manager.enable_key("k1")
    manager.delete_key("k2")
    assert leftovers(path.parent) == []


def test_failed_write_leaves_keystore_unchanged(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("k1")
    before = path.read_bytes()
    run_children(create_key_over_file_size_limit, [(str(path), 100)])
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    assert [key.key_id for key in manager.list_keys()] == ["k1"]


def test_rewrite_keeps_file_mode(manager: FileKeyManager, path: Path) -> None:
    path.chmod(0o640)
    manager.create_key("k1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_modification_time_grows_with_each_write(manager: FileKeyManager, path: Path) -> None:
    times = [path.stat().st_mtime_ns]
    for index in range(10):
        manager.create_key(f"k{index}")
        times.append(path.stat().st_mtime_ns)
    assert times == sorted(set(times))


def test_open_through_symbolic_link(manager: FileKeyManager, path: Path) -> None:
    link = path.parent / "link.hyok"
    link.symlink_to(path.name)
    through_link = open_again(link)
    through_link.create_key("via-link")
    assert link.is_symlink()
    assert [key.key_id for key in manager.list_keys()] == ["via-link"]
    assert repr(through_link) == f"FileKeyManager(path={str(link)!r})"


# -- several instances, threads and processes ------------------------------------------


def test_disable_seen_by_other_instance(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("shared")
    other = open_again(path)
    result = other.encrypt("shared", PLAINTEXT, AAD)
    manager.disable_key("shared")
    with pytest.raises(InvalidStateError):
        other.encrypt("shared", PLAINTEXT, AAD)
    with pytest.raises(InvalidStateError):
        other.decrypt("shared", result.iv, result.ciphertext, result.tag, AAD)
    manager.enable_key("shared")
    assert other.decrypt("shared", result.iv, result.ciphertext, result.tag, AAD) == PLAINTEXT


def test_create_delete_seen_elsewhere(manager: FileKeyManager, path: Path) -> None:
    other = open_again(path)
    assert other.list_keys() == []
    manager.create_key("fresh")
    result = other.encrypt("fresh", PLAINTEXT, AAD)
    assert manager.decrypt("fresh", result.iv, result.ciphertext, result.tag, AAD) == PLAINTEXT
    other.delete_key("fresh")
    with pytest.raises(KeyNotFoundError):
        manager.encrypt("fresh", PLAINTEXT, AAD)


def test_writes_by_two_instances_merge(manager: FileKeyManager, path: Path) -> None:
    other = open_again(path)
    manager.create_key("from-first")
    other.create_key("from-second")
    manager.create_key("from-first-again")
    expected = ["from-first", "from-first-again", "from-second"]
    assert [key.key_id for key in manager.list_keys()] == expected
    assert [key.key_id for key in other.list_keys()] == expected


def test_disable_in_other_process_seen(manager: FileKeyManager, path: Path) -> None:
    manager.create_key("remote")
    manager.encrypt("remote", PLAINTEXT, AAD)
    run_children(disable_key_in_child, [(str(path), "remote")])
    with pytest.raises(InvalidStateError):
        manager.encrypt("remote", PLAINTEXT, AAD)


def test_concurrent_processes_lose_no_key(manager: FileKeyManager, path: Path) -> None:
    run_children(create_keys_in_child, [(str(path), f"p{index}", 25) for index in range(4)])
    expected = sorted(f"p{p}-{i:03d}" for p in range(4) for i in range(25))
    assert [key.key_id for key in manager.list_keys()] == expected
    assert [key.key_id for key in open_again(path).list_keys()] == expected
    assert leftovers(path.parent) == []


def test_concurrent_threads_lose_no_key(manager: FileKeyManager) -> None:
    errors: list[BaseException] = []

    def work(prefix: str) -> None:
        try:
            for index in range(10):
                key_id = f"{prefix}-{index}"
                manager.create_key(key_id)
                result = manager.encrypt(key_id, PLAINTEXT, AAD)
                manager.decrypt(key_id, result.iv, result.ciphertext, result.tag, AAD)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{index}",)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(manager.list_keys()) == 60
