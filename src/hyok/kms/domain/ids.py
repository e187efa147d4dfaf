"""ID generators and ARNs of the KMS: keys, instances, key versions, AccessKeys and accounts.

Pure code, no I/O. Each generator takes its random source as an argument
(``random_bytes``, a function from a byte count to that many random bytes),
so tests can make IDs deterministic. The default is :func:`secrets.token_bytes`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain._checks import (
    check_account_id,
    check_instance_id,
    check_key_id,
    check_region,
    check_str,
    shown,
)

__all__ = [
    "KeyArn",
    "RandomBytes",
    "instance_arn",
    "key_arn",
    "new_access_key_id",
    "new_access_key_secret",
    "new_account_id",
    "new_instance_id",
    "new_key_id",
    "new_key_version_id",
    "parse_key_arn",
]

RandomBytes = Callable[[int], bytes]
"""A function that returns the given number of random bytes, such as :func:`secrets.token_bytes`."""

_LOWER_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_MIXED_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DIGITS: Final = "0123456789"
# Random part of generated key and instance IDs. Alibaba Cloud's examples
# (key-hzz62f1cb66fa42qo****) have 21 characters; 36**21 is about 2**108.
_GENERATED_ID_LENGTH: Final = 21
_ACCESS_KEY_ID_PREFIX: Final = "LTAI"
_ACCESS_KEY_ID_RANDOM_LENGTH: Final = 20
_ACCESS_KEY_SECRET_LENGTH: Final = 30
_ACCOUNT_ID_LENGTH: Final = 16
_KEY_ARN: Final = re.compile(r"acs:kms:([^:]*):([^:]*):key/(.*)")


def _random_string(alphabet: str, length: int, random_bytes: RandomBytes) -> str:
    # Rejection sampling keeps every character equally likely: bytes at or
    # above the largest multiple of the alphabet size are dropped.
    limit = 256 - 256 % len(alphabet)
    chars: list[str] = []
    while len(chars) < length:
        for byte in random_bytes(length - len(chars)):
            if byte < limit:
                chars.append(alphabet[byte % len(alphabet)])
    return "".join(chars[:length])


def new_key_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate a key ID: ``key-`` and 21 random lower-case letters and digits."""
    return "key-" + _random_string(_LOWER_ALNUM, _GENERATED_ID_LENGTH, random_bytes)


def new_instance_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate an instance ID: ``kst-`` and 21 random lower-case letters and digits."""
    return "kst-" + _random_string(_LOWER_ALNUM, _GENERATED_ID_LENGTH, random_bytes)


def new_key_version_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate a key version ID: a random (version 4) UUID."""
    return str(uuid.UUID(bytes=random_bytes(16), version=4))


def new_access_key_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate an AccessKey ID like Alibaba Cloud's: ``LTAI`` and 20 random letters and digits."""
    return _ACCESS_KEY_ID_PREFIX + _random_string(
        _MIXED_ALNUM, _ACCESS_KEY_ID_RANDOM_LENGTH, random_bytes
    )


def new_access_key_secret(random_bytes: RandomBytes = secrets.token_bytes) -> Secret:
    """Generate an AccessKey secret: 30 random letters and digits (about 178 bits)."""
    return Secret(_random_string(_MIXED_ALNUM, _ACCESS_KEY_SECRET_LENGTH, random_bytes))


def new_account_id(random_bytes: RandomBytes = secrets.token_bytes) -> str:
    """Generate a 16-digit account ID whose first digit is not 0."""
    first = _random_string("123456789", 1, random_bytes)
    return first + _random_string(_DIGITS, _ACCOUNT_ID_LENGTH - 1, random_bytes)


def key_arn(region: str, account_id: str, key_id: str) -> str:
    """Build a key ARN, ``acs:kms:<region>:<account>:key/<key ID>``."""
    check_region(region)
    check_account_id("account_id", account_id)
    check_key_id("key_id", key_id)
    return f"acs:kms:{region}:{account_id}:key/{key_id}"


def instance_arn(region: str, account_id: str, instance_id: str) -> str:
    """Build an instance ARN, ``acs:kms:<region>:<account>:keystore/<instance ID>``."""
    check_region(region)
    check_account_id("account_id", account_id)
    check_instance_id("instance_id", instance_id)
    return f"acs:kms:{region}:{account_id}:keystore/{instance_id}"


@dataclass(frozen=True)
class KeyArn:
    """The parts of a key ARN."""

    region: str
    account_id: str
    key_id: str

    def __str__(self) -> str:
        return key_arn(self.region, self.account_id, self.key_id)


def parse_key_arn(arn: str) -> KeyArn:
    """Split a key ARN into region, account ID and key ID, checking each part.

    Raises ValidationError when ``arn`` is not ``acs:kms:<region>:<account>:key/<key ID>``.
    """
    match = _KEY_ARN.fullmatch(check_str("key ARN", arn))
    if match is None:
        raise ValidationError(
            f"invalid key ARN {shown(arn)}: write acs:kms:<region>:<account ID>:key/<key ID>"
        )
    region, account_id, key_id = match.groups()
    return KeyArn(
        check_region(region),
        check_account_id("account ID in the key ARN", account_id),
        check_key_id("key ID in the key ARN", key_id),
    )
