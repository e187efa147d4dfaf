"""Field checks shared by the domain records and the ID helpers. Private to hyok.kms.domain.

Each check returns the value it accepts, converted where the rule requires it
(an enum from its string, a datetime in UTC), and raises ValidationError
naming the field for a value that a request can carry. A wrong type or a
naive datetime raises TypeError or ValueError instead.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Final, TypeVar

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret

__all__ = [
    "E",
    "check_account_id",
    "check_datetime",
    "check_enum",
    "check_instance_id",
    "check_key_id",
    "check_key_version_id",
    "check_optional_datetime",
    "check_pattern",
    "check_region",
    "check_secret",
    "check_str",
    "check_text",
    "set_field",
    "shown",
]

_ACCOUNT_ID: Final = re.compile(r"[0-9]{12,16}")
_REGION: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# The ciphertext blob allows 128 characters for a key ID, so the part after
# "key-" has at most 124.
_KEY_ID: Final = re.compile(r"key-[a-z0-9]{1,124}")
_INSTANCE_ID: Final = re.compile(r"kst-[a-z0-9]{1,60}")
_KEY_VERSION_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shown(value: object, limit: int = 64) -> str:
    """Quote a value for an error message: printable ASCII, cut to ``limit`` characters."""
    text = str(value)
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return repr("".join(c if " " <= c <= "~" else "?" for c in cut))


def check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def check_pattern(name: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    text = check_str(name, value)
    if pattern.fullmatch(text) is None:
        raise ValidationError(f"invalid {name} {shown(text)}: {rule}")
    return text


def check_text(name: str, value: object, max_length: int, *, allow_empty: bool) -> str:
    text = check_str(name, value)
    if not text and not allow_empty:
        raise ValidationError(f"{name} is empty: give 1 to {max_length} characters")
    if len(text) > max_length:
        raise ValidationError(f"{name} has {len(text)} characters: the maximum is {max_length}")
    # PostgreSQL text cannot contain NUL, and no name or description needs it.
    if "\x00" in text:
        raise ValidationError(f"{name} contains a NUL character: remove it")
    return text


def check_datetime(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def check_optional_datetime(name: str, value: object) -> datetime | None:
    return None if value is None else check_datetime(name, value)


E = TypeVar("E", bound=enum.StrEnum)


def check_enum(name: str, value: object, enum_type: type[E]) -> E:
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum_type)
    raise ValidationError(f"invalid {name} {shown(value)}: use one of {allowed}")


def check_account_id(name: str, value: object) -> str:
    return check_pattern(name, value, _ACCOUNT_ID, "an account ID has 12 to 16 digits")


def check_region(value: object) -> str:
    return check_pattern(
        "region",
        value,
        _REGION,
        "use 1 to 64 lower-case letters, digits and '-', such as 'cn-hangzhou'",
    )


def check_key_id(name: str, value: object) -> str:
    return check_pattern(
        name,
        value,
        _KEY_ID,
        "a key ID is 'key-' followed by 1 to 124 lower-case letters and digits",
    )


def check_instance_id(name: str, value: object) -> str:
    return check_pattern(
        name,
        value,
        _INSTANCE_ID,
        "an instance ID is 'kst-' followed by 1 to 60 lower-case letters and digits",
    )


def check_key_version_id(name: str, value: object) -> str:
    return check_pattern(
        name, value, _KEY_VERSION_ID, "a key version ID is a UUID in lower-case hex"
    )


def check_secret(name: str, value: object, pattern: re.Pattern[str], rule: str) -> Secret:
    if not isinstance(value, Secret):
        raise TypeError(f"{name} must be a hyok.common.secrets.Secret, not a plain value")
    revealed = value.reveal()
    if pattern.fullmatch(revealed) is None:
        # Only the length is shown: the value is secret.
        raise ValidationError(f"invalid {name} of {len(revealed)} characters: {rule}")
    return value


def set_field(record: object, name: str, value: object) -> None:
    object.__setattr__(record, name, value)
