"""The four XKS operations, the description of one call, and checks of a call's arguments."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Final

from hyok.kms.xki_client._models import RequestMetadata
from hyok.kms.xki_client._text import _shown

_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class _Operation:
    name: str
    suffix: str
    idempotent: bool


_METADATA: Final = _Operation("GetKeyMetadata", "metadata", idempotent=True)
_ENCRYPT: Final = _Operation("Encrypt", "encrypt", idempotent=False)
_DECRYPT: Final = _Operation("Decrypt", "decrypt", idempotent=True)
_HEALTH: Final = _Operation("GetHealthStatus", "health", idempotent=True)


@dataclass(frozen=True, slots=True)
class _Call:
    operation: _Operation
    external_key_id: str | None
    endpoint: str
    budget: float

    @property
    def subject(self) -> str:
        if self.external_key_id is None:
            return f"{self.operation.name} at the XKI proxy {self.endpoint}"
        return (
            f"{self.operation.name} of external key {self.external_key_id!r} at the XKI "
            f"proxy {self.endpoint}"
        )


def _check_key_id(external_key_id: str) -> None:
    # "." and ".." would become dot segments and change the request path.
    if (
        not isinstance(external_key_id, str)
        or not _KEY_ID.fullmatch(external_key_id)
        or external_key_id in (".", "..")
    ):
        raise ValueError(
            f"external key ID {_shown(external_key_id)} is invalid: use 1 to 128 letters, "
            "digits, '.', '-' and '_', other than '.' and '..'"
        )


def _check_bytes(name: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def _check_metadata(metadata: RequestMetadata, operation: _Operation) -> None:
    if not isinstance(metadata, RequestMetadata):
        raise TypeError(f"metadata must be a RequestMetadata, not {type(metadata).__name__}")
    if not metadata.kms_request_id or not metadata.kms_operation:
        raise ValueError("metadata.kms_request_id and metadata.kms_operation are required")
    if operation is not _HEALTH and not metadata.principal_arn:
        raise ValueError(
            f"metadata.principal_arn is missing: {operation.name} requires the caller's ARN"
        )
    if operation in (_ENCRYPT, _DECRYPT) and not metadata.kms_key_arn:
        raise ValueError(
            f"metadata.kms_key_arn is missing: {operation.name} requires the KMS key's ARN"
        )


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")
