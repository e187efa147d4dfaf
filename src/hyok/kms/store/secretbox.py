"""Encryption of the secrets that the KMS database stores, under the service root key.

The root key is 32 bytes that the caller loads from its configuration. It is
never written to the database. Each stored secret is encrypted with
AES-256-GCM, and the associated data names the table, the column and the
row's ID, so a ciphertext copied to another row or column fails to decrypt.

Layout of a stored value, version 1::

    offset  size  field
    0       1     format version, 1
    1       8     root key ID: the first 8 bytes of HMAC-SHA256(root key, ROOT_KEY_ID_LABEL)
    9       12    GCM nonce, random for each encryption
    21      ...   ciphertext, then the 16-byte GCM tag

The associated data is ``AAD_LABEL``, the version byte and the root key ID,
then the table name, the column name and the row ID, each as a 2-byte
big-endian length and its UTF-8 bytes.

The root key ID distinguishes a wrong root key from a damaged or moved value,
and lets a :class:`SecretBox` decrypt values of retired root keys during a
rotation. It reveals nothing about the key beyond letting someone who has a
candidate key check it, which the ciphertext allows anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.secrets import Secret
from hyok.kms.store.errors import RootKeyMismatchError, SecretCorruptError

__all__ = [
    "AAD_LABEL",
    "FORMAT_VERSION",
    "ROOT_KEY_ID_LABEL",
    "ROOT_KEY_LENGTH",
    "SecretBox",
]

FORMAT_VERSION: Final = 1
ROOT_KEY_LENGTH: Final = 32
ROOT_KEY_ID_LABEL: Final = b"hyok secretbox root key id v1"
AAD_LABEL: Final = b"hyok-secretbox"

_KEY_ID_LENGTH: Final = 8
_NONCE_LENGTH: Final = 12
_TAG_LENGTH: Final = 16
_HEADER_LENGTH: Final = 1 + _KEY_ID_LENGTH + _NONCE_LENGTH
_U16: Final = struct.Struct(">H")


def _root_key_id(root_key: bytes) -> bytes:
    return hmac.new(root_key, ROOT_KEY_ID_LABEL, hashlib.sha256).digest()[:_KEY_ID_LENGTH]


def _check_root_key(root_key: object, name: str) -> bytes:
    if not isinstance(root_key, bytes | bytearray):
        raise TypeError(f"{name} must be bytes, not {type(root_key).__name__}")
    if len(root_key) != ROOT_KEY_LENGTH:
        raise ValueError(f"{name} must be {ROOT_KEY_LENGTH} bytes, got {len(root_key)} bytes")
    return bytes(root_key)


def _length_prefixed(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError(f"{name} is longer than 65535 bytes in UTF-8")
    return _U16.pack(len(data)) + data


class SecretBox:
    """Encrypt and decrypt stored secrets under the service root key.

    ``root_key`` encrypts new values and decrypts its own. ``retired_root_keys``
    only decrypt, so values written before a root key rotation stay readable
    until they are encrypted again; :meth:`needs_reencryption` finds them. The
    repr shows the root key ID only. A SecretBox is safe to share between threads.

    Example::

        box = SecretBox(root_key)
        stored = box.encrypt(b"s3cret", table="instances", column="proxy_secret", row_id="kst-1")
        box.decrypt(stored, table="instances", column="proxy_secret", row_id="kst-1")
    """

    __slots__ = ("_aeads", "_key_id", "_random_bytes")

    def __init__(
        self,
        root_key: bytes,
        *,
        retired_root_keys: Sequence[bytes] = (),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        current = _check_root_key(root_key, "root_key")
        self._key_id = _root_key_id(current)
        self._aeads: dict[bytes, AESGCM] = {self._key_id: AESGCM(current)}
        for index, retired in enumerate(retired_root_keys):
            key = _check_root_key(retired, f"retired_root_keys[{index}]")
            self._aeads.setdefault(_root_key_id(key), AESGCM(key))
        self._random_bytes = random_bytes

    @property
    def root_key_id(self) -> str:
        """The ID of the current root key, in hex."""
        return self._key_id.hex()

    def __repr__(self) -> str:
        return f"SecretBox(root_key_id={self.root_key_id!r}, keys={len(self._aeads)})"

    def __reduce__(self) -> str:
        raise TypeError("SecretBox cannot be pickled")

    def encrypt(self, plaintext: bytes, *, table: str, column: str, row_id: str) -> bytes:
        """Encrypt a secret for one column of one row, under the current root key."""
        nonce = self._random_bytes(_NONCE_LENGTH)
        if len(nonce) != _NONCE_LENGTH:
            raise ValueError(f"random_bytes returned {len(nonce)} bytes, not {_NONCE_LENGTH}")
        header = bytes([FORMAT_VERSION]) + self._key_id + nonce
        aad = self._aad(self._key_id, table, column, row_id)
        return header + self._aeads[self._key_id].encrypt(nonce, plaintext, aad)

    def decrypt(self, stored: bytes, *, table: str, column: str, row_id: str) -> bytes:
        """Decrypt a secret stored in one column of one row.

        Raises RootKeyMismatchError when no configured root key encrypted it,
        and SecretCorruptError when it was altered, was moved from another row
        or column, or is not in a known format. Messages name the table,
        column and row, never the value.
        """
        where = f"{table}.{column} of row {row_id!r}"
        if len(stored) < _HEADER_LENGTH + _TAG_LENGTH:
            raise SecretCorruptError(
                f"the secret stored in {where} is {len(stored)} bytes, too short for a "
                "secretbox value: restore the row from a backup or set the secret again"
            )
        version = stored[0]
        if version != FORMAT_VERSION:
            raise SecretCorruptError(
                f"the secret stored in {where} has format version {version}, and this hyok "
                f"reads version {FORMAT_VERSION}: upgrade hyok, or restore the row"
            )
        key_id = stored[1 : 1 + _KEY_ID_LENGTH]
        aead = self._aeads.get(key_id)
        if aead is None:
            raise RootKeyMismatchError(
                f"the secret stored in {where} was encrypted under root key ID {key_id.hex()}, "
                f"but the configured root key has ID {self.root_key_id}: configure the root "
                "key that encrypted this database (add the old one as a retired root key "
                "after a rotation)"
            )
        nonce = stored[1 + _KEY_ID_LENGTH : _HEADER_LENGTH]
        try:
            return aead.decrypt(
                nonce, stored[_HEADER_LENGTH:], self._aad(key_id, table, column, row_id)
            )
        except InvalidTag:
            raise SecretCorruptError(
                f"the secret stored in {where} failed authentication: it was altered or "
                "copied from another row or column; set the secret again"
            ) from None

    def encrypt_secret(self, secret: Secret, *, table: str, column: str, row_id: str) -> bytes:
        """Encrypt a :class:`Secret` as UTF-8; see :meth:`encrypt`."""
        return self.encrypt(secret.reveal_bytes(), table=table, column=column, row_id=row_id)

    def decrypt_secret(self, stored: bytes, *, table: str, column: str, row_id: str) -> Secret:
        """Decrypt a value from :meth:`encrypt_secret`; see :meth:`decrypt`."""
        plaintext = self.decrypt(stored, table=table, column=column, row_id=row_id)
        try:
            return Secret(plaintext.decode("utf-8"))
        except UnicodeDecodeError:
            raise SecretCorruptError(
                f"the secret stored in {table}.{column} of row {row_id!r} is not UTF-8 text"
            ) from None

    def needs_reencryption(self, stored: bytes) -> bool:
        """Report whether a stored value needs encrypting again under the current root key."""
        return stored[1 : 1 + _KEY_ID_LENGTH] != self._key_id

    @staticmethod
    def _aad(key_id: bytes, table: str, column: str, row_id: str) -> bytes:
        return b"".join(
            (
                AAD_LABEL,
                bytes([FORMAT_VERSION]),
                key_id,
                _length_prefixed("table", table),
                _length_prefixed("column", column),
                _length_prefixed("row_id", row_id),
            )
        )
