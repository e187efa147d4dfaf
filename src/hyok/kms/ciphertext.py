"""The KMS ciphertext blob, the EncryptionContext and the AAD that binds them to a key.

Pure code, no I/O. docs/ciphertext-format.md gives the byte layouts with a
worked example.

A ciphertext blob (``CiphertextBlob`` on the wire, standard Base64) names the
KMS key and key version and carries what the XKI proxy returned: IV,
authentication tag, ciphertext and ciphertext metadata. Every variable field
is length-prefixed and has a maximum length, so decoding never allocates more
than the input holds. The EncryptionContext is not stored in the blob: the
caller supplies it again, and :func:`proxy_aad` binds it, the key ARN and the
key version ID into the AAD sent to the proxy. A blob therefore decrypts only
under the KMS key that made it and with the same EncryptionContext, even when
two KMS keys share one external key.

The version 1 layout never changes. Another layout gets a new format version
byte, and every earlier version stays decodable.

Caller faults raise errors with the code ``InvalidParameter`` and status 400.
Every malformed blob raises :class:`InvalidCiphertextBlobError` with one fixed
message, and the reason is kept in its ``detail`` attribute for the logs.
Invalid values from the KMS itself, such as a bad key ARN, raise ValueError or
TypeError, because they are bugs and not caller input.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hyok.common.errors import RequestError

__all__ = [
    "AAD_LABEL",
    "FORMAT_VERSION",
    "INVALID_CIPHERTEXT_MESSAGE",
    "IV_LENGTHS",
    "MAGIC",
    "MAX_AAD_LENGTH",
    "MAX_BLOB_BASE64_LENGTH",
    "MAX_BLOB_LENGTH",
    "MAX_CIPHERTEXT_LENGTH",
    "MAX_CIPHERTEXT_METADATA_LENGTH",
    "MAX_ENCRYPTION_CONTEXT_LENGTH",
    "MAX_KEY_ARN_LENGTH",
    "MAX_KEY_ID_LENGTH",
    "MAX_KEY_VERSION_ID_LENGTH",
    "TAG_LENGTH",
    "CiphertextBlob",
    "InvalidCiphertextBlobError",
    "InvalidEncryptionContextError",
    "canonical_encryption_context",
    "decode_blob",
    "decode_blob_base64",
    "encode_blob",
    "encode_blob_base64",
    "parse_encryption_context",
    "proxy_aad",
]

FORMAT_VERSION: Final = 1
# The Base64 form of these three bytes is "hyok", so every blob's Base64 text
# starts with "hyok". The first byte is not ASCII, so a blob is never mistaken
# for text.
MAGIC: Final = b"\x87\x2a\x24"

MAX_KEY_ID_LENGTH: Final = 128
MAX_KEY_VERSION_ID_LENGTH: Final = 64
IV_LENGTHS: Final = frozenset({12, 16})
TAG_LENGTH: Final = 16
# Encrypt takes at most 6 KB (6,144 bytes) of plaintext and GenerateDataKey
# makes at most 1,024 bytes. AES-GCM ciphertext is as long as its plaintext.
MAX_CIPHERTEXT_LENGTH: Final = 6_144
MAX_CIPHERTEXT_METADATA_LENGTH: Final = 20

# Magic, version, then each field with its length prefix: key ID (1), key
# version ID (1), IV (1), tag (1), ciphertext metadata (1), ciphertext (2).
MAX_BLOB_LENGTH: Final = (
    len(MAGIC)
    + 1
    + (1 + MAX_KEY_ID_LENGTH)
    + (1 + MAX_KEY_VERSION_ID_LENGTH)
    + (1 + max(IV_LENGTHS))
    + (1 + TAG_LENGTH)
    + (1 + MAX_CIPHERTEXT_METADATA_LENGTH)
    + (2 + MAX_CIPHERTEXT_LENGTH)
)
MAX_BLOB_BASE64_LENGTH: Final = 4 * ((MAX_BLOB_LENGTH + 2) // 3)

MAX_ENCRYPTION_CONTEXT_LENGTH: Final = 8_192  # characters of the JSON text
MAX_KEY_ARN_LENGTH: Final = 256
MAX_AAD_LENGTH: Final = 8_192  # what an XKS proxy must accept
AAD_LABEL: Final = b"hyok-kms-aad"

INVALID_CIPHERTEXT_MESSAGE: Final = (
    "The CiphertextBlob is invalid or corrupted, or the EncryptionContext does not match "
    "the one used to encrypt it. Pass the unchanged CiphertextBlob and the same EncryptionContext."
)

_U16_MAX: Final = 0xFFFF
# KMS key IDs and key version IDs: ASCII letters, digits, '.', '_' and '-'.
# UUIDs and IDs such as "key-hzz62f1cb66fa42qo1234" match.
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9._-]+")
_IDENTIFIER_RULE: Final = "only letters, digits, '.', '_' and '-'"
# acs:kms:<region>:<account>:key/<key ID>, printable ASCII. Region and account
# contain no ':' so the key ID part cannot be confused with them.
_KEY_ARN: Final = re.compile(r"acs:kms:[!-9;-~]*:[!-9;-~]*:key/[A-Za-z0-9._-]+")


class InvalidCiphertextBlobError(RequestError):
    """A CiphertextBlob that cannot be decoded or decrypted.

    The message is the same for every cause, so that a caller learns nothing
    about why a blob failed. ``detail`` names the cause for the logs. It
    contains sizes and offsets, never the blob's bytes.
    """

    code = "InvalidParameter"
    http_status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(INVALID_CIPHERTEXT_MESSAGE)
        self.detail = detail


class InvalidEncryptionContextError(RequestError):
    """An EncryptionContext that is not a JSON object of strings, or is too large."""

    code = "InvalidParameter"
    http_status = 400


@dataclass(frozen=True, repr=False)
class CiphertextBlob:
    """The fields of one KMS ciphertext blob.

    Construction checks every field against the format's limits and raises
    ValueError naming the field, or TypeError for a value of the wrong type.
    The repr shows the IDs and the sizes of the byte fields, not their bytes.
    """

    key_id: str
    key_version_id: str
    iv: bytes
    tag: bytes
    ciphertext: bytes
    ciphertext_metadata: bytes = b""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_blob_fields(self)

    def __repr__(self) -> str:
        return (
            f"CiphertextBlob(format_version={self.format_version}, key_id={self.key_id!r}, "
            f"key_version_id={self.key_version_id!r}, iv=<{len(self.iv)} bytes>, "
            f"tag=<{len(self.tag)} bytes>, ciphertext=<{len(self.ciphertext)} bytes>, "
            f"ciphertext_metadata=<{len(self.ciphertext_metadata)} bytes>)"
        )


def _check_blob_fields(blob: CiphertextBlob) -> None:
    for name in ("key_id", "key_version_id"):
        if not isinstance(getattr(blob, name), str):
            raise TypeError(f"{name} must be str")
    for name in ("iv", "tag", "ciphertext", "ciphertext_metadata"):
        if not isinstance(getattr(blob, name), bytes):
            raise TypeError(f"{name} must be bytes")

    if blob.format_version != FORMAT_VERSION:
        raise ValueError(f"format version {blob.format_version} is not supported")
    _check_identifier("key_id", blob.key_id, MAX_KEY_ID_LENGTH)
    _check_identifier("key_version_id", blob.key_version_id, MAX_KEY_VERSION_ID_LENGTH)
    if len(blob.iv) not in IV_LENGTHS:
        raise ValueError(f"iv has {len(blob.iv)} bytes; it must have 12 or 16")
    if len(blob.tag) != TAG_LENGTH:
        raise ValueError(f"tag has {len(blob.tag)} bytes; it must have {TAG_LENGTH}")
    if len(blob.ciphertext) > MAX_CIPHERTEXT_LENGTH:
        raise ValueError(
            f"ciphertext has {len(blob.ciphertext)} bytes; at most {MAX_CIPHERTEXT_LENGTH} "
            "are allowed"
        )
    if len(blob.ciphertext_metadata) > MAX_CIPHERTEXT_METADATA_LENGTH:
        raise ValueError(
            f"ciphertext_metadata has {len(blob.ciphertext_metadata)} bytes; at most "
            f"{MAX_CIPHERTEXT_METADATA_LENGTH} are allowed"
        )


def _check_identifier(name: str, value: str, maximum: int) -> None:
    # The messages never repeat the value: on decode they reach the logs, and
    # the value came from an untrusted blob.
    if not 1 <= len(value) <= maximum:
        raise ValueError(f"{name} has {len(value)} characters; it must have 1 to {maximum}")
    if _IDENTIFIER.fullmatch(value) is None:
        raise ValueError(f"{name} contains a character that is not allowed; use {_IDENTIFIER_RULE}")


# --- Blob encoding ---------------------------------------------------------


def encode_blob(blob: CiphertextBlob) -> bytes:
    """Serialize ``blob`` in the layout of its format version (only version 1 exists)."""
    return b"".join(
        [
            MAGIC,
            bytes([blob.format_version]),
            _u8_prefixed(blob.key_id.encode("ascii")),
            _u8_prefixed(blob.key_version_id.encode("ascii")),
            _u8_prefixed(blob.iv),
            _u8_prefixed(blob.tag),
            _u8_prefixed(blob.ciphertext_metadata),
            _u16_prefixed(blob.ciphertext),
        ]
    )


def encode_blob_base64(blob: CiphertextBlob) -> str:
    """Serialize ``blob`` and return it in standard Base64 with padding, as ``CiphertextBlob``."""
    return base64.b64encode(encode_blob(blob)).decode("ascii")


def _u8_prefixed(value: bytes) -> bytes:
    return bytes([len(value)]) + value


def _u16_prefixed(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


# --- Blob decoding ---------------------------------------------------------


class _MalformedBlob(Exception):
    """Internal: one reason a blob cannot be decoded."""


class _Reader:
    """Cursor over a blob that raises _MalformedBlob when a field runs past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, count: int, name: str) -> bytes:
        remaining = len(self._data) - self._offset
        if count > remaining:
            raise _MalformedBlob(
                f"blob is truncated in {name}: {count} bytes needed at offset {self._offset}, "
                f"{remaining} left"
            )
        value = self._data[self._offset : self._offset + count]
        self._offset += count
        return value

    def take_prefixed(self, name: str, width: int, allowed: range | frozenset[int]) -> bytes:
        # The length is checked against its bound before anything is sliced, so
        # a hostile prefix cannot make the reader allocate or skip ahead.
        length = int.from_bytes(self.take(width, f"the length of {name}"), "big")
        if length not in allowed:
            raise _MalformedBlob(f"{name} length {length} is not allowed")
        return self.take(length, name)

    def expect_end(self) -> None:
        extra = len(self._data) - self._offset
        if extra:
            raise _MalformedBlob(f"blob has {extra} bytes after the ciphertext")


def decode_blob(data: bytes) -> CiphertextBlob:
    """Decode a ciphertext blob of any supported format version.

    Raises InvalidCiphertextBlobError, with the cause in ``detail``, for a
    wrong magic, an unknown version, a length outside its bound, an invalid key
    ID or key version ID, and missing or extra bytes. Decoding does not need
    the EncryptionContext, which is not stored in the blob.
    """
    try:
        return _decode(data)
    except _MalformedBlob as exc:
        raise InvalidCiphertextBlobError(str(exc)) from None


def _decode(data: bytes) -> CiphertextBlob:
    if len(data) > MAX_BLOB_LENGTH:
        raise _MalformedBlob(f"blob has {len(data)} bytes; at most {MAX_BLOB_LENGTH} are allowed")
    reader = _Reader(data)
    if reader.take(len(MAGIC), "the magic bytes") != MAGIC:
        raise _MalformedBlob("blob does not start with the magic bytes")
    version = reader.take(1, "the format version")[0]
    if version != FORMAT_VERSION:
        raise _MalformedBlob(f"format version {version} is not supported")
    blob = _decode_version_1(reader)
    reader.expect_end()
    return blob


def _decode_version_1(reader: _Reader) -> CiphertextBlob:
    key_id = reader.take_prefixed("key ID", 1, range(1, MAX_KEY_ID_LENGTH + 1))
    key_version_id = reader.take_prefixed(
        "key version ID", 1, range(1, MAX_KEY_VERSION_ID_LENGTH + 1)
    )
    iv = reader.take_prefixed("IV", 1, IV_LENGTHS)
    tag = reader.take_prefixed("tag", 1, frozenset({TAG_LENGTH}))
    metadata = reader.take_prefixed(
        "ciphertext metadata", 1, range(MAX_CIPHERTEXT_METADATA_LENGTH + 1)
    )
    ciphertext = reader.take_prefixed("ciphertext", 2, range(MAX_CIPHERTEXT_LENGTH + 1))

    if not key_id.isascii() or not key_version_id.isascii():
        raise _MalformedBlob("key ID or key version ID is not ASCII")
    try:
        return CiphertextBlob(
            key_id=key_id.decode("ascii"),
            key_version_id=key_version_id.decode("ascii"),
            iv=iv,
            tag=tag,
            ciphertext=ciphertext,
            ciphertext_metadata=metadata,
            format_version=1,
        )
    except ValueError as exc:
        raise _MalformedBlob(str(exc)) from None


def decode_blob_base64(text: str) -> CiphertextBlob:
    """Decode the Base64 ``CiphertextBlob`` parameter and then the blob.

    Only the standard Base64 alphabet with padding is accepted, in its one
    canonical form: no whitespace, no URL-safe characters, and zero unused
    bits in the last character. Every failure raises InvalidCiphertextBlobError.
    """
    # Checking the length first bounds the work and memory a hostile text can cause.
    if len(text) > MAX_BLOB_BASE64_LENGTH:
        raise InvalidCiphertextBlobError(
            f"Base64 text has {len(text)} characters; at most {MAX_BLOB_BASE64_LENGTH} are allowed"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidCiphertextBlobError("CiphertextBlob is not valid standard Base64") from None
    if base64.b64encode(data) != text.encode("ascii"):
        raise InvalidCiphertextBlobError("CiphertextBlob is not in canonical Base64")
    return decode_blob(data)


# --- EncryptionContext -----------------------------------------------------


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _JsonNumber:
    """Placeholder for a JSON number, so that number text is never converted to int."""


_JSON_NUMBER: Final = _JsonNumber()


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKeyError(key)
        document[key] = value
    return document


def _json_number(_text: str) -> _JsonNumber:
    # CPython's int() raises ValueError for more than 4,300 digits by default,
    # and numbers are rejected anyway.
    return _JSON_NUMBER


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, _JsonNumber):
        return "a number"
    return "a string"


def _shown(text: str) -> str:
    # repr() escapes control characters and unpaired surrogates, so the
    # message stays one printable line.
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def parse_encryption_context(value: str | None) -> dict[str, str]:
    """Parse the ``EncryptionContext`` parameter into a dict of strings.

    ``value`` is the JSON text from the request. None or an empty string gives
    an empty dict. Otherwise it must be a JSON object of at most 8,192
    characters whose values are all strings, with no key given twice. Keys and
    values are kept exactly as decoded, without Unicode normalization.

    Raises InvalidEncryptionContextError naming the problem.
    """
    if value is None or value == "":
        return {}
    if len(value) > MAX_ENCRYPTION_CONTEXT_LENGTH:
        raise InvalidEncryptionContextError(
            f"EncryptionContext has {len(value)} characters; at most "
            f"{MAX_ENCRYPTION_CONTEXT_LENGTH} are allowed"
        )

    try:
        document = json.loads(
            value,
            object_pairs_hook=_reject_duplicate_keys,
            parse_int=_json_number,
            parse_float=_json_number,
            parse_constant=_json_number,
        )
    except _DuplicateKeyError as exc:
        raise InvalidEncryptionContextError(
            f"EncryptionContext contains the key {_shown(exc.key)} more than once; "
            "give each key once"
        ) from None
    except RecursionError:
        raise InvalidEncryptionContextError(
            "EncryptionContext is nested too deeply; it must be a flat JSON object of strings"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidEncryptionContextError(
            f"EncryptionContext is not valid JSON: {exc.msg} at character {exc.pos}"
        ) from None

    if not isinstance(document, dict):
        raise InvalidEncryptionContextError(
            f"EncryptionContext is {_json_kind(document)}; it must be a JSON object "
            'of string keys and string values, such as {"purpose":"backup"}'
        )
    for key, item in document.items():
        if not isinstance(item, str):
            raise InvalidEncryptionContextError(
                f"EncryptionContext value of key {_shown(key)} is {_json_kind(item)}; "
                "only string values are allowed"
            )
        _utf8(key, "key")
        _utf8(item, "value")
    return document


def _utf8(text: str, role: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON "\ud800" escape decodes to a lone surrogate, which has no UTF-8 form.
        raise InvalidEncryptionContextError(
            f"EncryptionContext {role} {_shown(text)} contains an unpaired surrogate; "
            "use valid Unicode text"
        ) from None


def canonical_encryption_context(context: Mapping[str, str]) -> bytes:
    """Encode ``context`` as bytes that depend only on its set of key/value pairs.

    The output is a 2-byte big-endian pair count, then for each pair in
    ascending order of the key's UTF-8 bytes: the key and then the value, each
    as a 2-byte big-endian length followed by its UTF-8 bytes. A decoder reads
    every length before its bytes, so it recovers exactly one context from the
    output, and two different contexts never encode alike.

    Raises InvalidEncryptionContextError when a key or value has no UTF-8 form
    or is longer than 65,535 bytes, or when there are more than 65,535 pairs.
    Raises TypeError for a key or value that is not a str.
    """
    pairs: list[tuple[bytes, bytes]] = []
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("EncryptionContext keys and values must be str")
        pairs.append((_utf8(key, "key"), _utf8(value, "value")))
    if len(pairs) > _U16_MAX:
        raise InvalidEncryptionContextError(
            f"EncryptionContext has {len(pairs)} keys; at most {_U16_MAX} are allowed"
        )
    # Different keys have different UTF-8 bytes, so sorting by key alone is total.
    pairs.sort(key=lambda pair: pair[0])

    parts = [len(pairs).to_bytes(2, "big")]
    for encoded_key, encoded_value in pairs:
        for role, encoded in (("key", encoded_key), ("value", encoded_value)):
            if len(encoded) > _U16_MAX:
                raise InvalidEncryptionContextError(
                    f"an EncryptionContext {role} has {len(encoded)} bytes in UTF-8; "
                    f"at most {_U16_MAX} are allowed"
                )
            parts.append(_u16_prefixed(encoded))
    return b"".join(parts)


# --- AAD sent to the XKI proxy ---------------------------------------------


def proxy_aad(key_arn: str, key_version_id: str, encryption_context: Mapping[str, str]) -> bytes:
    """Build the version 1 AAD that the KMS sends with an encrypt or decrypt to the proxy.

    The AAD is ``AAD_LABEL``, the format version byte, the key ARN and the key
    version ID (each as a 2-byte big-endian length and ASCII bytes), and then
    :func:`canonical_encryption_context`. The ARN contains the KMS key ID, so
    a ciphertext made under one KMS key fails to decrypt under another, even
    when both use the same external key. Any change to the EncryptionContext
    changes the AAD and fails decryption too.

    Raises InvalidEncryptionContextError when the AAD would exceed the 8,192
    bytes an XKS proxy accepts. Every context whose JSON text is ASCII and
    at most 7,856 characters long fits. Raises ValueError for an ARN or key
    version ID that breaks the documented rules, because those come from the
    KMS and not from the caller.
    """
    if len(key_arn) > MAX_KEY_ARN_LENGTH or _KEY_ARN.fullmatch(key_arn) is None:
        raise ValueError(
            f"key_arn must be acs:kms:<region>:<account>:key/<key ID> in printable ASCII, "
            f"at most {MAX_KEY_ARN_LENGTH} characters"
        )
    key_id = key_arn.rpartition(":key/")[2]
    _check_identifier("key ID in key_arn", key_id, MAX_KEY_ID_LENGTH)
    _check_identifier("key_version_id", key_version_id, MAX_KEY_VERSION_ID_LENGTH)

    context = canonical_encryption_context(encryption_context)
    header = b"".join(
        [
            AAD_LABEL,
            bytes([FORMAT_VERSION]),
            _u16_prefixed(key_arn.encode("ascii")),
            _u16_prefixed(key_version_id.encode("ascii")),
        ]
    )
    room = MAX_AAD_LENGTH - len(header)
    # NOTE: Alibaba Cloud KMS documents only the 8,192-character JSON limit, so
    # a large context that it accepts can be rejected here.
    if len(context) > room:
        raise InvalidEncryptionContextError(
            f"EncryptionContext is too large. It takes {len(context)} bytes when encoded, "
            f"and at most {room} bytes fit for this key. Use fewer or shorter keys and values"
        )
    return header + context
