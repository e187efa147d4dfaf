"""Console passwords: the password policy, and scrypt hashes in the PHC string format.

Pure code, no I/O. The policy applies to every console password, of an
account root or of a RAM user (RAM ``CreateLoginProfile`` and
``UpdateLoginProfile``):

- 8 to 128 characters. RAM's default password policy requires at least 8
  (its ``MinimumPasswordLength`` is 8 to 32, default 8) and documents no
  maximum, so 128 is hyok's, the limit that AWS IAM sets on a login profile
  password. It also bounds the work of one hash.
- printable ASCII only, space included (U+0020 to U+007E), so that every
  keyboard and terminal can type the password and no Unicode normalization
  is needed;
- at least one letter and at least one digit, as RAM's policy options
  ``RequireLowercaseCharacters`` or ``RequireUppercaseCharacters``, and
  ``RequireNumbers``, ask when they are set.

A hash is ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>`` with a 16-byte
random salt and a 32-byte derived key, both in Base64 without padding. The
cost parameters go with the hash, so :data:`DEFAULT_SCRYPT` can be raised
and old hashes still verify (:func:`needs_rehash` returns which to replace).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Final

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain.ids import RandomBytes

__all__ = [
    "DEFAULT_SCRYPT",
    "MAX_PASSWORD_HASH_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PASSWORD_RULES",
    "PasswordPolicyError",
    "ScryptParameters",
    "check_password",
    "dummy_password_hash",
    "generate_password",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

MIN_PASSWORD_LENGTH: Final = 8
MAX_PASSWORD_LENGTH: Final = 128
MAX_PASSWORD_HASH_LENGTH: Final = 256
"""The longest stored hash string. The database checks the same limit."""
PASSWORD_RULES: Final = (
    f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} printable ASCII characters "
    "(space included), with at least one letter and one digit"
)
"""The policy in one phrase, for help text and docs."""

_SALT_BYTES: Final = 16
_KEY_BYTES: Final = 32
_PRINTABLE: Final = re.compile(r"[\x20-\x7e]*")
_LETTER: Final = re.compile(r"[A-Za-z]")
_DIGIT: Final = re.compile(r"[0-9]")
_HASH: Final = re.compile(
    r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,2}),p=([0-9]{1,2})\$([A-Za-z0-9+/]{22,86})\$"
    r"([A-Za-z0-9+/]{43})"
)
_GENERATED_ALPHABET: Final = string.ascii_letters + string.digits


class PasswordPolicyError(ValidationError):
    """A password that breaks the policy. ``rule`` names the broken rule, never the password.

    ``rule`` is ``"Length"``, ``"InvalidChars"`` or ``"Weak"``, the last part
    of the RAM error code ``InvalidParameter.Password.<rule>``.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class ScryptParameters:
    """The scrypt cost: N = 2 ** ``log2_n``, block size ``r`` and parallelism ``p``."""

    log2_n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        # Two-digit values keep a stored hash parseable, and one hash at most 2 GiB of memory.
        if not 10 <= self.log2_n <= 20 or not 1 <= self.r <= 16 or not 1 <= self.p <= 16:
            raise ValueError(
                f"invalid scrypt parameters ln={self.log2_n}, r={self.r}, p={self.p}: use "
                "ln 10 to 20, r 1 to 16 and p 1 to 16"
            )

    @property
    def max_memory(self) -> int:
        """The memory limit to pass to hashlib.scrypt, in bytes: twice what scrypt needs."""
        return 2 * 128 * self.r * ((1 << self.log2_n) + self.p)


# NOTE: N = 2**15 with r = 8 uses 32 MiB per hash, which bounds the memory of
# concurrent sign-ins. OWASP's password storage cheat sheet (May 2023) recommends
# at least N = 2**17 with r = 8 and p = 1, so raise this when the hosts can afford it.
DEFAULT_SCRYPT: Final = ScryptParameters(log2_n=15, r=8, p=1)


def check_password(password: Secret) -> None:
    """Check a new password against the policy. Raises PasswordPolicyError naming the rule."""
    value = password.reveal()
    if not MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            "Length",
            f"the password has {len(value)} characters: use {MIN_PASSWORD_LENGTH} to "
            f"{MAX_PASSWORD_LENGTH}",
        )
    if _PRINTABLE.fullmatch(value) is None:
        raise PasswordPolicyError(
            "InvalidChars",
            "the password contains a character that is not printable ASCII: use only letters, "
            "digits, space and the ASCII symbols",
        )
    if _LETTER.search(value) is None or _DIGIT.search(value) is None:
        raise PasswordPolicyError(
            "Weak", "the password needs at least one letter (A-Z or a-z) and one digit (0-9)"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: Secret, salt: bytes, parameters: ScryptParameters) -> bytes:
    return hashlib.scrypt(
        password.reveal_bytes(),
        salt=salt,
        n=1 << parameters.log2_n,
        r=parameters.r,
        p=parameters.p,
        maxmem=parameters.max_memory,
        dklen=_KEY_BYTES,
    )


def hash_password(
    password: Secret,
    parameters: ScryptParameters = DEFAULT_SCRYPT,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> str:
    """Hash a password with scrypt and a new random salt, as a PHC string."""
    salt = random_bytes(_SALT_BYTES)
    key = _derive(password, salt, parameters)
    return (
        f"$scrypt$ln={parameters.log2_n},r={parameters.r},p={parameters.p}${_b64(salt)}${_b64(key)}"
    )


def _parse(encoded: str) -> tuple[ScryptParameters, bytes, bytes]:
    match = _HASH.fullmatch(encoded)
    if match is None:
        raise ValueError("the stored password hash is not a scrypt PHC string")
    log2_n, r, p, salt, key = match.groups()
    try:
        return ScryptParameters(int(log2_n), int(r), int(p)), _unb64(salt), _unb64(key)
    except binascii.Error:
        raise ValueError("the stored password hash has invalid Base64") from None


def verify_password(password: Secret, encoded: str) -> bool:
    """Return whether ``password`` matches the hash, comparing the keys in constant time.

    Raises ValueError for a hash that is not a scrypt PHC string, which only
    a corrupt row can hold.
    """
    parameters, salt, key = _parse(encoded)
    return hmac.compare_digest(_derive(password, salt, parameters), key)


def needs_rehash(encoded: str, parameters: ScryptParameters = DEFAULT_SCRYPT) -> bool:
    """Return whether a hash was made with other cost parameters than ``parameters``."""
    return _parse(encoded)[0] != parameters


@functools.cache
def dummy_password_hash(parameters: ScryptParameters = DEFAULT_SCRYPT) -> str:
    """Return a hash of a random password, made once per parameters.

    Sign-in verifies against it when the account, the user or the login
    profile does not exist, so that every failure costs one scrypt run and
    the response time does not tell which identities exist.
    """
    return hash_password(Secret(secrets.token_urlsafe(24)), parameters)


def generate_password(length: int = 24, random_bytes: RandomBytes = secrets.token_bytes) -> Secret:
    """Generate a random password of letters and digits that meets the policy."""
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"length must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH}")
    limit = 256 - 256 % len(_GENERATED_ALPHABET)
    while True:
        chars: list[str] = []
        # Rejection sampling keeps every character equally likely.
        while len(chars) < length:
            chars.extend(
                _GENERATED_ALPHABET[b % len(_GENERATED_ALPHABET)]
                for b in random_bytes(length - len(chars))
                if b < limit
            )
        password = Secret("".join(chars[:length]))
        try:
            check_password(password)
        except PasswordPolicyError:
            continue
        return password
