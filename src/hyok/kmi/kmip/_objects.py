"""The KMIP objects of the backend: key names, the key-state marker and the state mapping.

A key is a KMIP Symmetric Key (AES, 256 bits) whose Name attribute is the
External Key ID. hyok creates keys Active, with a Cryptographic Usage Mask
of Encrypt and Decrypt.

KMIP's own states cannot express a reversible disable: Deactivated and
Compromised are final, and Pre-Active is left only by Activate. A DISABLED
key therefore has a marker, a Secret Data object named
``hyok-disabled:<External Key ID>``; a key without one is ENABLED. The colon
cannot occur in a key ID, so a marker name never equals a key name.
Register, Locate and Destroy of Secret Data are KMIP 1.0 operations, so the
scheme works on any KMIP server, needs no custom attribute (which PyKMIP
0.11 does not store) and never modifies the key object. The marker lives in
the server's database, so the state survives restarts of the server and
the proxy.

The KMIP state of the key itself maps as follows:

- Active: ENABLED, or DISABLED when a marker exists;
- Pre-Active: DISABLED; ``enable_key`` activates the key;
- Deactivated, Compromised: DISABLED for good; ``enable_key`` raises;
- Destroyed, Destroyed Compromised: the key is not found.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from hyok.kmi.base import KeyInfo, KeySpec, KeyState, KeyUsage
from hyok.kmi.kmip._protocol import ObjectAttributes, usage_bit

__all__ = [
    "DISABLED_VALUE",
    "EPOCH",
    "FINAL_STATES",
    "HEALTH_KEY_NAME",
    "MARKER_PREFIX",
    "is_aes_256",
    "key_info",
    "marker_name",
    "usages_of",
]

MARKER_PREFIX: Final = "hyok-disabled:"
DISABLED_VALUE: Final = b"DISABLED"
#: The name of the key that health checks use. The spaces make it an invalid
#: key ID, so no customer key can have it and ``list_keys`` never returns it.
HEALTH_KEY_NAME: Final = "hyok health check"
#: KMIP states from which no operation leads back to Active.
FINAL_STATES: Final = frozenset({"DEACTIVATED", "COMPROMISED"})
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def marker_name(key_id: str) -> str:
    return MARKER_PREFIX + key_id


def is_aes_256(attributes: ObjectAttributes) -> bool:
    return attributes.algorithm == "AES" and attributes.length == 256


def usages_of(attributes: ObjectAttributes) -> frozenset[KeyUsage]:
    usages = set()
    for usage in (KeyUsage.ENCRYPT, KeyUsage.DECRYPT):
        if attributes.usage_mask & usage_bit(usage.value):
            usages.add(usage)
    return frozenset(usages)


def key_info(key_id: str, attributes: ObjectAttributes, marked: bool) -> KeyInfo:
    enabled = attributes.state == "ACTIVE" and not marked
    return KeyInfo(
        key_id=key_id,
        spec=KeySpec.AES_256,
        usages=usages_of(attributes),
        state=KeyState.ENABLED if enabled else KeyState.DISABLED,
        created_at=attributes.initial_date or EPOCH,
    )
