"""The file message format: known answers, interoperability with the AWS Encryption SDK, tampering.

The vectors are read from docs/file-format.md, so the page and the code
cannot drift apart. The SDK (``aws-encryption-sdk``) plays the other
implementation of the format, with a master key that returns a fixed data key.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import aws_encryption_sdk  # type: ignore[import-untyped]
import pytest
from aws_encryption_sdk.identifiers import (  # type: ignore[import-untyped]
    Algorithm,
    CommitmentPolicy,
)

from hyok.cli import files as files_cli
from hyok.files.format import PROVIDER_ID, EncryptedDataKey, InvalidMessageError, MessageHeader
from hyok.files.stream import decrypt_message, encrypt_message
from tests.unit._esdk import FixedMasterKey

DOC = Path(__file__).resolve().parents[2] / "docs" / "file-format.md"
KEY = bytes(range(32))
EDK = EncryptedDataKey(PROVIDER_ID, b"key-vector", b"CiphertextBlob of the data key")
FRAME = 128


def load_vectors() -> list[dict[str, str]]:
    """Parse the ```vector blocks of docs/file-format.md into dicts of field to text."""
    vectors = []
    for block in re.findall(r"```vector\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            match = re.fullmatch(r"([a-zA-Z ]+): ?(.*)", line)
            if match:
                current = match.group(1)
                fields[current] = match.group(2)
            else:
                fields[current] += line.strip()
        vectors.append(fields)
    return vectors


VECTORS = load_vectors()


def context_of(text: str) -> dict[str, str]:
    if not text:
        return {}
    name, _, value = text.partition("=")
    return {name: value}


def sdk_client() -> Any:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def master_key(data_key: bytes = KEY, key_id: bytes = b"key-vector") -> Any:
    return FixedMasterKey(key_id=key_id, data_key=data_key, encrypted_data_key=EDK.ciphertext)


def seal(plaintext: bytes, *, context: dict[str, str] | None = None, frame: int = FRAME) -> bytes:
    sink = io.BytesIO()
    encrypt_message(
        io.BytesIO(plaintext),
        sink,
        data_key=bytearray(KEY),
        encrypted_data_key=EDK,
        encryption_context=context or {},
        frame_length=frame,
    )
    return sink.getvalue()


def open_message(message: bytes, key: bytes = KEY) -> tuple[bytes, MessageHeader]:
    sink = io.BytesIO()
    header = decrypt_message(io.BytesIO(message), sink, unwrap=lambda _header: bytearray(key))
    return sink.getvalue(), header


def test_doc_has_vectors() -> None:
    assert [vector["name"] for vector in VECTORS] == ["three frames", "empty"]


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_vector_known_answer(vector: dict[str, str]) -> None:
    data_key = bytes.fromhex(vector["data key"])
    plaintext = bytes.fromhex(vector["plaintext"])
    expected = bytes.fromhex(vector["message"])
    sink = io.BytesIO()
    encrypt_message(
        io.BytesIO(plaintext),
        sink,
        data_key=bytearray(data_key),
        encrypted_data_key=EncryptedDataKey(
            PROVIDER_ID,
            vector["key info"].encode(),
            bytes.fromhex(vector["encrypted data key"]),
        ),
        encryption_context=context_of(vector["encryption context"]),
        frame_length=int(vector["frame length"]),
        message_id=bytes.fromhex(vector["message ID"]),
    )
    assert sink.getvalue() == expected
    decrypted, header = open_message(expected, data_key)
    assert decrypted == plaintext
    assert dict(header.encryption_context) == context_of(vector["encryption context"])


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_vector_decrypts_with_sdk(vector: dict[str, str]) -> None:
    key = master_key(bytes.fromhex(vector["data key"]), vector["key info"].encode())
    plaintext, header = sdk_client().decrypt(
        source=bytes.fromhex(vector["message"]), key_provider=key
    )
    assert plaintext == bytes.fromhex(vector["plaintext"])
    assert header.algorithm == Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 7 * FRAME + 5])
def test_sdk_reads_hyok_messages(size: int) -> None:
    data = os.urandom(size)
    message = seal(data, context={"purpose": "interop", "ünï": "cödé"})
    plaintext, header = sdk_client().decrypt(source=message, key_provider=master_key())
    assert plaintext == data
    assert header.encryption_context == {"purpose": "interop", "ünï": "cödé"}


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 7 * FRAME + 5])
def test_hyok_reads_sdk_messages(size: int) -> None:
    data = os.urandom(size)
    message, _ = sdk_client().encrypt(
        source=data,
        key_provider=master_key(),
        frame_length=FRAME,
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        encryption_context={"made-by": "sdk"},
    )
    plaintext, header = open_message(message)
    assert plaintext == data
    assert dict(header.encryption_context) == {"made-by": "sdk"}


def test_rejects_signed_sdk_suite() -> None:
    message, _ = sdk_client().encrypt(
        source=b"signed",
        key_provider=master_key(),
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    )
    with pytest.raises(InvalidMessageError, match="algorithm suite 0x0578"):
        open_message(message)


def test_every_flipped_byte_fails() -> None:
    message = seal(os.urandom(2 * FRAME + 9), context={"k": "v"})
    for offset in range(len(message)):
        damaged = bytearray(message)
        damaged[offset] ^= 0x80
        with pytest.raises(InvalidMessageError):
            open_message(bytes(damaged))


def test_every_truncation_fails() -> None:
    message = seal(os.urandom(2 * FRAME + 9))
    for length in range(len(message)):
        with pytest.raises(InvalidMessageError):
            open_message(message[:length])


def test_wrong_data_key_fails() -> None:
    message = seal(b"secret")
    with pytest.raises(InvalidMessageError, match="key commitment does not match"):
        open_message(message, bytes(32))


def test_data_key_is_wiped() -> None:
    key = bytearray(KEY)
    encrypt_message(
        io.BytesIO(b"data"),
        io.BytesIO(),
        data_key=key,
        encrypted_data_key=EDK,
        encryption_context={},
        frame_length=FRAME,
    )
    assert key == bytearray(32)
    returned = bytearray(KEY)
    decrypt_message(io.BytesIO(seal(b"data")), io.BytesIO(), unwrap=lambda _header: returned)
    assert returned == bytearray(32)


def test_short_reads_from_pipes() -> None:
    class Trickle(io.RawIOBase):
        """A stream that returns at most 7 bytes per read, as a slow pipe may."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(min(7, len(buffer)))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    data = os.urandom(3 * FRAME + 1)
    sink = io.BytesIO()
    encrypt_message(
        Trickle(data),  # type: ignore[arg-type]
        sink,
        data_key=bytearray(KEY),
        encrypted_data_key=EDK,
        encryption_context={},
        frame_length=FRAME,
    )
    assert sink.getvalue() != b""
    plain = io.BytesIO()
    decrypt_message(
        Trickle(sink.getvalue()),  # type: ignore[arg-type]
        plain,
        unwrap=lambda _header: bytearray(KEY),
    )
    assert plain.getvalue() == data


def test_progress_bar_only_on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with files_cli._progress(10 << 30, "Encrypting") as callback:
        assert callback is None  # pytest's captured stderr is no terminal
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with files_cli._progress(files_cli.PROGRESS_MIN_BYTES - 1, "Encrypting") as callback:
        assert callback is None
    with files_cli._progress(files_cli.PROGRESS_MIN_BYTES, "Encrypting") as callback:
        assert callback is not None
        callback(files_cli.PROGRESS_MIN_BYTES)
    assert "Encrypting" in terminal.getvalue()
