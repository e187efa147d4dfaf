"""The message format of ``hyok encrypt-file``: AWS Encryption SDK message format version 2.

hyok writes framed messages of one algorithm suite, 0x0478
(AES_256_GCM_HKDF_SHA512_COMMIT_KEY): AES-256-GCM frames under a key that
HKDF-SHA512 derives from the data key and the message ID, with key
commitment and without an ECDSA signature. Every field follows the AWS
Encryption SDK specification, so the SDKs of that project read these
messages with a keyring or master key that unwraps the hyok data key, and
hyok reads theirs when they use this suite. docs/file-format.md describes the
layout and contains test vectors.

This module encodes and checks the header and derives the keys. The frame
loops are in :mod:`hyok.files.stream`.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hyok.common.errors import InvalidCiphertextError

__all__ = [
    "CONTENT_TYPE_FRAMED",
    "DATA_KEY_LENGTH",
    "DEFAULT_FRAME_LENGTH",
    "FINAL_FRAME_AAD",
    "FRAME_AAD",
    "IV_LENGTH",
    "MAX_ENCRYPTED_DATA_KEYS",
    "MAX_FRAME_COUNT",
    "MAX_FRAME_LENGTH",
    "MESSAGE_ID_LENGTH",
    "MESSAGE_VERSION",
    "PROVIDER_ID",
    "RESERVED_CONTEXT_PREFIX",
    "SEQUENCE_NUMBER_END",
    "SUITE_ID",
    "TAG_LENGTH",
    "EncryptedDataKey",
    "InvalidMessageError",
    "MessageHeader",
    "derive_keys",
    "frame_aad",
    "frame_iv",
    "header_auth_tag",
    "read_header",
    "serialize_encryption_context",
    "verify_header",
]

#: Message format version 2, the one that carries key commitment.
MESSAGE_VERSION: Final = 0x02
#: AES_256_GCM_HKDF_SHA512_COMMIT_KEY: committing, unsigned.
SUITE_ID: Final = 0x0478
#: Content type of framed data; non-framed messages (0x01) are rejected.
CONTENT_TYPE_FRAMED: Final = 0x02
#: Key provider ID of the encrypted data key that hyok's KMS Decrypt unwraps.
PROVIDER_ID: Final = "hyok-kms"
#: Encryption context keys with this prefix are reserved by the format.
RESERVED_CONTEXT_PREFIX: Final = "aws-crypto-"

DATA_KEY_LENGTH: Final = 32
MESSAGE_ID_LENGTH: Final = 32
COMMITMENT_KEY_LENGTH: Final = 32
IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
#: Marks the final frame in place of a sequence number.
SEQUENCE_NUMBER_END: Final = 0xFFFF_FFFF
#: The sequence number is 32 bits, and 0xFFFFFFFF marks the final frame.
MAX_FRAME_COUNT: Final = 0xFFFF_FFFF

#: Plaintext bytes per frame that encrypt-file writes. Measured in
#: benchmarks/file_crypto.py: larger frames gain little, and each frame is
#: held in memory once for reading and once for the cipher's output.
DEFAULT_FRAME_LENGTH: Final = 1 << 20
#: Largest frame that decrypt-file accepts, so that a hostile header cannot
#: make it allocate gigabytes. The format allows up to 2^32 - 1.
MAX_FRAME_LENGTH: Final = 16 << 20
#: Most encrypted data keys a header may list before reading stops.
MAX_ENCRYPTED_DATA_KEYS: Final = 16

#: Additional authenticated data labels of regular and final frames.
FRAME_AAD: Final = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD: Final = b"AWSKMSEncryptionClient Final Frame"

_DERIVE_KEY_INFO: Final = struct.pack(">H", SUITE_ID) + b"DERIVEKEY"
_COMMIT_KEY_INFO: Final = b"COMMITKEY"
_MAX_SHORT: Final = 0xFFFF


class InvalidMessageError(InvalidCiphertextError):
    """The input is not an intact hyok file message: damaged, truncated, modified or foreign."""


@dataclass(frozen=True)
class EncryptedDataKey:
    """One encrypted data key of the header: who unwraps it, with which key, and the blob."""

    provider_id: str
    #: For hyok-kms: the KMS key ID as UTF-8, which helps error messages only.
    key_info: bytes
    #: For hyok-kms: the KMS CiphertextBlob, decoded from Base64.
    ciphertext: bytes

    def serialize(self) -> bytes:
        provider = self.provider_id.encode("utf-8")
        return b"".join(
            (
                _short_field(provider, "key provider ID"),
                _short_field(self.key_info, "key info"),
                _short_field(self.ciphertext, "encrypted data key"),
            )
        )


@dataclass(frozen=True)
class MessageHeader:
    """The header of a version 2 message, without its authentication tag."""

    message_id: bytes
    encryption_context: Mapping[str, str]
    encrypted_data_keys: tuple[EncryptedDataKey, ...]
    frame_length: int
    commitment_key: bytes = field(repr=False)

    def serialize(self) -> bytes:
        """Return the header body as the format lays it out; the tag follows it."""
        context = serialize_encryption_context(self.encryption_context)
        keys = b"".join(key.serialize() for key in self.encrypted_data_keys)
        return b"".join(
            (
                struct.pack(">BH", MESSAGE_VERSION, SUITE_ID),
                self.message_id,
                struct.pack(">H", len(context)),
                context,
                struct.pack(">H", len(self.encrypted_data_keys)),
                keys,
                struct.pack(">BI", CONTENT_TYPE_FRAMED, self.frame_length),
                self.commitment_key,
            )
        )


def _short_field(value: bytes, name: str) -> bytes:
    if len(value) > _MAX_SHORT:
        raise ValueError(f"the {name} has {len(value)} bytes; the format allows {_MAX_SHORT}")
    return struct.pack(">H", len(value)) + value


def serialize_encryption_context(context: Mapping[str, str]) -> bytes:
    """Encode the encryption context: a count, then UTF-8 pairs sorted by key bytes.

    An empty context encodes to no bytes at all, as the format requires.
    """
    if not context:
        return b""
    pairs = sorted((key.encode("utf-8"), value.encode("utf-8")) for key, value in context.items())
    parts = [struct.pack(">H", len(pairs))]
    for key, value in pairs:
        parts.append(_short_field(key, "encryption context key"))
        parts.append(_short_field(value, "encryption context value"))
    encoded = b"".join(parts)
    if len(encoded) > _MAX_SHORT:
        raise ValueError(
            f"the encryption context encodes to {len(encoded)} bytes; the format allows "
            f"{_MAX_SHORT}"
        )
    return encoded


def derive_keys(data_key: bytes | bytearray, message_id: bytes) -> tuple[bytes, bytes]:
    """Derive the frame encryption key and the commitment key of one message.

    Both are HKDF-SHA512 of the data key with the message ID as salt; the info
    strings differ, so neither key reveals the other.
    """
    if len(data_key) != DATA_KEY_LENGTH:
        raise ValueError(f"the data key has {len(data_key)} bytes; expected {DATA_KEY_LENGTH}")
    encryption_key = HKDF(
        algorithm=hashes.SHA512(), length=32, salt=message_id, info=_DERIVE_KEY_INFO
    ).derive(data_key)
    commitment_key = HKDF(
        algorithm=hashes.SHA512(),
        length=COMMITMENT_KEY_LENGTH,
        salt=message_id,
        info=_COMMIT_KEY_INFO,
    ).derive(data_key)
    return encryption_key, commitment_key


def frame_iv(sequence_number: int) -> bytes:
    """Return the IV of a frame: eight zero bytes and the 32-bit sequence number.

    The header authentication tag uses sequence number 0, so no IV repeats
    under one derived key.
    """
    return b"\x00" * 8 + struct.pack(">I", sequence_number)


def frame_aad(message_id: bytes, sequence_number: int, length: int, *, final: bool) -> bytes:
    """Return the AAD of a frame, which binds it to the message, its position and length."""
    label = FINAL_FRAME_AAD if final else FRAME_AAD
    return message_id + label + struct.pack(">IQ", sequence_number, length)


def header_auth_tag(aead: AESGCM, header: bytes) -> bytes:
    """Return the tag that authenticates the header: AES-GCM of nothing, the header as AAD."""
    return aead.encrypt(frame_iv(0), b"", header)


def verify_header(
    aead: AESGCM, header: bytes, tag: bytes, commitment_key: bytes, expected_commitment: bytes
) -> None:
    """Check the commitment key and the header tag; raise InvalidMessageError if either differs.

    The commitment check makes a message decrypt under one data key only, so
    two recipients can never read different plaintexts from one file.
    """
    if not hmac.compare_digest(commitment_key, expected_commitment):
        raise InvalidMessageError(
            "the message's key commitment does not match its data key: the header was "
            "modified or belongs to another message"
        )
    try:
        aead.decrypt(frame_iv(0), tag, header)
    except InvalidTag:
        raise InvalidMessageError(
            "the message header failed authentication: it was modified or damaged"
        ) from None


# Reading a header.


class _HeaderReader:
    """Reads header fields from a stream and keeps the bytes read, which the tag covers."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.raw = bytearray()

    def take(self, size: int, field_name: str) -> bytes:
        data = _read_exactly(self._source, size)
        if len(data) < size:
            if not self.raw and not data:
                raise InvalidMessageError("the input is empty, so it is not an encrypted file")
            raise InvalidMessageError(
                f"the input ends inside the message header ({field_name}): it is truncated or not "
                "a file encrypted by 'hyok encrypt-file'"
            )
        self.raw += data
        return data

    def short(self, field_name: str) -> int:
        (value,) = struct.unpack(">H", self.take(2, field_name))
        return int(value)

    def short_field(self, field_name: str) -> bytes:
        return self.take(self.short(f"length of the {field_name}"), field_name)


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream (pipes return short reads)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_header(source: BinaryIO) -> tuple[MessageHeader, bytes, bytes]:
    """Read and check the header; return it, its raw bytes and its authentication tag.

    Raises InvalidMessageError for a format hyok does not read, a malformed
    field, or a header cut short. The tag is not verified here, because that
    needs the data key.
    """
    reader = _HeaderReader(source)
    version, suite = struct.unpack(">BH", reader.take(3, "version and algorithm suite"))
    if version != MESSAGE_VERSION:
        raise InvalidMessageError(
            f"the input starts with byte 0x{version:02x}, not 0x{MESSAGE_VERSION:02x} of message "
            "format version 2: it is not a file encrypted by 'hyok encrypt-file'"
        )
    if suite != SUITE_ID:
        raise InvalidMessageError(
            f"the message uses algorithm suite 0x{suite:04x}; hyok decrypts only 0x{SUITE_ID:04x} "
            "(AES_256_GCM_HKDF_SHA512_COMMIT_KEY)"
        )
    message_id = reader.take(MESSAGE_ID_LENGTH, "message ID")
    context = _parse_encryption_context(reader.short_field("encryption context"))

    count = reader.short("count of encrypted data keys")
    if not 1 <= count <= MAX_ENCRYPTED_DATA_KEYS:
        raise InvalidMessageError(
            f"the message header lists {count} encrypted data keys; hyok reads 1 to "
            f"{MAX_ENCRYPTED_DATA_KEYS}"
        )
    keys = []
    for _ in range(count):
        provider = reader.short_field("key provider ID")
        key_info = reader.short_field("key info")
        ciphertext = reader.short_field("encrypted data key")
        try:
            provider_id = provider.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessageError("a key provider ID in the header is not UTF-8") from None
        keys.append(EncryptedDataKey(provider_id, key_info, ciphertext))

    content_type, frame_length = struct.unpack(">BI", reader.take(5, "content type"))
    if content_type != CONTENT_TYPE_FRAMED:
        raise InvalidMessageError(
            f"the message has content type 0x{content_type:02x}; hyok reads only framed "
            "messages (0x02)"
        )
    if not 1 <= frame_length <= MAX_FRAME_LENGTH:
        raise InvalidMessageError(
            f"the message has frames of {frame_length} bytes; hyok reads frames of 1 to "
            f"{MAX_FRAME_LENGTH} bytes"
        )
    commitment_key = reader.take(COMMITMENT_KEY_LENGTH, "commitment key")
    raw = bytes(reader.raw)
    tag = reader.take(TAG_LENGTH, "header authentication tag")
    header = MessageHeader(
        message_id=message_id,
        encryption_context=context,
        encrypted_data_keys=tuple(keys),
        frame_length=frame_length,
        commitment_key=commitment_key,
    )
    return header, raw, tag


def _parse_encryption_context(data: bytes) -> dict[str, str]:
    if not data:
        return {}
    if len(data) < 2:
        raise InvalidMessageError("the encryption context in the header is malformed")
    (count,) = struct.unpack_from(">H", data)
    offset = 2
    context: dict[str, str] = {}
    for _ in range(count):
        key, offset = _context_field(data, offset)
        value, offset = _context_field(data, offset)
        if key in context:
            raise InvalidMessageError(
                f"the encryption context in the header contains the key {key!r} twice"
            )
        context[key] = value
    if offset != len(data) or not context:
        raise InvalidMessageError("the encryption context in the header is malformed")
    return context


def _context_field(data: bytes, offset: int) -> tuple[str, int]:
    if offset + 2 > len(data):
        raise InvalidMessageError("the encryption context in the header is malformed")
    (length,) = struct.unpack_from(">H", data, offset)
    start, end = offset + 2, offset + 2 + length
    if end > len(data):
        raise InvalidMessageError("the encryption context in the header is malformed")
    try:
        return data[start:end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise InvalidMessageError(
            "the encryption context in the header contains text that is not UTF-8"
        ) from None
