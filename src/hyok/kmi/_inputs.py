"""Checks of the arguments that every device backend receives, before any device call.

The PKCS#11 and KMIP backends keep AES keys for encryption and decryption
only, and bound the data of one operation, so both check their inputs with
these functions and raise ValidationError with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from hyok.common.errors import ValidationError
from hyok.common.ids import validate_key_id
from hyok.kmi.base import KeyUsage

__all__ = ["CRYPTO_USAGES", "MAX_DATA_BYTES", "check_data", "checked_key_id", "checked_usages"]

CRYPTO_USAGES: Final = frozenset({KeyUsage.ENCRYPT, KeyUsage.DECRYPT})
"""The usages a device backend's keys may have."""
MAX_DATA_BYTES: Final = 65_536
"""Bound of plaintext, ciphertext and AAD; XKS requests carry at most 4,300
bytes of plaintext and 8,192 bytes of AAD."""


def checked_key_id(key_id: str) -> str:
    """Return ``key_id`` when it is a valid key ID; raise ValidationError otherwise."""
    if not isinstance(key_id, str):
        raise ValidationError("the key ID must be a string")
    return validate_key_id(key_id)


def checked_usages(usages: Iterable[KeyUsage] | None, kind: str) -> frozenset[KeyUsage]:
    """Return the usages to create a key with; None means ENCRYPT and DECRYPT.

    ``kind`` names the backend's keys in the message, such as "PKCS#11 keys".
    """
    if usages is None:
        return CRYPTO_USAGES
    # A KeyUsage is a str, and iterating it would yield its letters.
    items = [usages] if isinstance(usages, str) else list(usages)
    if not items:
        raise ValidationError("no key usage given: choose ENCRYPT, DECRYPT or both")
    unsupported = [str(item)[:20] for item in items if item not in CRYPTO_USAGES]
    if unsupported:
        raise ValidationError(
            f"unsupported key usage {unsupported[0]!r}: {kind} allow ENCRYPT and DECRYPT"
        )
    return frozenset(KeyUsage(item) for item in items)


def check_data(label: str, value: bytes) -> None:
    """Raise ValidationError when ``value`` is not bytes or exceeds MAX_DATA_BYTES."""
    if not isinstance(value, bytes):
        raise ValidationError(f"the {label} must be bytes")
    if len(value) > MAX_DATA_BYTES:
        raise ValidationError(
            f"the {label} has {len(value)} bytes, more than the maximum {MAX_DATA_BYTES}"
        )
