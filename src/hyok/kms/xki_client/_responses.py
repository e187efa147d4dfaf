"""Reading and validation of XKI proxy responses, and XKS error bodies as ProxyRejectedError."""

from __future__ import annotations

import binascii
import enum
import hashlib
import json
from typing import Any, Final, TypeVar

from hyok.kms.xki_client._errors import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
)
from hyok.kms.xki_client._requests import _Call
from hyok.kms.xki_client._text import _printable

E = TypeVar("E", bound=enum.StrEnum)

# The largest valid response is a Base64 plaintext or ciphertext of a few
# tens of kilobytes. Reading stops well above that, so a faulty proxy cannot
# make the KMS buffer an unbounded body.
_MAX_RESPONSE_BYTES: Final = 1024 * 1024
_PROXY_TEXT_MAX: Final = 512


def _invalid(call: _Call, problem: str) -> ProxyInvalidResponseError:
    return ProxyInvalidResponseError(
        ProxyErrorKind.INVALID_RESPONSE,
        f"{call.subject} failed: the proxy's response is invalid: {problem}",
        operation=call.operation.name,
        external_key_id=call.external_key_id,
    )


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _rejection(call: _Call, status: int, body: bytes) -> ProxyError:
    document = _load_json(body)
    name = document.get("errorName") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(name, str) or not name:
        return _invalid(call, f"HTTP {status} without an XKS error body (JSON with errorName)")
    error_name = _printable(name, 64)
    proxy_message = document.get("errorMessage")
    return ProxyRejectedError(
        f"{call.subject} was rejected: {error_name} (HTTP {status})",
        operation=call.operation.name,
        external_key_id=call.external_key_id,
        error_name=error_name,
        http_status=status,
        proxy_message=(
            _printable(proxy_message, _PROXY_TEXT_MAX) if isinstance(proxy_message, str) else ""
        ),
    )


class _Fields:
    """Typed access to the fields of a JSON object in a successful response."""

    def __init__(self, call: _Call, document: dict[str, Any]) -> None:
        self.call = call
        self.document = document

    @classmethod
    def parse(cls, call: _Call, body: bytes) -> _Fields:
        document = _load_json(body)
        if not isinstance(document, dict):
            raise _invalid(call, "the body is not a JSON object")
        return cls(call, document)

    def text(self, name: str) -> str:
        value = self.document.get(name)
        if not isinstance(value, str):
            raise _invalid(self.call, f"{name} is missing or not a string")
        return value

    def binary(self, name: str, *, required: bool = True) -> bytes | None:
        value = self.document.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise _invalid(self.call, f"{name} is missing or not a Base64 string")
        try:
            return binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            raise _invalid(self.call, f"{name} is not valid Base64") from None

    def required_binary(self, name: str) -> bytes:
        value = self.binary(name)
        assert value is not None
        return value

    def enum(self, name: str, kind: type[E]) -> E:
        value = self.text(name)
        try:
            return kind(value)
        except ValueError:
            # The value itself stays out of the message, which contains no proxy-supplied text.
            allowed = ", ".join(member.value for member in kind)
            raise _invalid(self.call, f"{name} is not one of {allowed}") from None


def _integrity_value(
    aad: bytes, ciphertext_metadata: bytes, iv: bytes, ciphertext: bytes, tag: bytes
) -> bytes:
    """Hash AAD, ciphertext metadata, IV, ciphertext and tag with SHA-256, without lengths."""
    digest = hashlib.sha256()
    for part in (aad, ciphertext_metadata, iv, ciphertext, tag):
        digest.update(part)
    return digest.digest()


def _check_body(call: _Call, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Refuse a body over the size limit, or one in an encoding the client did not ask for."""
    if len(body) > _MAX_RESPONSE_BYTES:
        raise _invalid(call, f"the body exceeds {_MAX_RESPONSE_BYTES} bytes")
    for name, value in headers:
        if name.lower() == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise _invalid(
                call, "the body has a Content-Encoding, and the client accepts only identity"
            )
