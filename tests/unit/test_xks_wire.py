"""The XKS wire format: parsing limits, AAD layout, CDIV and error bodies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hyok.common.errors import (
    InvalidCiphertextError,
    UnsupportedOperationError,
    ValidationError,
)
from hyok.kmi.base import EncryptResult
from hyok.xki import xks

VECTORS = Path(__file__).parent.parent / "vectors" / "xks"

METADATA = {
    "awsPrincipalArn": "acs:ram::1234567890:user/alice",
    "kmsKeyArn": "acs:kms:cn-hangzhou:1234567890:key/key-1",
    "kmsOperation": "Encrypt",
    "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypt_body(**fields: object) -> bytes:
    document: dict[str, object] = {
        "requestMetadata": METADATA,
        "plaintext": b64(b"hello"),
        "encryptionAlgorithm": "AES_GCM",
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def decrypt_body(**fields: object) -> bytes:
    document: dict[str, object] = {
        "requestMetadata": METADATA,
        "ciphertext": b64(b"x" * 5),
        "encryptionAlgorithm": "AES_GCM",
        "initializationVector": b64(b"i" * 12),
        "authenticationTag": b64(b"t" * 16),
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.parametrize("vector", json.loads((VECTORS / "cdiv.json").read_text())["vectors"])
def test_cdiv_matches_specification_example(vector: dict[str, str]) -> None:
    result = EncryptResult(
        iv=base64.b64decode(vector["initializationVector"]),
        ciphertext=base64.b64decode(vector["ciphertext"]),
        tag=base64.b64decode(vector["authenticationTag"]),
    )
    value = xks.cdiv(
        base64.b64decode(vector["additionalAuthenticatedData"]),
        base64.b64decode(vector["ciphertextMetadata"]),
        result,
    )
    assert b64(value) == vector["ciphertextDataIntegrityValue"]


def test_backend_aad_is_length_prefixed() -> None:
    assert xks.backend_aad(None, None) == b"\x00\x00\x00"
    assert xks.backend_aad(b"ab", None) == b"\x00\x02ab\x00"
    assert xks.backend_aad(None, b"m") == b"\x00\x00\x01m"
    assert xks.backend_aad(b"a" * 300, b"mm") == b"\x01\x2c" + b"a" * 300 + b"\x02mm"


def test_backend_aad_separates_aad_from_metadata() -> None:
    # Metadata passed as AAD, or AAD passed as metadata, must give another AAD.
    assert xks.backend_aad(b"meta", None) != xks.backend_aad(None, b"meta")


def test_encrypt_accepts_4300_bytes_and_8192_aad() -> None:
    request = xks.parse_encrypt(
        encrypt_body(plaintext=b64(b"p" * 4300), additionalAuthenticatedData=b64(b"a" * 8192))
    )
    assert len(request.plaintext) == 4300
    assert request.aad is not None and len(request.aad) == 8192


def test_encrypt_rejects_aad_above_8192_as_unsupported() -> None:
    with pytest.raises(UnsupportedOperationError, match="additionalAuthenticatedData"):
        xks.parse_encrypt(encrypt_body(additionalAuthenticatedData=b64(b"a" * 8193)))


def test_encrypt_rejects_plaintext_above_limit_as_unsupported() -> None:
    with pytest.raises(UnsupportedOperationError, match="plaintext"):
        xks.parse_encrypt(encrypt_body(plaintext=b64(b"p" * (xks.MAX_DATA + 1))))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"plaintext": None}, "plaintext is missing"),
        ({"plaintext": "not base64!"}, "plaintext is not valid Base64"),
        ({"plaintext": 5}, "plaintext must be a Base64 string"),
        ({"encryptionAlgorithm": None}, "encryptionAlgorithm is missing"),
        ({"encryptionAlgorithm": "AES_CBC"}, "use AES_GCM"),
        ({"ciphertextDataIntegrityValueAlgorithm": "MD5"}, "use SHA_256"),
        ({"requestMetadata": None}, "requestMetadata is missing"),
        ({"requestMetadata": []}, "requestMetadata must be a JSON object"),
        ({"requestMetadata": {**METADATA, "kmsKeyArn": None}}, "kmsKeyArn is missing"),
        ({"requestMetadata": {**METADATA, "awsPrincipalArn": None}}, "awsPrincipalArn"),
        ({"requestMetadata": {**METADATA, "kmsRequestId": None}}, "kmsRequestId is missing"),
        ({"requestMetadata": {**METADATA, "kmsOperation": 3}}, "kmsOperation must be a string"),
    ],
)
def test_encrypt_validation_errors(fields: dict[str, object], message: str) -> None:
    body = encrypt_body(**fields)
    if fields.get("requestMetadata", "") is None:
        document = json.loads(body)
        document.pop("requestMetadata", None)
        body = json.dumps(document).encode()
    with pytest.raises(ValidationError, match=message):
        xks.parse_encrypt(body)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff\xfe", b'"text"'])
def test_malformed_json_is_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        xks.parse_encrypt(body)


def test_unknown_kms_operation_and_extra_fields_are_accepted() -> None:
    metadata = {**METADATA, "kmsOperation": "BulkEncryptFromTheFuture", "newField": "x"}
    request = xks.parse_encrypt(encrypt_body(requestMetadata=metadata, extra=1))
    assert request.metadata.kms_operation == "BulkEncryptFromTheFuture"


def test_request_id_is_opaque() -> None:
    metadata = {**METADATA, "kmsRequestId": "not-a-uuid \u00e9 {}"}
    request = xks.parse_encrypt(encrypt_body(requestMetadata=metadata))
    assert request.metadata.kms_request_id == "not-a-uuid \u00e9 {}"


def test_arn_of_2048_characters_is_accepted() -> None:
    arn = "acs:ram::1:user/" + "a" * (2048 - 16)
    request = xks.parse_encrypt(encrypt_body(requestMetadata={**METADATA, "awsPrincipalArn": arn}))
    assert request.metadata.aws_principal_arn == arn


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"initializationVector": b64(b"i" * 8)}, "12 or 16"),
        ({"authenticationTag": b64(b"t" * 12)}, "must have 16"),
        ({"ciphertext": None}, "ciphertext is missing"),
        ({"ciphertext": "%%%"}, "ciphertext is not valid Base64"),
        ({"initializationVector": None}, "initializationVector is missing"),
        ({"authenticationTag": None}, "authenticationTag is missing"),
    ],
)
def test_decrypt_ciphertext_faults(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidCiphertextError, match=message):
        xks.parse_decrypt(decrypt_body(**fields))


def test_decrypt_accepts_16_byte_iv() -> None:
    request = xks.parse_decrypt(decrypt_body(initializationVector=b64(b"i" * 16)))
    assert len(request.iv) == 16


def test_decrypt_rejects_ciphertext_metadata_over_20_bytes() -> None:
    with pytest.raises(InvalidCiphertextError, match="ciphertextMetadata"):
        xks.parse_decrypt(decrypt_body(ciphertextMetadata=b64(b"m" * 21)))


def test_health_needs_no_principal() -> None:
    body = json.dumps({"requestMetadata": {"kmsRequestId": "1", "kmsOperation": "X"}}).encode()
    metadata = xks.parse_metadata_request(body, xks.Operation.HEALTH)
    assert metadata.aws_principal_arn == ""


def test_error_body_is_printable_and_short() -> None:
    body = json.loads(xks.error_body("ValidationException", "bad \u00e9\n" + "x" * 600))
    message = body["errorMessage"]
    assert len(message) < 512
    assert all(" " <= c <= "~" for c in message)
    assert body["errorName"] == "ValidationException"
