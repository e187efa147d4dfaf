"""Unit tests of hyok.common.sealed: layout, round trips, damaged and hostile blobs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hyok.common import sealed
from hyok.common.errors import (
    ConfigError,
    KeystoreCorruptError,
    KeystoreError,
    KeystorePassphraseError,
    KeystoreVersionError,
)
from hyok.common.sealed import (
    FORMAT_VERSION,
    KEY_CHECK_LABEL,
    MAGIC,
    MAX_HEADER_BYTES,
    Sealer,
    seal,
    unseal,
)
from hyok.common.secrets import Secret

PASSPHRASE = "sealed-test passphrase 51c9"
OTHER_PASSPHRASE = "another passphrase e07d2a"
PLAINTEXT = b"sealed test plaintext 8f1b2c"
COST = 10


@pytest.fixture(autouse=True)
def _register(sensitive: Callable[[bytes | str], None]) -> None:
    sensitive(PASSPHRASE)
    sensitive(OTHER_PASSPHRASE)
    sensitive(PLAINTEXT)


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(Secret(PASSPHRASE), kdf_cost=COST)


@pytest.fixture
def blob(sealer: Sealer) -> bytes:
    return sealer.seal(PLAINTEXT, purpose="keystore")


def split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Return the header object and the bytes after the checksum, by the documented layout."""
    magic, version, length = struct.unpack_from(">8sBH", blob)
    assert magic == MAGIC
    assert version == FORMAT_VERSION
    header = json.loads(blob[11 : 11 + length])
    return header, blob[11 + length + 8 :]


def build(header: dict[str, Any], rest: bytes, *, version: int = FORMAT_VERSION) -> bytes:
    """Assemble a blob with a correct header checksum, so that checks after it are reached.

    The header is encoded as Sealer encodes it, so an unchanged header rebuilds the same blob.
    """
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    prefix = struct.pack(">8sBH", MAGIC, version, len(header_bytes)) + header_bytes
    return prefix + hashlib.sha256(prefix).digest()[:8] + rest


def assert_no_passphrase(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", "")):
        assert PASSPHRASE not in text
        assert OTHER_PASSPHRASE not in text


# -- round trips and layout -----------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"x", PLAINTEXT, bytes(range(256)) * 300])
def test_round_trip(sealer: Sealer, data: bytes) -> None:
    assert sealer.unseal(sealer.seal(data, purpose="keystore"), purpose="keystore") == data


def test_unseal_with_other_sealer(blob: bytes) -> None:
    reader = Sealer(Secret(PASSPHRASE), kdf_cost=12)
    assert reader.unseal(blob, purpose="keystore") == PLAINTEXT


def test_module_functions_round_trip() -> None:
    data = seal(PLAINTEXT, Secret(PASSPHRASE), purpose="credentials", kdf_cost=COST)
    assert unseal(data, Secret(PASSPHRASE), purpose="credentials") == PLAINTEXT


def test_layout_matches_documentation(blob: bytes) -> None:
    magic, version, length = struct.unpack_from(">8sBH", blob)
    assert magic == b"HYOKSEAL"
    assert version == 1
    assert 1 <= length <= MAX_HEADER_BYTES
    header_end = 11 + length
    assert blob[header_end : header_end + 8] == hashlib.sha256(blob[:header_end]).digest()[:8]

    header = json.loads(blob[11:header_end])
    assert set(header) == {"aead", "kdf", "n", "r", "p", "salt", "purpose", "check"}
    assert header["aead"] == "AES-256-GCM"
    assert header["kdf"] == "scrypt"
    assert (header["n"], header["r"], header["p"]) == (2**COST, 8, 1)
    assert header["purpose"] == "keystore"
    salt = base64.b64decode(header["salt"])
    assert len(salt) == 16

    # Decrypt with nothing but the documented rules and the cryptography primitives.
    key = Scrypt(salt=salt, length=32, n=2**COST, r=8, p=1).derive(PASSPHRASE.encode())
    check = hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).digest()[:16]
    assert base64.b64decode(header["check"]) == check
    nonce_start = header_end + 8
    aad = blob[: nonce_start + 12]
    nonce = blob[nonce_start : nonce_start + 12]
    assert AESGCM(key).decrypt(nonce, blob[nonce_start + 12 :], aad) == PLAINTEXT
    assert len(blob) == nonce_start + 12 + len(PLAINTEXT) + 16


def test_seal_fresh_nonce_same_salt(sealer: Sealer) -> None:
    first = sealer.seal(PLAINTEXT, purpose="keystore")
    second = sealer.seal(PLAINTEXT, purpose="keystore")
    first_header, first_rest = split(first)
    second_header, second_rest = split(second)
    assert first_header["salt"] == second_header["salt"]
    assert first_rest[:12] != second_rest[:12]
    assert first_rest != second_rest


def test_fresh_sealers_use_different_salts() -> None:
    first = Sealer(Secret(PASSPHRASE), kdf_cost=COST).seal(b"", purpose="keystore")
    second = Sealer(Secret(PASSPHRASE), kdf_cost=COST).seal(b"", purpose="keystore")
    assert split(first)[0]["salt"] != split(second)[0]["salt"]


def test_reader_adopts_salt_of_matching_blob(blob: bytes) -> None:
    reader = Sealer(Secret(PASSPHRASE), kdf_cost=COST)
    reader.unseal(blob, purpose="keystore")
    resealed = reader.seal(b"new", purpose="keystore")
    assert split(resealed)[0]["salt"] == split(blob)[0]["salt"]


def test_reader_keeps_own_cost(blob: bytes) -> None:
    reader = Sealer(Secret(PASSPHRASE), kdf_cost=11)
    reader.unseal(blob, purpose="keystore")
    header = split(reader.seal(b"new", purpose="keystore"))[0]
    assert header["n"] == 2**11
    assert header["salt"] != split(blob)[0]["salt"]


def test_scrypt_runs_once_per_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []

    def counting_scrypt(**options: Any) -> Scrypt:
        # Sealer builds one Scrypt object for each derivation.
        runs.append(options["n"])
        return Scrypt(**options)

    monkeypatch.setattr(sealed, "Scrypt", counting_scrypt)
    writer = Sealer(Secret(PASSPHRASE), kdf_cost=COST)
    data = writer.seal(b"v1", purpose="keystore")
    for version in range(2, 6):
        assert writer.unseal(data, purpose="keystore") == f"v{version - 1}".encode()
        data = writer.seal(f"v{version}".encode(), purpose="keystore")
    assert len(runs) == 1

    reader = Sealer(Secret(PASSPHRASE), kdf_cost=COST)
    reader.unseal(data, purpose="keystore")
    reader.unseal(reader.seal(b"again", purpose="keystore"), purpose="keystore")
    assert len(runs) == 2


def test_default_cost_round_trip() -> None:
    default = Sealer(Secret(PASSPHRASE))
    assert default.kdf_cost == 17
    data = default.seal(PLAINTEXT, purpose="keystore")
    assert split(data)[0]["n"] == 2**17
    assert Sealer(Secret(PASSPHRASE)).unseal(data, purpose="keystore") == PLAINTEXT


# -- wrong passphrase, damage and versions ----------------------------------------


def test_wrong_passphrase(blob: bytes) -> None:
    other = Sealer(Secret(OTHER_PASSPHRASE), kdf_cost=COST)
    with pytest.raises(KeystorePassphraseError, match="wrong passphrase") as info:
        other.unseal(blob, purpose="keystore")
    assert info.value.code == "KeystorePassphraseIncorrect"
    assert_no_passphrase(info.value)


def test_source_named_in_message(blob: bytes) -> None:
    other = Sealer(Secret(OTHER_PASSPHRASE), kdf_cost=COST)
    with pytest.raises(KeystorePassphraseError, match=r"^/etc/hyok/keys\.hyok: "):
        other.unseal(blob, purpose="keystore", source="/etc/hyok/keys.hyok")


def test_every_truncation_is_corrupt(sealer: Sealer, blob: bytes) -> None:
    for length in range(len(blob)):
        with pytest.raises(KeystoreCorruptError) as info:
            sealer.unseal(blob[:length], purpose="keystore")
        assert_no_passphrase(info.value)


def test_truncated_message_names_size(sealer: Sealer, blob: bytes) -> None:
    with pytest.raises(KeystoreCorruptError, match=r"truncated \(40 bytes"):
        sealer.unseal(blob[:40], purpose="keystore")


def test_every_flipped_byte_is_corrupt(sealer: Sealer, blob: bytes) -> None:
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(KeystoreCorruptError):
            sealer.unseal(bytes(damaged), purpose="keystore")


def test_flipped_ciphertext_byte_message(sealer: Sealer, blob: bytes) -> None:
    damaged = bytearray(blob)
    damaged[-20] ^= 0x80
    with pytest.raises(KeystoreCorruptError, match="passphrase is correct") as info:
        sealer.unseal(bytes(damaged), purpose="keystore")
    assert_no_passphrase(info.value)


def test_flipped_salt_reported_corrupt(sealer: Sealer, blob: bytes) -> None:
    position = blob.index(b'"salt":"') + len(b'"salt":"') + 3
    damaged = bytearray(blob)
    damaged[position] ^= 0x02
    with pytest.raises(KeystoreCorruptError, match="checksum"):
        sealer.unseal(bytes(damaged), purpose="keystore")


def test_not_a_sealed_file(sealer: Sealer) -> None:
    with pytest.raises(KeystoreCorruptError, match="not a hyok sealed file"):
        sealer.unseal(b'{"keys": {}}' * 10, purpose="keystore")


def test_empty_blob_is_corrupt(sealer: Sealer) -> None:
    with pytest.raises(KeystoreCorruptError, match="truncated"):
        sealer.unseal(b"", purpose="keystore")


@pytest.mark.parametrize("version", [2, 7, 255])
def test_newer_version_rejected(sealer: Sealer, blob: bytes, version: int) -> None:
    damaged = bytearray(blob)
    damaged[8] = version
    with pytest.raises(KeystoreVersionError, match="upgrade hyok") as info:
        sealer.unseal(bytes(damaged), purpose="keystore")
    assert f"version {version}" in info.value.message
    assert info.value.code == "KeystoreVersionUnsupported"


def test_version_zero_is_corrupt(sealer: Sealer, blob: bytes) -> None:
    damaged = bytearray(blob)
    damaged[8] = 0
    with pytest.raises(KeystoreCorruptError, match="unknown format version 0"):
        sealer.unseal(bytes(damaged), purpose="keystore")


def test_purpose_mismatch(sealer: Sealer, blob: bytes) -> None:
    with pytest.raises(KeystoreCorruptError, match="'keystore', not 'credentials'"):
        sealer.unseal(blob, purpose="credentials")


def test_purpose_is_authenticated(sealer: Sealer) -> None:
    # A blob sealed for "credentials", relabelled "keystore" with a valid checksum.
    data = sealer.seal(PLAINTEXT, purpose="credentials")
    header, rest = split(data)
    header["purpose"] = "keystore"
    with pytest.raises(KeystoreCorruptError, match="fails authentication"):
        sealer.unseal(build(header, rest), purpose="keystore")


def test_header_is_authenticated(sealer: Sealer, blob: bytes) -> None:
    header, rest = split(blob)
    header["comment"] = "added later"
    with pytest.raises(KeystoreCorruptError, match="fails authentication"):
        sealer.unseal(build(header, rest), purpose="keystore")


def test_unchanged_rebuild_is_identical(blob: bytes) -> None:
    # Guards the helper: the two tests above fail because of the change, not the rebuild.
    assert build(*split(blob)) == blob


# -- hostile headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"n": 2**30}, "outside the accepted range"),
        ({"n": 2**21}, "outside the accepted range"),
        ({"n": 2**9}, "outside the accepted range"),
        ({"n": 1000}, "not a power of two"),
        ({"n": 0}, "not a power of two"),
        ({"n": -1024}, "not a power of two"),
        ({"n": "1024"}, "not an integer"),
        ({"n": True}, "not an integer"),
        ({"n": 1024.0}, "not an integer"),
        ({"r": 1024}, "outside the accepted ranges"),
        ({"r": 0}, "outside the accepted ranges"),
        ({"p": 1000}, "outside the accepted ranges"),
        ({"n": 2**20, "r": 16}, "more than the accepted 1024 MiB"),
        ({"n": 2**18, "r": 32, "p": 16}, "more than the accepted 1024 MiB"),
        ({"kdf": "argon2id"}, "unsupported KDF"),
        ({"aead": "AES-128-GCM"}, "unsupported cipher"),
        ({"salt": "not base64!"}, "not valid base64"),
        ({"salt": base64.b64encode(b"short").decode()}, "the salt has 5 bytes"),
        ({"salt": base64.b64encode(bytes(65)).decode()}, "the salt has 65 bytes"),
        ({"check": base64.b64encode(bytes(8)).decode()}, "key-check value has 8 bytes"),
        ({"check": 12}, "not a string"),
        ({"purpose": None}, "sealed for purpose None"),
    ],
)
def test_hostile_header_rejected_before_kdf(
    sealer: Sealer, blob: bytes, changes: dict[str, Any], reason: str
) -> None:
    header, rest = split(blob)
    header.update(changes)
    started = time.monotonic()
    with pytest.raises(KeystoreCorruptError, match=reason):
        sealer.unseal(build(header, rest), purpose="keystore")
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("member", ["n", "r", "p", "salt", "check", "kdf", "aead", "purpose"])
def test_missing_header_member_rejected(sealer: Sealer, blob: bytes, member: str) -> None:
    header, rest = split(blob)
    del header[member]
    with pytest.raises(KeystoreCorruptError):
        sealer.unseal(build(header, rest), purpose="keystore")


@pytest.mark.parametrize(
    "raw_header",
    [b"not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe", b'{"n": 1024, "n": 1024}'],
)
def test_malformed_header_rejected(sealer: Sealer, blob: bytes, raw_header: bytes) -> None:
    rest = split(blob)[1]
    prefix = struct.pack(">8sBH", MAGIC, 1, len(raw_header)) + raw_header
    data = prefix + hashlib.sha256(prefix).digest()[:8] + rest
    with pytest.raises(KeystoreCorruptError, match="not a valid JSON object"):
        sealer.unseal(data, purpose="keystore")


@pytest.mark.parametrize("length", [0, MAX_HEADER_BYTES + 1, 0xFFFF])
def test_header_length_limit(sealer: Sealer, length: int, blob: bytes) -> None:
    data = struct.pack(">8sBH", MAGIC, 1, length) + bytes(70_000)
    with pytest.raises(KeystoreCorruptError, match="invalid header length"):
        sealer.unseal(data, purpose="keystore")


# -- construction, reprs and secrets ------------------------------------------------


@pytest.mark.parametrize("cost", [9, 21, 30, -1])
def test_cost_out_of_range(cost: int) -> None:
    with pytest.raises(ConfigError, match="use 10 to 20"):
        Sealer(Secret(PASSPHRASE), kdf_cost=cost)


def test_passphrase_must_be_secret() -> None:
    with pytest.raises(TypeError, match="Secret"):
        Sealer(PASSPHRASE)  # type: ignore[arg-type]


def test_empty_passphrase_rejected() -> None:
    with pytest.raises(ConfigError, match="empty"):
        Sealer(Secret(""))


@pytest.mark.parametrize("purpose", ["", "two words", "x" * 65, "caf\u00e9"])
def test_invalid_purpose_rejected(sealer: Sealer, purpose: str) -> None:
    with pytest.raises(ValueError, match="invalid purpose"):
        sealer.seal(b"", purpose=purpose)


def test_repr_hides_passphrase_and_keys(sealer: Sealer, blob: bytes) -> None:
    sealer.unseal(blob, purpose="keystore")
    assert repr(sealer) == "Sealer(kdf_cost=10)"
    assert PASSPHRASE not in str(sealer)


def test_sealer_not_picklable(sealer: Sealer) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(sealer)


def test_errors_share_keystore_base(sealer: Sealer) -> None:
    with pytest.raises(KeystoreError):
        sealer.unseal(b"HYOKSEAL", purpose="keystore")
