"""The JSON document inside the keystore file: encoding, decoding and checks.

:mod:`hyok.kmi.file` describes the layout and seals the document.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.errors import KeystoreCorruptError, KeystoreVersionError
from hyok.common.ids import is_valid_key_id
from hyok.kmi.base import KeyInfo, KeySpec, KeyState, KeyUsage

__all__ = [
    "CANARY_ID",
    "KEYSTORE_FORMAT",
    "KEY_USAGES",
    "StoredKey",
    "decode_document",
    "encode_document",
    "new_key",
]

KEYSTORE_FORMAT: Final = 1
KEY_USAGES: Final = frozenset({KeyUsage.ENCRYPT, KeyUsage.DECRYPT})
# Not a valid key ID, so no customer operation can name the canary.
CANARY_ID: Final = "<health canary>"

_KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key of the keystore: its description, its material and an AES-GCM cipher for it."""

    info: KeyInfo
    material: bytes = field(repr=False)
    cipher: AESGCM = field(repr=False)


def new_key(key_id: str, usages: frozenset[KeyUsage]) -> StoredKey:
    """Generate an enabled AES-256 key from 32 random bytes, created now."""
    material = os.urandom(_KEY_BYTES)
    info = KeyInfo(
        key_id=key_id,
        spec=KeySpec.AES_256,
        usages=usages,
        state=KeyState.ENABLED,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    return StoredKey(info=info, material=material, cipher=AESGCM(material))


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_document(keys: Mapping[str, StoredKey], canary: StoredKey) -> bytes:
    """Encode the keys and the health canary as compact UTF-8 JSON with sorted keys."""
    document = {
        "format": KEYSTORE_FORMAT,
        "keys": {
            key_id: {
                "material": base64.b64encode(key.material).decode("ascii"),
                "usages": sorted(key.info.usages),
                "state": str(key.info.state),
                "created_at": _format_time(key.info.created_at),
            }
            for key_id, key in keys.items()
        },
        "canary": {
            "material": base64.b64encode(canary.material).decode("ascii"),
            "created_at": _format_time(canary.info.created_at),
        },
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_document(data: bytes, where: str) -> tuple[dict[str, StoredKey], StoredKey]:
    """Parse and check the keystore document, raising a KeystoreError that names the bad entry."""

    def corrupt(problem: str) -> KeystoreCorruptError:
        return KeystoreCorruptError(f"{where}: {problem}; restore the file from a backup")

    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise corrupt("the keystore document is not valid JSON") from None
    if not isinstance(document, dict):
        raise corrupt("the keystore document is not a JSON object")

    version = document.get("format")
    if isinstance(version, bool) or not isinstance(version, int):
        raise corrupt("the keystore document has no format number")
    if version > KEYSTORE_FORMAT:
        raise KeystoreVersionError(
            f"{where}: keystore format {version} was written by a newer hyok; this hyok "
            f"reads format {KEYSTORE_FORMAT}; upgrade hyok"
        )
    if version != KEYSTORE_FORMAT:
        raise corrupt(f"unknown keystore format {version}")

    raw_keys = document.get("keys")
    if not isinstance(raw_keys, dict):
        raise corrupt("the keystore document has no 'keys' object")
    keys: dict[str, StoredKey] = {}
    for key_id, entry in raw_keys.items():
        if not is_valid_key_id(key_id):
            raise corrupt(f"invalid key ID {key_id[:40]!r}")
        keys[key_id] = _decode_key(key_id, entry, corrupt)
    canary = _decode_key(CANARY_ID, document.get("canary"), corrupt)
    return keys, canary


def _decode_key(
    key_id: str, entry: object, corrupt: Callable[[str], KeystoreCorruptError]
) -> StoredKey:
    name = "the health canary" if key_id == CANARY_ID else f"key {key_id!r}"
    if not isinstance(entry, dict):
        raise corrupt(f"{name} is not a JSON object")

    try:
        material = base64.b64decode(str(entry.get("material", "")).encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        material = b""
    if len(material) != _KEY_BYTES:
        raise corrupt(f"{name} has no valid {_KEY_BYTES}-byte key material")

    created_text = entry.get("created_at")
    try:
        created_at = datetime.fromisoformat(str(created_text))
    except ValueError:
        raise corrupt(f"{name} has an invalid created_at") from None
    if created_at.tzinfo is None:
        raise corrupt(f"{name} has a created_at without a time zone")
    created_at = created_at.astimezone(UTC)

    if key_id == CANARY_ID:
        usages, state = KEY_USAGES, KeyState.ENABLED
    else:
        usages, state = _decode_usages_and_state(entry, name, corrupt)

    info = KeyInfo(
        key_id=key_id, spec=KeySpec.AES_256, usages=usages, state=state, created_at=created_at
    )
    return StoredKey(info=info, material=material, cipher=AESGCM(material))


def _decode_usages_and_state(
    entry: dict[str, Any], name: str, corrupt: Callable[[str], KeystoreCorruptError]
) -> tuple[frozenset[KeyUsage], KeyState]:
    raw_usages = entry.get("usages")
    if not isinstance(raw_usages, list) or not raw_usages:
        raise corrupt(f"{name} has no usages")
    usages: set[KeyUsage] = set()
    for raw in raw_usages:
        if raw not in KEY_USAGES:
            raise corrupt(f"{name} has an unsupported usage {str(raw)[:20]!r}")
        usages.add(KeyUsage(raw))
    try:
        state = KeyState(str(entry.get("state")))
    except ValueError:
        raise corrupt(f"{name} has an invalid state") from None
    return frozenset(usages), state
