"""The PKCS#11 objects of the backend: key templates, attributes and the key-state marker.

A DISABLED key has a marker, a private token data object (CKO_DATA) whose
CKA_APPLICATION is :data:`STATE_APPLICATION`, whose CKA_LABEL is the External
Key ID and whose CKA_VALUE is ``DISABLED``. A key without a marker is
ENABLED. Data objects are part of every PKCS#11 version, creating or
destroying one is a single call, and the key object is never touched, so no
vendor's rules for changing key attributes apply and key material never
leaves the token. The marker is private, so only a logged-in user can see or
remove it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass

from hyok.common.ids import is_valid_key_id
from hyok.kmi.base import KeyInfo, KeySpec, KeyState, KeyUsage

__all__ = [
    "DISABLED_VALUE",
    "IV_BYTES",
    "KEY_BYTES",
    "STATE_APPLICATION",
    "TAG_BYTES",
    "created_at",
    "external_id",
    "key_info",
    "key_template",
    "marker_template",
    "new_key_template",
    "session_key_template",
    "usages_of",
]

STATE_APPLICATION: Final = "hyok key state"
DISABLED_VALUE: Final = b"DISABLED"
IV_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def key_template(key_id: str, key_attribute: str) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
    }
    if key_attribute == "id":
        template[Attribute.ID] = key_id.encode("ascii")
    else:
        template[Attribute.LABEL] = key_id
    return template


def new_key_template(key_id: str, usages: frozenset[KeyUsage]) -> dict[Attribute, Any]:
    return {
        Attribute.LABEL: key_id,
        Attribute.ID: key_id.encode("ascii"),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: KeyUsage.ENCRYPT in usages,
        Attribute.DECRYPT: KeyUsage.DECRYPT in usages,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    }


def external_id(key: Any, key_attribute: str) -> str | None:
    attribute = Attribute.ID if key_attribute == "id" else Attribute.LABEL
    try:
        value = key[attribute]
        if isinstance(value, bytes):
            value = value.decode("ascii")
    except (UnicodeDecodeError, p11.AttributeTypeInvalid):
        return None
    return value if isinstance(value, str) and is_valid_key_id(value) else None


def key_info(key_id: str, key: Any, state: KeyState) -> KeyInfo:
    return KeyInfo(
        key_id=key_id,
        spec=KeySpec.AES_256,
        usages=usages_of(key),
        state=state,
        created_at=created_at(key),
    )


def marker_template(key_id: str | None = None) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.APPLICATION: STATE_APPLICATION,
    }
    if key_id is not None:
        template[Attribute.LABEL] = key_id
    return template


def session_key_template() -> dict[Attribute, Any]:
    return {
        Attribute.TOKEN: False,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
    }


def usages_of(key: Any) -> frozenset[KeyUsage]:
    usages = set()
    if key[Attribute.ENCRYPT]:
        usages.add(KeyUsage.ENCRYPT)
    if key[Attribute.DECRYPT]:
        usages.add(KeyUsage.DECRYPT)
    return frozenset(usages)


def created_at(key: Any) -> datetime:
    """Return the key's CKA_START_DATE, or the Unix epoch when it has none.

    NOTE: hyok sets no CKA_START_DATE on the keys it creates, because SoftHSMv2
    2.6 then fails every read of the attribute with CKR_GENERAL_ERROR. Their
    creation time is therefore reported as the Unix epoch.
    """
    try:
        day = key[Attribute.START_DATE]
    except (ValueError, p11.AttributeTypeInvalid, p11.AttributeSensitive, p11.GeneralError):
        # An empty CKA_START_DATE fails to parse: the key was made without one.
        return EPOCH
    if not isinstance(day, date):
        return EPOCH
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
