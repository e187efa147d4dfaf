"""A wrapper that keeps secrets out of reprs, logs and tracebacks."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Final

from hyok.common.errors import ConfigError

__all__ = ["Secret", "read_secret"]

_MASK: Final = "Secret('**********')"


class Secret:
    """A secret string whose repr and str are masked.

    Call :meth:`reveal` at the one place that needs the value. Equality is
    constant-time so that comparing two secrets leaks no timing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def reveal_bytes(self) -> bytes:
        return self._value.encode("utf-8")

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal_bytes(), other.reveal_bytes())

    def __hash__(self) -> int:
        # Secrets are not meant to be dictionary keys; hashing the value would
        # make it recoverable by brute force from a hash table dump.
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> str:
        raise TypeError("Secret cannot be pickled")


def read_secret(*, env: str | None, file: Path | None, what: str) -> Secret:
    """Read a secret from an environment variable or, failing that, a file.

    ``what`` names the secret in error messages, for example
    ``"keystore passphrase"``. A trailing newline in the file is removed.
    """
    if env:
        value = os.environ.get(env)
        if value:
            return Secret(value)
        if file is None:
            raise ConfigError(f"the {what} is missing: set the environment variable {env}")
    if file is None:
        raise ConfigError(f"no source for the {what}: configure an environment variable or a file")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the {what} file {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {file}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"the {what} file {file} is empty")
    return Secret(value)
