"""SigV4 credentials of a key store, kept in a sealed file.

Each key store has its own credential file, sealed with the proxy's secrets
passphrase (see :mod:`hyok.common.sealed`). The file contains up to
``MAX_CREDENTIALS`` live credentials, so that a KMS can move to a new one while
the old one still works. The running proxy rereads the file when it changes.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from filelock import FileLock

from hyok.common.errors import ConfigError, KeystoreCorruptError, ValidationError
from hyok.common.fileio import atomic_write
from hyok.common.sealed import Sealer
from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential

__all__ = [
    "MAX_CREDENTIALS",
    "CredentialFile",
    "StoredCredential",
    "generate_credential",
    "proxy_configuration",
]

MAX_CREDENTIALS: Final = 10
PURPOSE: Final = "xki-credentials"
_FORMAT: Final = 1
# XKS v1: access key IDs are 20 to 30 characters of the Base32 alphabet A-Z, 2-7.
_ACCESS_KEY_ID: Final = re.compile(r"[A-Z2-7]{20,30}")
# Secrets are Base64 text of 43 to 64 characters (the KMS console file format).
_SECRET: Final = re.compile(r"[A-Za-z0-9+/=]{43,64}")


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """One credential as stored: the SigV4 credential and when it was created."""

    credential: Credential
    created_at: datetime

    @property
    def access_key_id(self) -> str:
        return self.credential.access_key_id


def generate_credential(now: datetime | None = None) -> StoredCredential:
    """Create a random credential: a 26-character Base32 access key ID and a 256-bit secret."""
    access_key_id = base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
    secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    return StoredCredential(
        Credential(access_key_id, Secret(secret)), now or datetime.now(UTC)
    )


def proxy_configuration(uri_path: str, credential: Credential) -> dict[str, Any]:
    """Build the XKS proxy configuration document a KMS console accepts."""
    return {
        "XksProxyUriPath": uri_path,
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": credential.access_key_id,
            "RawSecretAccessKey": credential.secret.reveal(),
        },
    }


def _decode(payload: bytes, path: Path) -> list[StoredCredential]:
    try:
        document = json.loads(payload)
        if document.get("format") != _FORMAT:
            raise KeystoreCorruptError(
                f"credential file {path} has format {document.get('format')!r}; "
                f"this hyok reads format {_FORMAT}"
            )
        result = []
        for item in document["credentials"]:
            access_key_id = str(item["accessKeyId"])
            secret = str(item["secret"])
            if not _ACCESS_KEY_ID.fullmatch(access_key_id) or not _SECRET.fullmatch(secret):
                raise KeystoreCorruptError(f"credential file {path} contains an invalid credential")
            created = datetime.fromisoformat(item["createdAt"])
            result.append(StoredCredential(Credential(access_key_id, Secret(secret)), created))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeystoreCorruptError(
            f"credential file {path} has an invalid structure; restore it from a backup "
            "or create a new one with 'hyok xki credentials add'"
        ) from None
    return result


def _encode(items: Sequence[StoredCredential]) -> bytes:
    document = {
        "format": _FORMAT,
        "credentials": [
            {
                "accessKeyId": item.access_key_id,
                "secret": item.credential.secret.reveal(),
                "createdAt": item.created_at.isoformat(),
            }
            for item in items
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


class CredentialFile:
    """The sealed credential file of one key store."""

    def __init__(self, path: Path, sealer: Sealer) -> None:
        self.path = path
        self._sealer = sealer
        self._lock = FileLock(str(path) + ".lock", mode=0o600)

    def __repr__(self) -> str:
        return f"CredentialFile({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> list[StoredCredential]:
        """Read and unseal the file; raise ConfigError (or a Keystore*Error) when it cannot."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"credential file {self.path} does not exist; create a credential with "
                "'hyok xki credentials add'"
            ) from None
        return _decode(self._sealer.unseal(blob, purpose=PURPOSE), self.path)

    def create(self, items: Sequence[StoredCredential]) -> None:
        """Write a new file; refuse to replace an existing one."""
        with self._lock:
            if self.path.exists():
                raise ConfigError(f"credential file {self.path} already exists")
            self._write(items)

    def add(self, item: StoredCredential) -> list[StoredCredential]:
        """Add a credential and return the new list."""
        with self._lock:
            current = self.load()
            if len(current) >= MAX_CREDENTIALS:
                raise ValidationError(
                    f"key store already has {MAX_CREDENTIALS} credentials, the maximum; "
                    "remove an old one with 'hyok xki credentials remove ACCESS_KEY_ID'"
                )
            if any(c.access_key_id == item.access_key_id for c in current):
                raise ValidationError(f"access key ID {item.access_key_id} is already present")
            updated = [*current, item]
            self._write(updated)
            return updated

    def remove(self, access_key_id: str) -> list[StoredCredential]:
        """Remove a credential and return the rest; the last one cannot be removed."""
        with self._lock:
            current = self.load()
            remaining = [c for c in current if c.access_key_id != access_key_id]
            if len(remaining) == len(current):
                known = ", ".join(c.access_key_id for c in current)
                raise ValidationError(
                    f"access key ID {access_key_id} is not in this key store; present: {known}"
                )
            if not remaining:
                raise ValidationError(
                    f"access key ID {access_key_id} is the last credential of this key store; "
                    "add a new one first so the KMS keeps access"
                )
            self._write(remaining)
            return remaining

    def _write(self, items: Sequence[StoredCredential]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, self._sealer.seal(_encode(items), purpose=PURPOSE))
