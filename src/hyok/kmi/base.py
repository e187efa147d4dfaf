"""The contract every key-manager (KMI) backend implements.

A backend owns key material, key state (ENABLED or DISABLED) and key usage.
Key material never leaves it: callers see key IDs, metadata and the results
of AES-256-GCM operations only.

Backends raise only classes from :mod:`hyok.common.errors`:

- ``KeyNotFoundError`` when no key has the ID,
- ``KeyAlreadyExistsError`` when ``create_key`` is given an ID in use,
- ``InvalidStateError`` when an encrypt or decrypt names a DISABLED key,
- ``InvalidKeyUsageError`` when the key lacks the ENCRYPT or DECRYPT usage,
- ``InvalidCiphertextError`` for every decrypt failure (tag, AAD, IV, data),
  with one message that does not say which part was wrong,
- ``ValidationError`` for a bad key ID or usage,
- ``InternalError`` when the device or file fails.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "Capabilities",
    "EncryptResult",
    "FleetMember",
    "HealthStatus",
    "KeyInfo",
    "KeyManager",
    "KeySpec",
    "KeyState",
    "KeyUsage",
]


@enum.unique
class KeySpec(enum.StrEnum):
    """Key type; XKS v1 defines only 256-bit AES keys."""

    AES_256 = "AES_256"


@enum.unique
class KeyUsage(enum.StrEnum):
    """Operations a key may be used for, with the names XKS metadata reports."""

    ENCRYPT = "ENCRYPT"
    DECRYPT = "DECRYPT"
    WRAP = "WRAP"
    UNWRAP = "UNWRAP"
    SIGN = "SIGN"
    VERIFY = "VERIFY"
    DERIVE = "DERIVE"


@enum.unique
class KeyState(enum.StrEnum):
    """Key status in the key manager, as XKS metadata reports it."""

    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


@enum.unique
class HealthStatus(enum.StrEnum):
    """Health of one member of the key manager's fleet, as XKS health reports it."""

    ACTIVE = "ACTIVE"
    DEGRADED = "DEGRADED"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Metadata of one key; never contains key material."""

    key_id: str
    spec: KeySpec
    usages: frozenset[KeyUsage]
    state: KeyState
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EncryptResult:
    """Output of one AES-GCM encryption: the IV the backend chose, ciphertext and 16-byte tag."""

    iv: bytes
    ciphertext: bytes
    tag: bytes

    def __repr__(self) -> str:
        return (
            f"EncryptResult(iv=<{len(self.iv)} bytes>, ciphertext=<{len(self.ciphertext)} bytes>,"
            f" tag=<{len(self.tag)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One device, token or server behind a backend, as reported by a health check."""

    id: str
    model: str
    status: HealthStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Features of a backend, so callers can choose behaviour without trying and failing."""

    usages: frozenset[KeyUsage] = frozenset({KeyUsage.ENCRYPT, KeyUsage.DECRYPT})
    decrypt_iv_lengths: frozenset[int] = frozenset({12, 16})
    can_disable: bool = True
    can_delete: bool = True
    # True when operations may block (device or network I/O): the proxy then
    # runs them in its bounded thread pool instead of on the event loop.
    blocking: bool = True
    extra: dict[str, str] = field(default_factory=dict)


class KeyManager(ABC):
    """A key manager that keeps AES-256 keys and performs AES-GCM with them."""

    #: Vendor name reported as ``ekmVendor`` in XKS health responses.
    vendor: str = "hyok"

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Features of this backend."""

    @abstractmethod
    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        """Create an enabled AES-256 key.

        ``key_id`` None generates a UUID. ``usages`` None means ENCRYPT and
        DECRYPT. Raises KeyAlreadyExistsError when the ID is taken.
        """

    @abstractmethod
    def describe_key(self, key_id: str) -> KeyInfo:
        """Return the metadata of one key."""

    @abstractmethod
    def list_keys(self) -> list[KeyInfo]:
        """Return the metadata of every customer key, ordered by key ID."""

    @abstractmethod
    def enable_key(self, key_id: str) -> KeyInfo:
        """Set the key's state to ENABLED and return its new metadata."""

    @abstractmethod
    def disable_key(self, key_id: str) -> KeyInfo:
        """Set the key's state to DISABLED and return its new metadata."""

    @abstractmethod
    def delete_key(self, key_id: str) -> None:
        """Destroy the key. Every ciphertext under it becomes undecryptable."""

    @abstractmethod
    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        """Encrypt with AES-256-GCM under a fresh 12-byte IV and a 16-byte tag."""

    @abstractmethod
    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        """Decrypt and authenticate; any mismatch raises InvalidCiphertextError."""

    @abstractmethod
    def health(self) -> list[FleetMember]:
        """Run a real encrypt and decrypt on a test key of the backend's own, per fleet member.

        Never uses a customer key. Returns one to ten entries.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release sessions, handles and locks."""
