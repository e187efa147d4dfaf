"""Every row of the XKS error table in docs/xki-proxy.md, against a real proxy over TLS.

Each test checks the status, the ``errorName``, that ``errorMessage`` is
printable ASCII below 512 characters, and that the message names the bad
value where the request has one.

Faults of the key manager are injected at the KMI interface: wrappers around
the file keystore sleep past the deadline, raise, or report an unavailable
fleet, each behind its own key store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.errors import InternalError
from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential
from hyok.kmi.base import FleetMember, HealthStatus, KeyUsage
from tests.integration._xks import (
    PRINCIPAL,
    DataDir,
    FailingKeyManager,
    FleetKeyManager,
    RunningProxy,
    SlowKeyManager,
    XksClient,
    assert_same_bytes,
    assert_xks_error,
    b64,
    backend_aad,
    decrypt_body,
    encrypt_body,
    expect_ok,
    file_backend,
    keystore_entry,
    request_metadata,
    run_proxy,
    secret_bytes,
    xks_data_dir,  # noqa: F401 - a pytest fixture, found by name
)

pytestmark = pytest.mark.integration

SLOW_SECONDS = 1.0
INTRUDER = "arn:aws:iam::111122223333:role/intruder"
# An InternalError whose message is long and not ASCII, as a device driver might write it.
DEVICE_FAILURE = "HSM slot 3 d\u00e9faillant \u2014 " + "register dump 0xdeadbeef " * 40
ALLOW_APP_ROLE = f"""\
@id("allow-app-role")
permit (principal == Xks::Principal::"{PRINCIPAL}", action, resource);
"""
ALL_UNAVAILABLE = [
    FleetMember("hsm-a", "test HSM", HealthStatus.UNAVAILABLE, "no route to host"),
    FleetMember("hsm-b", "test HSM", HealthStatus.UNAVAILABLE, "connection refused"),
]
# Twelve members, two of them still serving, which is more than the ten entries
# that a response may list.
LARGE_FLEET = [
    FleetMember("hsm-0", "test HSM", HealthStatus.DEGRADED, "fan failure"),
    *(
        FleetMember(f"hsm-{index}", "test HSM", HealthStatus.UNAVAILABLE, "powered off")
        for index in range(1, 11)
    ),
    FleetMember("hsm-11", "test HSM", HealthStatus.ACTIVE),
]


@pytest.fixture(scope="module")
def xks(xks_data_dir: DataDir) -> Iterator[RunningProxy]:  # noqa: F811 - the fixture
    data = xks_data_dir
    data.create_keys(["other-1", "disabled-1"])
    data.create_keys(["enc-only"], usages=[KeyUsage.ENCRYPT])
    data.create_keys(["dec-only"], usages=[KeyUsage.DECRYPT])
    (data.root / "policies").mkdir()
    (data.root / "policies" / "guarded.cedar").write_text(ALLOW_APP_ROLE, encoding="utf-8")

    stores: dict[str, dict[str, Any]] = {
        "narrow": {"keys": ["app-*"]},
        "slow": {"backend": "slow"},
        "broken": {"backend": "broken"},
        "crashing": {"backend": "crashing"},
        "down": {"backend": "down"},
        "large": {"backend": "large"},
        # 0.2 requests per second: the second request within 5 s is throttled.
        "throttled": {"rate_limit": 0.2, "rate_burst": 1},
        "guarded": {"cedar_policy_file": "policies/guarded.cedar"},
    }
    for name in stores:
        data.add_store_credentials(name)
    settings = data.write_config(
        backends={
            name: file_backend()
            for name in ("local", "slow", "broken", "crashing", "down", "large")
        },
        keystores=[
            keystore_entry("default"),
            *(
                keystore_entry(name, path_prefix=f"/{name}", **options)
                for name, options in stores.items()
            ),
        ],
    )
    backends = {
        "slow": SlowKeyManager(data.open_keystore(), SLOW_SECONDS),
        "broken": FailingKeyManager(data.open_keystore(), lambda: InternalError(DEVICE_FAILURE)),
        "crashing": FailingKeyManager(
            data.open_keystore(), lambda: RuntimeError("device path /dev/hsm0 reset by peer")
        ),
        "down": FleetKeyManager(data.open_keystore(), ALL_UNAVAILABLE),
        "large": FleetKeyManager(data.open_keystore(), LARGE_FLEET),
    }
    with run_proxy(data, settings, backends=backends) as running:
        yield running


@pytest.fixture(scope="module")
def client(xks: RunningProxy) -> XksClient:
    return xks.client()


# ---------------------------------------------------------------------------
# 400 ValidationException


def _encrypt_document(**changes: Any) -> dict[str, Any]:
    document = encrypt_body(secret_bytes(16))
    for name, value in changes.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def _metadata_without(name: str) -> dict[str, str]:
    metadata = request_metadata()
    del metadata[name]
    return metadata


BODY_VALIDATION_CASES: dict[str, tuple[bytes | dict[str, Any], str]] = {
    "malformed-json": (b'{"requestMetadata": ', "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "not valid JSON"),
    "json-array": (b"[]", "must be a JSON object"),
    "empty-body": (b"", "not valid JSON"),
    "missing-request-metadata": (_encrypt_document(requestMetadata=None), "requestMetadata"),
    "request-metadata-not-object": (
        _encrypt_document(requestMetadata="DescribeKey"),
        "requestMetadata must be a JSON object",
    ),
    "missing-kms-request-id": (
        _encrypt_document(requestMetadata=_metadata_without("kmsRequestId")),
        "kmsRequestId is missing",
    ),
    "missing-kms-operation": (
        _encrypt_document(requestMetadata=_metadata_without("kmsOperation")),
        "kmsOperation is missing",
    ),
    "missing-principal": (
        _encrypt_document(requestMetadata=_metadata_without("awsPrincipalArn")),
        "awsPrincipalArn is missing",
    ),
    "missing-key-arn": (
        _encrypt_document(requestMetadata=_metadata_without("kmsKeyArn")),
        "kmsKeyArn is missing",
    ),
    "metadata-field-not-string": (
        _encrypt_document(requestMetadata={**request_metadata(), "kmsOperation": 7}),
        "kmsOperation must be a string",
    ),
    "missing-plaintext": (_encrypt_document(plaintext=None), "plaintext is missing"),
    "plaintext-not-base64": (_encrypt_document(plaintext="***"), "plaintext is not valid Base64"),
    "plaintext-not-string": (_encrypt_document(plaintext=42), "plaintext must be a Base64 string"),
    "aad-not-base64": (
        _encrypt_document(additionalAuthenticatedData="a"),
        "additionalAuthenticatedData is not valid Base64",
    ),
    "missing-algorithm": (
        _encrypt_document(encryptionAlgorithm=None),
        "encryptionAlgorithm is missing",
    ),
    "wrong-algorithm": (_encrypt_document(encryptionAlgorithm="AES_CBC"), "'AES_CBC'"),
    "wrong-cdiv-algorithm": (
        _encrypt_document(ciphertextDataIntegrityValueAlgorithm="MD5"),
        "'MD5'",
    ),
}


@pytest.mark.parametrize("case", list(BODY_VALIDATION_CASES))
def test_validation_of_encrypt_body(client: XksClient, case: str) -> None:
    body, fragment = BODY_VALIDATION_CASES[case]

    response = client.send(client.path("encrypt", "app-1"), body)

    assert_xks_error(response, 400, "ValidationException", fragment)


def test_validation_of_metadata_body(client: XksClient) -> None:
    response = client.send(client.path("metadata", "app-1"), {"requestMetadata": {}})

    assert_xks_error(response, 400, "ValidationException", "kmsRequestId is missing")


def test_metadata_requires_principal(client: XksClient) -> None:
    metadata = request_metadata("DescribeKey", awsPrincipalArn=None)

    response = client.metadata("app-1", metadata=metadata)

    assert_xks_error(response, 400, "ValidationException", "awsPrincipalArn is missing")


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ("text/plain", "'text/plain'"),
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("application/jsonx", "'application/jsonx'"),
        (None, "Content-Type header is missing"),
    ],
    ids=["text-plain", "form", "jsonx", "missing"],
)
def test_validation_of_content_type(
    client: XksClient, content_type: str | None, fragment: str
) -> None:
    body = encrypt_body(secret_bytes(16))

    response = client.send(client.path("encrypt", "app-1"), body, content_type=content_type)

    assert_xks_error(response, 400, "ValidationException", fragment)


@pytest.mark.parametrize("operation", ["metadata", "encrypt"])
def test_validation_of_query_string(client: XksClient, operation: str) -> None:
    body = encrypt_body(secret_bytes(16)) if operation == "encrypt" else {
        "requestMetadata": request_metadata("DescribeKey")
    }

    response = client.send(client.path(operation, "app-1") + "?debugLevel=3", body)

    # The message must name the parameter that the proxy rejects.
    assert_xks_error(response, 400, "ValidationException", "debugLevel")


def test_health_ignores_query_and_malformed_body(client: XksClient) -> None:
    # GetHealthStatus has no ValidationException in the error table.
    with_query = client.send(client.path("health", "app-1") + "?debugLevel=3",
                             {"requestMetadata": request_metadata("KmsHealthCheck")})
    malformed = client.send(client.path("health", "app-1"), {"requestMetadata": 5})

    assert with_query.status_code == 200
    assert malformed.status_code == 200
    assert malformed.json()["ekmFleetDetails"]


@pytest.mark.parametrize(
    ("key_id_in_path", "fragment"),
    [
        ("bad!id", "'bad!id'"),
        ("key%20with%20space", "'key with space'"),
        ("caf%C3%A9", "invalid key ID"),
        ("K" * 129, "K" * 40),
        ("a:b", "'a:b'"),
        ("tilde~key", "'tilde~key'"),
    ],
    ids=["exclamation", "space", "non-ascii", "129-chars", "colon", "tilde"],
)
@pytest.mark.parametrize("operation", ["metadata", "encrypt"])
def test_validation_of_key_id(
    client: XksClient, key_id_in_path: str, fragment: str, operation: str
) -> None:
    body = encrypt_body(secret_bytes(16)) if operation == "encrypt" else {
        "requestMetadata": request_metadata("DescribeKey")
    }

    response = client.send(client.path(operation, key_id_in_path), body)

    assert_xks_error(response, 400, "ValidationException", "invalid key ID", fragment)


def test_long_values_keep_message_short(client: XksClient) -> None:
    long_algorithm = _encrypt_document(encryptionAlgorithm="AES_" + "X" * 3000)
    long_content_type = "application/" + "x" * 3000

    algorithm = client.send(client.path("encrypt", "app-1"), long_algorithm)
    content_type = client.send(
        client.path("encrypt", "app-1"), encrypt_body(b"x"), content_type=long_content_type
    )
    path = client.send("/" + "p" * 3000 + "/kms/xks/v1/health", b"{}")
    access_key = client.health(
        credential=Credential("A" * 3000, Secret(b64(secret_bytes(32))))
    )

    # assert_xks_error checks that each message stays below 512 characters.
    assert_xks_error(algorithm, 400, "ValidationException", "AES_XXX")
    assert_xks_error(content_type, 400, "ValidationException", "application/xxx")
    assert_xks_error(path, 404, "InvalidUriPathException", "ppp")
    assert_xks_error(access_key, 401, "AuthenticationFailedException", "AAA")


# ---------------------------------------------------------------------------
# 400 InvalidStateException


def test_disabled_key(xks: RunningProxy, client: XksClient) -> None:
    plaintext = secret_bytes(24)
    encrypted = client.encrypt_ok("disabled-1", plaintext)
    admin = xks.data.open_keystore()
    try:
        admin.disable_key("disabled-1")
    finally:
        admin.close()

    metadata = expect_ok(client.metadata("disabled-1"))
    encrypt = client.encrypt("disabled-1", plaintext)
    decrypt = client.decrypt("disabled-1", encrypted)

    assert metadata["keyStatus"] == "DISABLED"
    assert_xks_error(encrypt, 400, "InvalidStateException", "disabled-1")
    assert_xks_error(decrypt, 400, "InvalidStateException", "disabled-1")


# ---------------------------------------------------------------------------
# 400 InvalidCiphertextException


def _decrypt_fields(**changes: object) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ciphertext": b64(os.urandom(24)),
        "ciphertextMetadata": b64(b"hyok/1"),
        "initializationVector": b64(os.urandom(12)),
        "authenticationTag": b64(os.urandom(16)),
    }
    for name, value in changes.items():
        if value is None:
            fields.pop(name)
        else:
            fields[name] = value
    return fields


CIPHERTEXT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "missing-ciphertext": (_decrypt_fields(ciphertext=None), "ciphertext is missing"),
    "missing-iv": (_decrypt_fields(initializationVector=None), "initializationVector is missing"),
    "missing-tag": (_decrypt_fields(authenticationTag=None), "authenticationTag is missing"),
    "ciphertext-not-base64": (
        _decrypt_fields(ciphertext="@@@@"),
        "ciphertext is not valid Base64",
    ),
    "ciphertext-not-string": (
        _decrypt_fields(ciphertext=12345),
        "ciphertext must be a Base64 string",
    ),
    "iv-not-base64": (
        _decrypt_fields(initializationVector="!!"),
        "initializationVector is not valid Base64",
    ),
    "iv-8-bytes": (
        _decrypt_fields(initializationVector=b64(os.urandom(8))),
        "initializationVector has 8 bytes",
    ),
    "iv-13-bytes": (
        _decrypt_fields(initializationVector=b64(os.urandom(13))),
        "initializationVector has 13 bytes",
    ),
    "iv-17-bytes": (
        _decrypt_fields(initializationVector=b64(os.urandom(17))),
        "initializationVector",
    ),
    "iv-32-bytes": (
        _decrypt_fields(initializationVector=b64(os.urandom(32))),
        "initializationVector",
    ),
    "tag-12-bytes": (
        _decrypt_fields(authenticationTag=b64(os.urandom(12))),
        "authenticationTag has 12 bytes",
    ),
    "tag-17-bytes": (
        _decrypt_fields(authenticationTag=b64(os.urandom(17))),
        "authenticationTag",
    ),
    "metadata-21-bytes": (
        _decrypt_fields(ciphertextMetadata=b64(bytes(21))),
        "ciphertextMetadata has 21 bytes",
    ),
    "metadata-not-base64": (
        _decrypt_fields(ciphertextMetadata="%%"),
        "ciphertextMetadata is not valid Base64",
    ),
    "aad-not-base64": (
        {**_decrypt_fields(), "additionalAuthenticatedData": "x"},
        "additionalAuthenticatedData is not valid Base64",
    ),
    "not-authentic": (_decrypt_fields(), ""),
}


@pytest.mark.parametrize("case", list(CIPHERTEXT_CASES))
def test_invalid_ciphertext(client: XksClient, case: str) -> None:
    fields, fragment = CIPHERTEXT_CASES[case]
    body = decrypt_body(fields)
    body.update(fields)

    response = client.send(client.path("decrypt", "app-1"), body)

    assert_xks_error(response, 400, "InvalidCiphertextException", fragment)


# ---------------------------------------------------------------------------
# 400 InvalidKeyUsageException


def test_encrypt_only_key_metadata(client: XksClient) -> None:
    assert expect_ok(client.metadata("enc-only"))["keyUsage"] == ["ENCRYPT"]
    assert expect_ok(client.metadata("dec-only"))["keyUsage"] == ["DECRYPT"]


def test_decrypt_with_encrypt_only_key(client: XksClient) -> None:
    encrypted = client.encrypt_ok("enc-only", secret_bytes(24))

    response = client.decrypt("enc-only", encrypted)

    assert_xks_error(response, 400, "InvalidKeyUsageException", "enc-only", "DECRYPT")


def test_encrypt_with_decrypt_only_key(client: XksClient) -> None:
    response = client.encrypt("dec-only", secret_bytes(24))

    assert_xks_error(response, 400, "InvalidKeyUsageException", "dec-only", "ENCRYPT")


def test_encrypt_only_key_with_integrity_value(client: XksClient) -> None:
    # Encrypt is what the key allows. The proxy's own check that the result
    # decrypts must not turn the request into a usage error.
    response = client.encrypt("enc-only", secret_bytes(24), cdiv=True)

    body = expect_ok(response)
    assert "ciphertextDataIntegrityValue" in body


def test_decrypt_only_key_decrypts(xks: RunningProxy, client: XksClient) -> None:
    plaintext = secret_bytes(32)
    iv = os.urandom(12)
    material = xks.data.key_material("dec-only")
    sealed = AESGCM(material).encrypt(iv, plaintext, backend_aad(b"", b"hyok/1"))
    fields: dict[str, Any] = {
        "ciphertext": b64(sealed[:-16]),
        "ciphertextMetadata": b64(b"hyok/1"),
        "initializationVector": b64(iv),
        "authenticationTag": b64(sealed[-16:]),
    }

    assert_same_bytes(client.decrypted("dec-only", fields), plaintext)


# ---------------------------------------------------------------------------
# 401, 403


def test_unsigned_request(client: XksClient) -> None:
    body = json.dumps({"requestMetadata": request_metadata("DescribeKey")}).encode()

    response = client.raw(
        "POST",
        client.path("metadata", "app-1"),
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert_xks_error(response, 401, "AuthenticationFailedException", "Authorization")


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_access_denied_by_policy(xks: RunningProxy, operation: str) -> None:
    client = xks.client("guarded")
    metadata = request_metadata(awsPrincipalArn=INTRUDER)
    action = {"metadata": "GetKeyMetadata", "encrypt": "Encrypt", "decrypt": "Decrypt"}[operation]

    if operation == "metadata":
        response = client.metadata("app-1", metadata=metadata)
    elif operation == "encrypt":
        response = client.encrypt("app-1", secret_bytes(16), metadata=metadata)
    else:
        response = client.decrypt("app-1", _decrypt_fields(), metadata=metadata)

    assert_xks_error(response, 403, "AccessDeniedException", INTRUDER, action, "app-1")


# ---------------------------------------------------------------------------
# 404 KeyNotFoundException, InvalidUriPathException


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_key_not_found(client: XksClient, operation: str) -> None:
    if operation == "metadata":
        response = client.metadata("no-such-key")
    elif operation == "encrypt":
        response = client.encrypt("no-such-key", secret_bytes(16))
    else:
        response = client.decrypt("no-such-key", _decrypt_fields())

    assert_xks_error(response, 404, "KeyNotFoundException", "no-such-key")


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_key_outside_store_patterns(xks: RunningProxy, operation: str) -> None:
    # other-1 exists in the keystore, but the narrow store allows only app-*.
    client = xks.client("narrow")
    expect_ok(client.metadata("app-1"))

    if operation == "metadata":
        response = client.metadata("other-1")
    elif operation == "encrypt":
        response = client.encrypt("other-1", secret_bytes(16))
    else:
        response = client.decrypt("other-1", _decrypt_fields())

    assert_xks_error(response, 404, "KeyNotFoundException", "other-1", "narrow")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/unknown-prefix/kms/xks/v1/health", "'/unknown-prefix'"),
        ("/narrow/extra/kms/xks/v1/health", "'/narrow/extra'"),
        ("/kms/xks/v1/keys/app-1/sign", "/kms/xks/v1/keys/app-1/sign"),
        ("/kms/xks/v1/keys/app-1/Encrypt", "/kms/xks/v1/keys/app-1/Encrypt"),
        ("/kms/xks/v1/keys/app-1/health", "/kms/xks/v1/keys/app-1/health"),
        ("/kms/xks/v1/keys/app-1/encrypt/", "/kms/xks/v1/keys/app-1/encrypt/"),
        ("/kms/xks/v1/keys/app-1/metadata/", "/kms/xks/v1/keys/app-1/metadata/"),
        ("/kms/xks/v1/health/", "/kms/xks/v1/health/"),
        ("/kms/xks/v1/keys/app-1", "/kms/xks/v1/keys/app-1"),
        ("/kms/xks/v1/keys//metadata", "/kms/xks/v1/keys//metadata"),
        ("/kms/xks/v2/health", "/kms/xks/v2/health"),
        ("/", "'/'"),
    ],
    ids=[
        "unknown-prefix",
        "prefix-with-extra-segment",
        "unknown-operation",
        "operation-case",
        "health-under-key",
        "encrypt-trailing-slash",
        "metadata-trailing-slash",
        "health-trailing-slash",
        "no-operation",
        "empty-key-id",
        "api-v2",
        "root",
    ],
)
def test_invalid_uri_path(client: XksClient, path: str, fragment: str) -> None:
    body = {"requestMetadata": request_metadata("DescribeKey")}

    response = client.send(path, body)

    assert_xks_error(response, 404, "InvalidUriPathException", fragment)


# ---------------------------------------------------------------------------
# 405


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt", "health"])
def test_method_not_allowed(client: XksClient, method: str, operation: str) -> None:
    response = client.raw(method, client.path(operation, "app-1"))

    assert_xks_error(response, 405, "MethodNotAllowed", method)
    assert response.headers["allow"] == "POST"


def test_method_not_allowed_when_signed(client: XksClient) -> None:
    response = client.send(client.path("encrypt", "app-1"), encrypt_body(b"x"), method="PUT")

    assert_xks_error(response, 405, "MethodNotAllowed", "PUT")
    assert response.headers["allow"] == "POST"


# ---------------------------------------------------------------------------
# 429


def test_throttling(xks: RunningProxy) -> None:
    client = xks.client("throttled")

    first = client.health()
    second = client.health()

    expect_ok(first)
    assert_xks_error(second, 429, "ThrottlingException", "throttled", "0.2")


# ---------------------------------------------------------------------------
# 501 UnsupportedOperationException


@pytest.mark.parametrize(
    ("operation", "fields", "fragments"),
    [
        (
            "encrypt",
            {"additionalAuthenticatedData": b64(bytes(8193))},
            ["additionalAuthenticatedData", "8193"],
        ),
        ("encrypt", {"plaintext": b64(bytes(16_385))}, ["plaintext", "16385"]),
        ("encrypt", {"plaintext": b64(bytes(30_000))}, ["plaintext", "16384"]),
        (
            "encrypt",
            {"requestMetadata": request_metadata(awsPrincipalArn="arn:" + "p" * 2045)},
            ["awsPrincipalArn", "2049"],
        ),
        (
            "encrypt",
            {"requestMetadata": request_metadata(kmsRequestId="r" * 2049)},
            ["kmsRequestId", "2049"],
        ),
        ("decrypt", {"ciphertext": b64(bytes(16_385))}, ["ciphertext", "16385"]),
        (
            "decrypt",
            {"additionalAuthenticatedData": b64(bytes(8193))},
            ["additionalAuthenticatedData", "8193"],
        ),
    ],
    ids=[
        "aad-8193",
        "plaintext-16385",
        "plaintext-30000",
        "principal-arn-2049",
        "request-id-2049",
        "ciphertext-16385",
        "decrypt-aad-8193",
    ],
)
def test_value_above_limit(
    client: XksClient, operation: str, fields: dict[str, Any], fragments: list[str]
) -> None:
    if operation == "encrypt":
        body = {**encrypt_body(secret_bytes(16)), **fields}
    else:
        body = {**decrypt_body(_decrypt_fields()), **fields}

    response = client.send(client.path(operation, "app-1"), body)

    assert_xks_error(response, 501, "UnsupportedOperationException", *fragments)


def test_body_above_max_body_bytes(client: XksClient) -> None:
    body = json.dumps(encrypt_body(secret_bytes(16))).encode()
    body += b" " * (70_000 - len(body))

    response = client.send(client.path("encrypt", "app-1"), body)

    assert_xks_error(response, 501, "UnsupportedOperationException", "70000", "65536")


def test_chunked_body_above_max_body_bytes(client: XksClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * 16_384

    response = client.raw(
        "POST",
        client.path("encrypt", "app-1"),
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert_xks_error(response, 501, "UnsupportedOperationException", "65536")


# ---------------------------------------------------------------------------
# 503 DependencyTimeoutException


@pytest.mark.parametrize("operation", ["metadata", "encrypt"])
def test_dependency_timeout(xks: RunningProxy, operation: str) -> None:
    client = xks.client("slow")
    started = time.monotonic()

    if operation == "metadata":
        response = client.metadata("app-1")
    else:
        response = client.encrypt("app-1", secret_bytes(16))
    elapsed = time.monotonic() - started

    assert_xks_error(response, 503, "DependencyTimeoutException", "slow", "200 ms")
    # The deadline ended the request, not the backend's sleep.
    assert 0.2 <= elapsed < SLOW_SECONDS


# ---------------------------------------------------------------------------
# 500 InternalException


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_internal_error_of_key_manager(xks: RunningProxy, operation: str) -> None:
    client = xks.client("broken")

    if operation == "metadata":
        response = client.metadata("app-1")
    elif operation == "encrypt":
        response = client.encrypt("app-1", secret_bytes(16))
    else:
        response = client.decrypt("app-1", _decrypt_fields())

    # assert_xks_error checks that the long, non-ASCII message was made
    # printable and cut below 512 characters.
    assert_xks_error(response, 500, "InternalException")


def test_unexpected_exception_reveals_nothing(xks: RunningProxy) -> None:
    response = xks.client("crashing").encrypt("app-1", secret_bytes(16))

    message = assert_xks_error(response, 500, "InternalException")
    assert "hsm0" not in message
    assert "RuntimeError" not in message


def test_health_with_whole_fleet_unavailable(xks: RunningProxy) -> None:
    response = xks.client("down").health()

    assert_xks_error(response, 500, "InternalException", "down")


def test_health_with_part_of_fleet_serving(xks: RunningProxy) -> None:
    body = expect_ok(xks.client("large").health())

    # The specification allows one to ten entries.
    assert [m["id"] for m in body["ekmFleetDetails"]] == [f"hsm-{i}" for i in range(10)]
    assert body["ekmFleetDetails"][0]["healthStatus"] == "DEGRADED"
    assert {m["healthStatus"] for m in body["ekmFleetDetails"][1:]} == {"UNAVAILABLE"}


def test_load_balancer_health_with_fleet_unavailable(client: XksClient) -> None:
    response = client.raw("GET", "/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_other_stores_serve_while_one_backend_is_down(xks: RunningProxy) -> None:
    body = expect_ok(xks.client("default").health())

    assert [m["healthStatus"] for m in body["ekmFleetDetails"]] == ["ACTIVE"]


# ---------------------------------------------------------------------------
# Audit of errors


def test_errors_are_audited_with_message(xks: RunningProxy, client: XksClient) -> None:
    metadata = request_metadata("DescribeKey")

    response = client.metadata("no-such-key", metadata=metadata)

    message = assert_xks_error(response, 404, "KeyNotFoundException")
    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert event["outcome"] == "KeyNotFoundException"
    assert event["status"] == 404
    assert event["message"] == message
