"""Start-up checks of a PKCS#11 token: find it, then test what the backend needs of it.

Each check raises ConfigError naming the token and what it lacks, so that a
configuration that cannot work is rejected when the proxy starts.
"""

from __future__ import annotations

from typing import Any

import pkcs11.exceptions as p11
from pkcs11 import KeyType, Mechanism, MechanismFlag, TokenFlag

from hyok.common.errors import ConfigError
from hyok.kmi.pkcs11._cryptoki import GcmParameters
from hyok.kmi.pkcs11._module import LoadedModule
from hyok.kmi.pkcs11._objects import IV_BYTES, KEY_BYTES, TAG_BYTES, session_key_template
from hyok.kmi.pkcs11._options import TokenSelector

__all__ = ["check_gcm", "check_mechanisms", "check_rng", "find_token"]


def find_token(module: LoadedModule, selector: TokenSelector) -> Any:
    """Return the token that ``selector`` names, or raise ConfigError listing what is present."""
    lib = module.lib
    if selector.label is not None:
        tokens = list(lib.get_tokens(token_label=selector.label))
        if not tokens:
            present = ", ".join(repr(t.label) for t in lib.get_tokens()) or "none"
            raise ConfigError(
                f"no PKCS#11 token labelled {selector.label!r} in module "
                f"{module.path}; tokens present: {present}. Initialise the token "
                "or correct the label"
            )
        if len(tokens) > 1:
            raise ConfigError(
                f"{len(tokens)} PKCS#11 tokens are labelled {selector.label!r} in module "
                f"{module.path}; select one by 'slot' instead"
            )
        token = tokens[0]
    else:
        slots = {slot.slot_id: slot for slot in lib.get_slots(token_present=True)}
        slot = slots.get(selector.slot) if selector.slot is not None else None
        if slot is None:
            present = ", ".join(str(slot_id) for slot_id in sorted(slots)) or "none"
            raise ConfigError(
                f"no token present in slot {selector.slot} of PKCS#11 module "
                f"{module.path}; slots with a token: {present}"
            )
        token = slot.get_token()
    if not token.flags & TokenFlag.USER_PIN_INITIALIZED:
        raise ConfigError(
            f"the user PIN of {selector.describe()} is not initialised; initialise the "
            "token with a user PIN first"
        )
    return token


def check_mechanisms(token: Any, where: str) -> None:
    """Raise ConfigError unless the token offers AES-256-GCM, AES key generation and an RNG."""
    slot = token.slot
    mechanisms = set(slot.get_mechanisms())
    missing = [m.name for m in (Mechanism.AES_GCM, Mechanism.AES_KEY_GEN) if m not in mechanisms]
    if missing:
        raise ConfigError(f"{where} does not support {', '.join(missing)}; use a token that does")
    info = slot.get_mechanism_info(Mechanism.AES_GCM)
    needed = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
    if info.flags & needed != needed:
        raise ConfigError(f"{where} does not offer CKM_AES_GCM for both encrypt and decrypt")
    if not _allows_256_bit_keys(info.min_key_length, info.max_key_length):
        raise ConfigError(
            f"{where} limits CKM_AES_GCM keys to {info.min_key_length} to "
            f"{info.max_key_length}; AES-256 keys are needed"
        )
    if not token.flags & TokenFlag.RNG:
        raise ConfigError(f"{where} has no random number generator (CKF_RNG is not set)")


def check_rng(session: Any, where: str) -> None:
    first = session.generate_random(256)
    second = session.generate_random(256)
    if first == second or first == bytes(len(first)) or len(first) != 32:
        raise ConfigError(f"the random number generator of {where} failed its self-test")


def check_gcm(session: Any, where: str) -> bool:
    """Round-trip a block through AES-256-GCM on a session key.

    Returns True when the token generated the IV.

    The IV buffer starts as zeros. A token that generates IVs itself writes
    its IV into the buffer. Other tokens use the zeros, which is harmless
    because the key is destroyed right after.
    """
    key = session.generate_key(KeyType.AES, 256, template=session_key_template())
    try:
        block = session.generate_random(256)
        aad = b"hyok start-up test"
        params = GcmParameters(bytes(IV_BYTES), aad)
        sealed = params.encrypt(key, block)
        if len(sealed) != len(block) + TAG_BYTES:
            raise ConfigError(
                f"{where} returned {len(sealed) - len(block)} bytes of AES-GCM tag; "
                f"{TAG_BYTES} are needed"
            )
        iv = params.iv
        opened = GcmParameters(iv, aad).decrypt(key, sealed)
        if opened != block:
            raise ConfigError(f"{where} did not decrypt its own AES-GCM output")
        forged = sealed[:-1] + bytes([sealed[-1] ^ 1])
        try:
            GcmParameters(iv, aad).decrypt(key, forged)
        except p11.PKCS11Error:
            pass
        else:
            raise ConfigError(f"{where} accepted an AES-GCM tag that was altered")
        return iv != bytes(IV_BYTES)
    finally:
        key.destroy()


def _allows_256_bit_keys(minimum: int | None, maximum: int | None) -> bool:
    if minimum is None or maximum is None:
        return True
    # The specification gives AES key sizes in bytes, some vendors in bits.
    return any(minimum <= size <= maximum for size in (KEY_BYTES, KEY_BYTES * 8))
