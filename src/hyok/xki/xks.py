"""The XKS proxy API v1 wire format: request parsing, validation and responses.

Pure functions, no I/O. Limits follow the XKS v1 specification: plaintext and
ciphertext of at least 4,300 bytes, AAD of up to 8,192 bytes, ciphertext
metadata of at most 20 bytes, 12- or 16-byte IVs, 16-byte tags, ARNs of up to
2,048 characters. Values above the minimum the specification requires but
beyond what hyok supports get UnsupportedOperationException, as the error
table prescribes.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hyok.common.errors import (
    InvalidCiphertextError,
    RequestError,
    UnsupportedOperationError,
    ValidationError,
)
from hyok.kmi.base import EncryptResult, FleetMember, KeyInfo

__all__ = [
    "CIPHERTEXT_METADATA",
    "MAX_AAD",
    "MAX_DATA",
    "DecryptRequest",
    "EncryptRequest",
    "Operation",
    "RequestMetadata",
    "backend_aad",
    "cdiv",
    "decrypt_response",
    "encrypt_response",
    "error_body",
    "health_response",
    "metadata_response",
    "parse_decrypt",
    "parse_encrypt",
    "parse_metadata_request",
]

MAX_DATA: Final = 16_384  # plaintext or ciphertext bytes; the specification requires 4,300
MAX_AAD: Final = 8_192
MAX_CIPHERTEXT_METADATA: Final = 20
MAX_METADATA_FIELD: Final = 2_048
TAG_LENGTH: Final = 16
IV_LENGTHS: Final = frozenset({12, 16})
ERROR_MESSAGE_MAX: Final = 511

# Ciphertext metadata that hyok returns with every encryption. It names the
# AAD layout used (length-prefixed AAD and metadata), so that decryption can
# recognise a later layout.
CIPHERTEXT_METADATA: Final = b"hyok/1"


@enum.unique
class Operation(enum.StrEnum):
    """The four XKS v1 operations, named by their URI suffix."""

    METADATA = "metadata"
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    HEALTH = "health"

    @property
    def action(self) -> str:
        """Operation name used in logs, metrics and authorization policies."""
        return _ACTIONS[self]


_ACTIONS: Final = {
    Operation.METADATA: "GetKeyMetadata",
    Operation.ENCRYPT: "Encrypt",
    Operation.DECRYPT: "Decrypt",
    Operation.HEALTH: "GetHealthStatus",
}

_OPTIONAL_FIELDS: Final = ("kmsKeyArn", "kmsViaService", "awsSourceVpc", "awsSourceVpce")


@dataclass(frozen=True, slots=True)
class RequestMetadata:
    """The ``requestMetadata`` object; unknown fields are ignored, as the specification requires."""

    kms_request_id: str
    kms_operation: str
    aws_principal_arn: str = ""
    kms_key_arn: str = ""
    kms_via_service: str = ""
    aws_source_vpc: str = ""
    aws_source_vpce: str = ""

    def as_context(self) -> dict[str, str]:
        """Metadata by wire name, for authorization and audit; absent fields are ''."""
        return {
            "awsPrincipalArn": self.aws_principal_arn,
            "kmsKeyArn": self.kms_key_arn,
            "kmsOperation": self.kms_operation,
            "kmsRequestId": self.kms_request_id,
            "kmsViaService": self.kms_via_service,
            "awsSourceVpc": self.aws_source_vpc,
            "awsSourceVpce": self.aws_source_vpce,
        }


@dataclass(frozen=True, slots=True)
class EncryptRequest:
    metadata: RequestMetadata
    plaintext: bytes
    aad: bytes | None
    want_cdiv: bool

    def __repr__(self) -> str:
        return f"EncryptRequest(plaintext=<{len(self.plaintext)} bytes>)"


@dataclass(frozen=True, slots=True)
class DecryptRequest:
    metadata: RequestMetadata
    ciphertext: bytes
    ciphertext_metadata: bytes | None
    aad: bytes | None
    iv: bytes
    tag: bytes

    def __repr__(self) -> str:
        return f"DecryptRequest(ciphertext=<{len(self.ciphertext)} bytes>)"


def _load(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("the request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValidationError("the request body must be a JSON object")
    return document


def _string(container: Mapping[str, Any], name: str, *, required: bool, where: str) -> str:
    value = container.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{where}{name} is missing; it is required")
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{where}{name} must be a string")
    if len(value) > MAX_METADATA_FIELD:
        raise UnsupportedOperationError(
            f"{where}{name} has {len(value)} characters; at most {MAX_METADATA_FIELD} are supported"
        )
    return value


def _metadata(document: Mapping[str, Any], *, principal_required: bool, key_arn_required: bool
              ) -> RequestMetadata:
    raw = document.get("requestMetadata")
    if raw is None:
        raise ValidationError("requestMetadata is missing; it is required")
    if not isinstance(raw, dict):
        raise ValidationError("requestMetadata must be a JSON object")
    where = "requestMetadata."
    optional = {name: _string(raw, name, required=False, where=where) for name in _OPTIONAL_FIELDS}
    if key_arn_required and not optional["kmsKeyArn"]:
        raise ValidationError(f"{where}kmsKeyArn is missing; it is required")
    return RequestMetadata(
        kms_request_id=_string(raw, "kmsRequestId", required=True, where=where),
        kms_operation=_string(raw, "kmsOperation", required=True, where=where),
        aws_principal_arn=_string(raw, "awsPrincipalArn", required=principal_required, where=where),
        kms_key_arn=optional["kmsKeyArn"],
        kms_via_service=optional["kmsViaService"],
        aws_source_vpc=optional["awsSourceVpc"],
        aws_source_vpce=optional["awsSourceVpce"],
    )


def _base64(
    document: Mapping[str, Any],
    name: str,
    *,
    required: bool,
    limit: int,
    error: type[RequestError] = ValidationError,
    too_large: type[RequestError] = UnsupportedOperationError,
) -> bytes | None:
    value = document.get(name)
    if value is None:
        if required:
            raise error(f"{name} is missing; it is required")
        return None
    if not isinstance(value, str):
        raise error(f"{name} must be a Base64 string")
    # Reject before decoding anything far above the limit.
    if len(value) > (limit + 2) // 3 * 4:
        raise too_large(f"{name} exceeds {limit} bytes, the largest size allowed here")
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise error(f"{name} is not valid Base64") from None
    if len(decoded) > limit:
        raise too_large(f"{name} has {len(decoded)} bytes; at most {limit} are allowed here")
    return decoded


def _algorithm(document: Mapping[str, Any]) -> None:
    value = document.get("encryptionAlgorithm")
    if value is None:
        raise ValidationError("encryptionAlgorithm is missing; it is required and must be AES_GCM")
    if value != "AES_GCM":
        shown = value if isinstance(value, str) else type(value).__name__
        raise ValidationError(f"encryptionAlgorithm {str(shown)[:40]!r} is invalid; use AES_GCM")


def parse_metadata_request(body: bytes, operation: Operation) -> RequestMetadata:
    """Parse a GetKeyMetadata or GetHealthStatus body: only requestMetadata matters."""
    document = _load(body)
    return _metadata(
        document,
        principal_required=operation is Operation.METADATA,
        key_arn_required=False,
    )


def parse_encrypt(body: bytes) -> EncryptRequest:
    document = _load(body)
    metadata = _metadata(document, principal_required=True, key_arn_required=True)
    _algorithm(document)
    plaintext = _base64(document, "plaintext", required=True, limit=MAX_DATA)
    aad = _base64(document, "additionalAuthenticatedData", required=False, limit=MAX_AAD)
    cdiv_algorithm = document.get("ciphertextDataIntegrityValueAlgorithm")
    if cdiv_algorithm is not None and cdiv_algorithm != "SHA_256":
        shown = str(cdiv_algorithm)[:40]
        raise ValidationError(
            f"ciphertextDataIntegrityValueAlgorithm {shown!r} is invalid; use SHA_256 or omit it"
        )
    assert plaintext is not None
    return EncryptRequest(metadata, plaintext, aad, cdiv_algorithm is not None)


def parse_decrypt(body: bytes) -> DecryptRequest:
    document = _load(body)
    metadata = _metadata(document, principal_required=True, key_arn_required=True)
    _algorithm(document)
    bad = InvalidCiphertextError
    ciphertext = _base64(document, "ciphertext", required=True, limit=MAX_DATA, error=bad)
    # The specification fixes the sizes of these three, so a larger value is
    # invalid ciphertext rather than a size this proxy does not support.
    ciphertext_metadata = _base64(
        document, "ciphertextMetadata", required=False, limit=MAX_CIPHERTEXT_METADATA, error=bad,
        too_large=bad,
    )
    aad = _base64(document, "additionalAuthenticatedData", required=False, limit=MAX_AAD, error=bad)
    iv = _base64(document, "initializationVector", required=True, limit=16, error=bad,
                 too_large=bad)
    tag = _base64(document, "authenticationTag", required=True, limit=TAG_LENGTH, error=bad,
                  too_large=bad)
    assert ciphertext is not None
    assert iv is not None
    assert tag is not None
    if len(iv) not in IV_LENGTHS:
        raise InvalidCiphertextError(
            f"initializationVector has {len(iv)} bytes; AES_GCM needs 12 or 16"
        )
    if len(tag) != TAG_LENGTH:
        raise InvalidCiphertextError(f"authenticationTag has {len(tag)} bytes; it must have 16")
    return DecryptRequest(metadata, ciphertext, ciphertext_metadata, aad, iv, tag)


def backend_aad(aad: bytes | None, ciphertext_metadata: bytes | None) -> bytes:
    """Build the AAD given to the key manager.

    The layout is the one the specification prescribes: 2-byte big-endian AAD
    length, AAD, 1-byte ciphertext-metadata length, ciphertext metadata. The
    lengths stop metadata passed as AAD (or the reverse) from decrypting.
    """
    aad = aad or b""
    ciphertext_metadata = ciphertext_metadata or b""
    return (
        len(aad).to_bytes(2, "big")
        + aad
        + len(ciphertext_metadata).to_bytes(1, "big")
        + ciphertext_metadata
    )


def cdiv(aad: bytes | None, ciphertext_metadata: bytes | None, result: EncryptResult) -> bytes:
    """SHA-256 over AAD, ciphertext metadata, IV, ciphertext and tag, with no lengths."""
    digest = hashlib.sha256()
    digest.update(aad or b"")
    digest.update(ciphertext_metadata or b"")
    digest.update(result.iv)
    digest.update(result.ciphertext)
    digest.update(result.tag)
    return digest.digest()


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# One encoder for every response: json.dumps builds a new one per call with
# non-default options.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def _dump(document: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(document).encode("ascii")


def metadata_response(info: KeyInfo) -> bytes:
    usages = sorted(usage.value for usage in info.usages)[:10]
    return _dump({"keySpec": info.spec.value, "keyUsage": usages, "keyStatus": info.state.value})


def encrypt_response(result: EncryptResult, integrity_value: bytes | None) -> bytes:
    document = {
        "ciphertext": _b64(result.ciphertext),
        "ciphertextMetadata": _b64(CIPHERTEXT_METADATA),
        "initializationVector": _b64(result.iv),
        "authenticationTag": _b64(result.tag),
    }
    if integrity_value is not None:
        document["ciphertextDataIntegrityValue"] = _b64(integrity_value)
    return _dump(document)


def decrypt_response(plaintext: bytes) -> bytes:
    return _dump({"plaintext": _b64(plaintext)})


def health_response(
    *, fleet_size: int, proxy_model: str, ekm_vendor: str, members: list[FleetMember]
) -> bytes:
    return _dump(
        {
            "xksProxyFleetSize": fleet_size,
            "xksProxyVendor": "hyok",
            "xksProxyModel": proxy_model,
            "ekmVendor": ekm_vendor,
            "ekmFleetDetails": [
                {"id": member.id, "model": member.model, "healthStatus": member.status.value}
                for member in members[:10]
            ],
        }
    )


def _printable(message: str) -> str:
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in message)
    return cleaned[:ERROR_MESSAGE_MAX]


def error_body(name: str, message: str) -> bytes:
    """Build an XKS error body whose message is printable ASCII below 512 characters."""
    return _dump({"errorName": name, "errorMessage": _printable(message)})
