"""Passphrase-sealed blobs: the keystore file and the proxy credential files.

A blob is encrypted with AES-256-GCM under a key-encryption key that scrypt
derives from a passphrase. Its layout, version 1 (integers are unsigned
big-endian)::

    offset     size  field
    0          8     magic, b"HYOKSEAL"
    8          1     format version, 1
    9          2     header length H, 1 to MAX_HEADER_BYTES
    11         H     header: a UTF-8 JSON object, see below
    11+H       8     header checksum: SHA-256 of bytes 0 to 11+H, first 8 bytes
    19+H       12    GCM nonce, random for each seal
    31+H       ...   ciphertext, then the 16-byte GCM tag

Bytes 0 to 31+H, everything before the ciphertext, are the GCM associated
data, so no header field can be changed without the tag failing. The header
object has these members::

    "aead"     "AES-256-GCM"
    "kdf"      "scrypt"
    "n", "r", "p"  scrypt parameters (n a power of two)
    "salt"     base64 of 16 to 64 random bytes
    "purpose"  what the blob is for, such as "keystore"; unseal checks it, so a
               credentials blob cannot stand in for a keystore
    "check"    key-check value: base64 of HMAC-SHA256(key, KEY_CHECK_LABEL),
               first 16 bytes

The key-check value distinguishes a wrong passphrase from a damaged file. The
header checksum is unkeyed and only catches accidental damage: without it, a
flipped bit in the salt would be reported as a wrong passphrase. Deliberate
changes are caught by the GCM tag.

Reading a blob checks the scrypt parameters before running scrypt: n must be
2**10 to 2**20, and 128 * n * r * p, an upper bound of scrypt's memory in
bytes, at most 1 GiB (MAX_KDF_MEMORY). A hostile file therefore cannot make
scrypt use gigabytes of memory or minutes of CPU time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hyok.common.errors import (
    ConfigError,
    KeystoreCorruptError,
    KeystorePassphraseError,
    KeystoreVersionError,
)
from hyok.common.secrets import Secret

__all__ = [
    "DEFAULT_KDF_COST",
    "FORMAT_VERSION",
    "KEY_CHECK_LABEL",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_KDF_COST",
    "MAX_KDF_MEMORY",
    "MIN_KDF_COST",
    "Sealer",
    "seal",
    "unseal",
]

MAGIC: Final = b"HYOKSEAL"
FORMAT_VERSION: Final = 1
MAX_HEADER_BYTES: Final = 4096
KEY_CHECK_LABEL: Final = b"hyok sealed key check v1"

DEFAULT_KDF_COST: Final = 17
MIN_KDF_COST: Final = 10
# With r=8, n=2**20 needs 1 GiB (128 * n * r bytes), which is MAX_KDF_MEMORY.
MAX_KDF_COST: Final = 20
MAX_KDF_MEMORY: Final = 1 << 30
_MAX_R: Final = 32
_MAX_P: Final = 16

_KDF_R: Final = 8
_KDF_P: Final = 1
_KEY_BYTES: Final = 32
_SALT_BYTES: Final = 16
_SALT_BYTES_MAX: Final = 64
_CHECK_BYTES: Final = 16
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_CHECKSUM_BYTES: Final = 8
_AEAD_NAME: Final = "AES-256-GCM"
_KDF_NAME: Final = "scrypt"
_PURPOSE_MAX: Final = 64

_PREFIX: Final = struct.Struct(">8sBH")
# Maximum number of derived keys a Sealer caches. A keystore and the files
# that replace it usually share one salt, so a few entries are enough.
_KEY_CACHE_SIZE: Final = 8

_RESTORE_HINT: Final = "restore the file from a backup"


@dataclass(frozen=True, slots=True)
class _KdfParams:
    salt: bytes
    n: int
    r: int
    p: int


@dataclass(frozen=True, slots=True)
class _ParsedBlob:
    params: _KdfParams
    check: bytes
    aad: bytes
    nonce: bytes
    sealed: bytes


class Sealer:
    """Seal and unseal blobs with one passphrase.

    ``kdf_cost`` is the scrypt cost exponent for new seals (N = 2**kdf_cost,
    r=8, p=1). Unsealing uses the parameters stored in the blob, within the
    module's limits. Derived keys are cached per salt and parameters. After a
    blob whose parameters equal this Sealer's is unsealed, later seals reuse
    its salt, so rewriting and rereading a file runs scrypt once. Every seal
    still draws a fresh random nonce. A Sealer is safe to share between threads.

    Example::

        sealer = Sealer(Secret("correct horse battery staple"))
        blob = sealer.seal(b"data", purpose="keystore")
        assert sealer.unseal(blob, purpose="keystore") == b"data"
    """

    __slots__ = ("_kdf_cost", "_keys", "_lock", "_passphrase", "_seal_salt")

    def __init__(self, passphrase: Secret, *, kdf_cost: int = DEFAULT_KDF_COST) -> None:
        if not isinstance(passphrase, Secret):
            raise TypeError("passphrase must be a hyok.common.secrets.Secret")
        if isinstance(kdf_cost, bool) or not isinstance(kdf_cost, int):
            raise TypeError("kdf_cost must be an int")
        if not MIN_KDF_COST <= kdf_cost <= MAX_KDF_COST:
            raise ConfigError(
                f"invalid kdf_cost {kdf_cost}: use {MIN_KDF_COST} to {MAX_KDF_COST} "
                f"(scrypt N = 2**kdf_cost; the default is {DEFAULT_KDF_COST})"
            )
        if not passphrase.reveal():
            raise ConfigError("the passphrase is empty: set a non-empty passphrase")
        self._passphrase = passphrase
        self._kdf_cost = kdf_cost
        self._keys: OrderedDict[_KdfParams, tuple[bytes, bytes]] = OrderedDict()
        self._seal_salt: bytes | None = None
        self._lock = threading.Lock()

    @property
    def kdf_cost(self) -> int:
        """The scrypt cost exponent of new seals."""
        return self._kdf_cost

    def __repr__(self) -> str:
        return f"Sealer(kdf_cost={self._kdf_cost})"

    def __reduce__(self) -> str:
        raise TypeError("Sealer cannot be pickled because it contains a passphrase")

    def seal(self, data: bytes, *, purpose: str) -> bytes:
        """Encrypt ``data`` and return the sealed blob, bound to ``purpose``."""
        _check_purpose(purpose)
        with self._lock:
            if self._seal_salt is None:
                self._seal_salt = os.urandom(_SALT_BYTES)
            salt = self._seal_salt
        params = _KdfParams(salt=salt, n=1 << self._kdf_cost, r=_KDF_R, p=_KDF_P)
        key, check = self._derive(params)

        header = {
            "aead": _AEAD_NAME,
            "kdf": _KDF_NAME,
            "n": params.n,
            "r": params.r,
            "p": params.p,
            "salt": base64.b64encode(params.salt).decode("ascii"),
            "purpose": purpose,
            "check": base64.b64encode(check).decode("ascii"),
        }
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes
        checksum = hashlib.sha256(prefix).digest()[:_CHECKSUM_BYTES]
        nonce = os.urandom(_NONCE_BYTES)
        aad = prefix + checksum + nonce
        return aad + AESGCM(key).encrypt(nonce, bytes(data), aad)

    def unseal(self, blob: bytes, *, purpose: str, source: str | None = None) -> bytes:
        """Check and decrypt a sealed blob, and return the data.

        ``source`` names the blob in error messages, for example the file path.
        Raises KeystoreCorruptError when the blob is damaged, truncated, not a
        sealed blob or sealed for another purpose, KeystoreVersionError when a
        newer hyok wrote it, and KeystorePassphraseError when the passphrase
        is wrong.
        """
        _check_purpose(purpose)
        where = f"{source}: " if source else ""
        parsed = _parse(bytes(blob), purpose, where)
        key, check = self._derive(parsed.params)
        if not hmac.compare_digest(check, parsed.check):
            raise KeystorePassphraseError(
                f"{where}wrong passphrase: the key-check value does not match; "
                "supply the passphrase this file was sealed with"
            )
        try:
            data = AESGCM(key).decrypt(parsed.nonce, parsed.sealed, parsed.aad)
        except InvalidTag:
            raise KeystoreCorruptError(
                f"{where}the passphrase is correct but the encrypted data fails "
                f"authentication, so the file was altered or damaged; {_RESTORE_HINT}"
            ) from None

        if (parsed.params.n, parsed.params.r, parsed.params.p) == (
            1 << self._kdf_cost,
            _KDF_R,
            _KDF_P,
        ):
            with self._lock:
                self._seal_salt = parsed.params.salt
        return data

    def _derive(self, params: _KdfParams) -> tuple[bytes, bytes]:
        # Under the lock, so that threads opening the same file run scrypt once.
        with self._lock:
            cached = self._keys.get(params)
            if cached is not None:
                self._keys.move_to_end(params)
                return cached
            kdf = Scrypt(salt=params.salt, length=_KEY_BYTES, n=params.n, r=params.r, p=params.p)
            key = kdf.derive(self._passphrase.reveal_bytes())
            check = hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).digest()[:_CHECK_BYTES]
            self._keys[params] = (key, check)
            if len(self._keys) > _KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
            return key, check


def seal(
    data: bytes, passphrase: Secret, *, purpose: str, kdf_cost: int = DEFAULT_KDF_COST
) -> bytes:
    """Seal ``data`` with a one-off Sealer; see :meth:`Sealer.seal`."""
    return Sealer(passphrase, kdf_cost=kdf_cost).seal(data, purpose=purpose)


def unseal(blob: bytes, passphrase: Secret, *, purpose: str, source: str | None = None) -> bytes:
    """Unseal ``blob`` with a one-off Sealer; see :meth:`Sealer.unseal`."""
    return Sealer(passphrase).unseal(blob, purpose=purpose, source=source)


def _check_purpose(purpose: str) -> None:
    if not isinstance(purpose, str):
        raise TypeError("purpose must be a str")
    if not 1 <= len(purpose) <= _PURPOSE_MAX or not all("!" <= c <= "~" for c in purpose):
        raise ValueError(
            f"invalid purpose {purpose[:_PURPOSE_MAX]!r}: use 1 to {_PURPOSE_MAX} printable "
            "ASCII characters without spaces"
        )


def _corrupt(where: str, problem: str) -> KeystoreCorruptError:
    return KeystoreCorruptError(f"{where}{problem}; {_RESTORE_HINT}")


def _parse(blob: bytes, purpose: str, where: str) -> _ParsedBlob:
    """Split a blob into its fields and check everything that needs no key."""
    if len(blob) < _PREFIX.size:
        if MAGIC.startswith(blob[: len(MAGIC)]):
            raise _corrupt(where, f"the file is truncated ({len(blob)} bytes)")
        raise _corrupt(where, "not a hyok sealed file (unknown magic bytes)")
    magic, version, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise _corrupt(where, "not a hyok sealed file (unknown magic bytes)")
    if version > FORMAT_VERSION:
        raise KeystoreVersionError(
            f"{where}format version {version} was written by a newer hyok; this hyok reads "
            f"up to version {FORMAT_VERSION}; upgrade hyok"
        )
    if version != FORMAT_VERSION:
        raise _corrupt(where, f"unknown format version {version}")
    if not 1 <= header_len <= MAX_HEADER_BYTES:
        raise _corrupt(
            where, f"invalid header length {header_len} (expected 1 to {MAX_HEADER_BYTES})"
        )

    header_end = _PREFIX.size + header_len
    nonce_start = header_end + _CHECKSUM_BYTES
    sealed_start = nonce_start + _NONCE_BYTES
    if len(blob) < sealed_start + _TAG_BYTES:
        raise _corrupt(
            where,
            f"the file is truncated ({len(blob)} bytes, expected at least "
            f"{sealed_start + _TAG_BYTES})",
        )
    checksum = hashlib.sha256(blob[:header_end]).digest()[:_CHECKSUM_BYTES]
    if not hmac.compare_digest(checksum, blob[header_end:nonce_start]):
        raise _corrupt(where, "the header checksum does not match, so the header is damaged")

    header = _decode_header(blob[_PREFIX.size : header_end], where)
    params, check = _read_header(header, purpose, where)
    return _ParsedBlob(
        params=params,
        check=check,
        aad=blob[:sealed_start],
        nonce=blob[nonce_start:sealed_start],
        sealed=blob[sealed_start:],
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def _decode_header(raw: bytes, where: str) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError):
        raise _corrupt(where, "the header is not a valid JSON object") from None
    if not isinstance(header, dict):
        raise _corrupt(where, "the header is not a valid JSON object")
    return header


def _header_int(header: dict[str, Any], name: str, where: str) -> int:
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _corrupt(where, f"header member {name!r} is missing or not an integer")
    return value


def _header_bytes(header: dict[str, Any], name: str, where: str) -> bytes:
    value = header.get(name)
    if not isinstance(value, str):
        raise _corrupt(where, f"header member {name!r} is missing or not a string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _corrupt(where, f"header member {name!r} is not valid base64") from None


def _read_header(header: dict[str, Any], purpose: str, where: str) -> tuple[_KdfParams, bytes]:
    if header.get("aead") != _AEAD_NAME:
        raise _corrupt(where, f"unsupported cipher in the header (expected {_AEAD_NAME})")
    if header.get("kdf") != _KDF_NAME:
        raise _corrupt(where, f"unsupported KDF in the header (expected {_KDF_NAME})")

    found_purpose = header.get("purpose")
    if found_purpose != purpose:
        if isinstance(found_purpose, str):
            found_purpose = found_purpose[:_PURPOSE_MAX]
        raise KeystoreCorruptError(
            f"{where}the file was sealed for purpose {found_purpose!r}, not {purpose!r}; "
            "check that the path names the right file"
        )

    n = _header_int(header, "n", where)
    r = _header_int(header, "r", where)
    p = _header_int(header, "p", where)
    # Checked before any scrypt run: these bound the memory and time a file can demand.
    if n < 2 or n & (n - 1):
        raise _corrupt(where, f"invalid scrypt parameter n={n} (not a power of two)")
    if not 1 << MIN_KDF_COST <= n <= 1 << MAX_KDF_COST:
        raise _corrupt(
            where,
            f"scrypt parameter n={n} is outside the accepted range "
            f"2**{MIN_KDF_COST} to 2**{MAX_KDF_COST}",
        )
    if not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        raise _corrupt(
            where,
            f"scrypt parameters r={r}, p={p} are outside the accepted ranges "
            f"1 to {_MAX_R} and 1 to {_MAX_P}",
        )
    if 128 * n * r * p > MAX_KDF_MEMORY:
        raise _corrupt(
            where,
            f"scrypt parameters n={n}, r={r}, p={p} need more than the accepted "
            f"{MAX_KDF_MEMORY >> 20} MiB",
        )

    salt = _header_bytes(header, "salt", where)
    if not _SALT_BYTES <= len(salt) <= _SALT_BYTES_MAX:
        raise _corrupt(
            where, f"the salt has {len(salt)} bytes (expected {_SALT_BYTES} to {_SALT_BYTES_MAX})"
        )
    check = _header_bytes(header, "check", where)
    if len(check) != _CHECK_BYTES:
        raise _corrupt(
            where, f"the key-check value has {len(check)} bytes (expected {_CHECK_BYTES})"
        )
    return _KdfParams(salt=salt, n=n, r=r, p=p), check
