"""Identifier rules shared by the proxy and the backends."""

from __future__ import annotations

import re
import uuid
from typing import Final

from hyok.common.errors import ValidationError

__all__ = ["EXTERNAL_KEY_ID_MAX", "generate_key_id", "is_valid_key_id", "validate_key_id"]

EXTERNAL_KEY_ID_MAX: Final = 128
# XKS v1: 1 to 128 characters, letters A-Z and a-z, digits, hyphen, period, underscore.
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_valid_key_id(key_id: str) -> bool:
    return _KEY_ID.fullmatch(key_id) is not None


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` unchanged, or raise ValidationError naming the rule it breaks."""
    if is_valid_key_id(key_id):
        return key_id
    shown = key_id[:40] + ("..." if len(key_id) > 40 else "")
    printable = "".join(c if " " <= c <= "~" else "?" for c in shown)
    raise ValidationError(
        f"invalid key ID {printable!r}: use 1 to {EXTERNAL_KEY_ID_MAX} characters from "
        "letters, digits, '-', '.' and '_'"
    )


def generate_key_id() -> str:
    return str(uuid.uuid4())
