"""The four XKS operations against a real proxy over TLS: response shapes and data rules.

One proxy serves the module, with three key stores:

- ``default`` at the root prefix, on the keystore that ``initialise`` wrote;
- ``team-a`` at ``/team-a``, on the same keystore, limited to keys ``a-*``;
- ``team-b`` at ``/keystores/team-b``, on a second keystore, limited to keys
  ``b-*`` and signed for another region.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential
from tests.integration._xks import (
    CIPHERTEXT_METADATA,
    DataDir,
    RunningProxy,
    XksClient,
    assert_same_bytes,
    assert_xks_error,
    b64,
    backend_aad,
    expect_ok,
    file_backend,
    keystore_entry,
    request_metadata,
    run_proxy,
    secret_bytes,
    unb64,
    xks_data_dir,  # noqa: F401 - a pytest fixture, found by name
)

pytestmark = pytest.mark.integration

# Key IDs at the edges of the XKS rule: letters, digits, '-', '.', '_', 1 to 128 characters.
EDGE_KEY_IDS = ["a.b-c_d", "_leading-underscore", ".leading.dot", "0", "K" * 128]
SECOND_REGION = "cn-shanghai"


@pytest.fixture(scope="module")
def xks(xks_data_dir: DataDir) -> Iterator[RunningProxy]:  # noqa: F811 - the fixture
    data = xks_data_dir
    data.create_keys([*EDGE_KEY_IDS, "a-1", "b-1"])
    data.create_keystore("second.hyok", ["b-1", "b-2"])
    data.add_store_credentials("team-a")
    data.add_store_credentials("team-b")
    settings = data.write_config(
        backends={"local": file_backend(), "second": file_backend("second.hyok")},
        keystores=[
            keystore_entry("default"),
            keystore_entry("team-a", path_prefix="/team-a", keys=["a-*"]),
            keystore_entry(
                "team-b",
                path_prefix="/keystores/team-b",
                backend="second",
                keys=["b-*"],
                region=SECOND_REGION,
            ),
        ],
    )
    with run_proxy(data, settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(xks: RunningProxy) -> XksClient:
    return xks.client()


def sha256(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def flip_first_bit(text: str) -> str:
    data = bytearray(unb64(text))
    data[0] ^= 0x01
    return b64(bytes(data))


# ---------------------------------------------------------------------------
# Response shapes


def test_metadata_response_shape(client: XksClient) -> None:
    body = expect_ok(client.metadata("app-1"))

    assert set(body) == {"keySpec", "keyUsage", "keyStatus"}
    assert body["keySpec"] == "AES_256"
    assert sorted(body["keyUsage"]) == ["DECRYPT", "ENCRYPT"]
    assert body["keyStatus"] == "ENABLED"


def test_metadata_without_key_arn(client: XksClient) -> None:
    # KMS sends no kmsKeyArn during CreateKey, before the KMS key exists.
    metadata = request_metadata("CreateKey", kmsKeyArn=None)

    body = expect_ok(client.metadata("app-1", metadata=metadata))

    assert body["keyStatus"] == "ENABLED"


def test_health_response_shape(client: XksClient) -> None:
    body = expect_ok(client.health())

    assert set(body) == {
        "xksProxyFleetSize",
        "xksProxyVendor",
        "xksProxyModel",
        "ekmVendor",
        "ekmFleetDetails",
    }
    assert body["xksProxyFleetSize"] == 1
    assert body["xksProxyVendor"] == "hyok"
    assert body["xksProxyModel"].startswith("hyok XKI proxy ")
    assert body["ekmVendor"] == "hyok"
    assert body["ekmFleetDetails"] == [
        {
            "id": "file:keystore.hyok",
            "model": "hyok file keystore (format 1)",
            "healthStatus": "ACTIVE",
        }
    ]


def test_encrypt_response_shape(client: XksClient) -> None:
    plaintext = secret_bytes(32)

    body = client.encrypt_ok("app-1", plaintext)

    assert set(body) == {
        "ciphertext",
        "ciphertextMetadata",
        "initializationVector",
        "authenticationTag",
    }
    assert body["ciphertextMetadata"] == CIPHERTEXT_METADATA
    assert len(unb64(body["initializationVector"])) == 12
    assert len(unb64(body["authenticationTag"])) == 16
    assert len(unb64(body["ciphertext"])) == len(plaintext)


def test_encrypt_draws_fresh_iv(client: XksClient) -> None:
    plaintext = secret_bytes(32)

    first = client.encrypt_ok("app-1", plaintext)
    second = client.encrypt_ok("app-1", plaintext)

    assert first["initializationVector"] != second["initializationVector"]
    assert first["ciphertext"] != second["ciphertext"]


# ---------------------------------------------------------------------------
# Round trips and sizes


@pytest.mark.parametrize(
    ("plaintext_size", "aad_size"),
    [
        (0, None),
        (32, None),
        (32, 0),
        (32, 1),
        (32, 100),
        (1, None),
        (4300, None),
        (4300, 8192),
        (16_384, 8192),
    ],
    ids=[
        "empty-plaintext",
        "no-aad",
        "empty-aad",
        "1-byte-aad",
        "100-byte-aad",
        "1-byte-plaintext",
        "4300-byte-plaintext",
        "4300-byte-plaintext-8192-byte-aad",
        "16384-byte-plaintext-8192-byte-aad",
    ],
)
def test_round_trip(client: XksClient, plaintext_size: int, aad_size: int | None) -> None:
    plaintext = secret_bytes(plaintext_size)
    aad = None if aad_size is None else secret_bytes(aad_size)

    encrypted = client.encrypt_ok("app-1", plaintext, aad=aad)
    decrypted = client.decrypted("app-1", encrypted, aad=aad)

    assert len(unb64(encrypted["ciphertext"])) == plaintext_size
    assert_same_bytes(decrypted, plaintext)


def test_empty_aad_decrypts_without_aad(client: XksClient) -> None:
    # The documented layout gives empty and absent AAD the same 2-byte length 0.
    plaintext = secret_bytes(32)

    encrypted = client.encrypt_ok("app-1", plaintext, aad=b"")

    assert_same_bytes(client.decrypted("app-1", encrypted), plaintext)


@pytest.mark.parametrize("aad_size", [None, 40], ids=["no-aad", "40-byte-aad"])
def test_backend_aad_layout(
    xks: RunningProxy, client: XksClient, aad_size: int | None
) -> None:
    # Decrypting locally with the key material proves the documented layout:
    # 2-byte length, AAD, 1-byte length, ciphertext metadata.
    plaintext = secret_bytes(48)
    aad = None if aad_size is None else secret_bytes(aad_size)
    encrypted = client.encrypt_ok("app-1", plaintext, aad=aad)
    material = xks.data.key_material("app-1")

    decrypted = AESGCM(material).decrypt(
        unb64(encrypted["initializationVector"]),
        unb64(encrypted["ciphertext"]) + unb64(encrypted["authenticationTag"]),
        backend_aad(aad or b"", b"hyok/1"),
    )

    assert_same_bytes(decrypted, plaintext)


@pytest.mark.parametrize("aad_size", [None, 64], ids=["no-aad", "64-byte-aad"])
def test_ciphertext_data_integrity_value(client: XksClient, aad_size: int | None) -> None:
    plaintext = secret_bytes(100)
    aad = None if aad_size is None else secret_bytes(aad_size)

    body = client.encrypt_ok("app-1", plaintext, aad=aad, cdiv=True)

    assert set(body) == {
        "ciphertext",
        "ciphertextMetadata",
        "initializationVector",
        "authenticationTag",
        "ciphertextDataIntegrityValue",
    }
    expected = sha256(
        aad or b"",
        unb64(body["ciphertextMetadata"]),
        unb64(body["initializationVector"]),
        unb64(body["ciphertext"]),
        unb64(body["authenticationTag"]),
    )
    assert unb64(body["ciphertextDataIntegrityValue"]) == expected
    assert_same_bytes(client.decrypted("app-1", body, aad=aad), plaintext)


# ---------------------------------------------------------------------------
# Tampering


Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes | None]]


def _with(fields: dict[str, str], **changes: str | None) -> dict[str, str]:
    result = dict(fields)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


TAMPERING: dict[str, Tamper] = {
    "aad-changed": lambda f, aad: (f, aad[:-1] + bytes([aad[-1] ^ 1])),
    "aad-removed": lambda f, aad: (f, None),
    "aad-truncated": lambda f, aad: (f, aad[:-1]),
    "metadata-changed": lambda f, aad: (_with(f, ciphertextMetadata=b64(b"hyok/2")), aad),
    "metadata-removed": lambda f, aad: (_with(f, ciphertextMetadata=None), aad),
    "metadata-moved-into-aad": lambda f, aad: (
        _with(f, ciphertextMetadata=None),
        aad + unb64(f["ciphertextMetadata"]),
    ),
    "aad-byte-moved-into-metadata": lambda f, aad: (
        _with(f, ciphertextMetadata=b64(aad[-1:] + unb64(f["ciphertextMetadata"]))),
        aad[:-1],
    ),
    "iv-flipped": lambda f, aad: (
        _with(f, initializationVector=flip_first_bit(f["initializationVector"])),
        aad,
    ),
    "tag-flipped": lambda f, aad: (
        _with(f, authenticationTag=flip_first_bit(f["authenticationTag"])),
        aad,
    ),
    "ciphertext-flipped": lambda f, aad: (
        _with(f, ciphertext=flip_first_bit(f["ciphertext"])),
        aad,
    ),
    "ciphertext-truncated": lambda f, aad: (
        _with(f, ciphertext=b64(unb64(f["ciphertext"])[:-1])),
        aad,
    ),
    "iv-of-other-encryption": lambda f, aad: (
        _with(f, initializationVector=b64(os.urandom(12))),
        aad,
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_decrypt_rejected(client: XksClient, case: str) -> None:
    aad = secret_bytes(24)
    encrypted = client.encrypt_ok("app-1", secret_bytes(40), aad=aad)
    fields, sent_aad = TAMPERING[case](encrypted, aad)

    response = client.decrypt("app-1", fields, aad=sent_aad)

    assert_xks_error(response, 400, "InvalidCiphertextException")


def test_tampering_errors_look_alike(client: XksClient) -> None:
    # One message for every authentication failure, so that an attacker learns
    # nothing about which part was changed.
    aad = secret_bytes(24)
    encrypted = client.encrypt_ok("app-1", secret_bytes(40), aad=aad)
    messages = set()
    for case in ("aad-changed", "metadata-removed", "tag-flipped", "ciphertext-flipped"):
        fields, sent_aad = TAMPERING[case](encrypted, aad)
        response = client.decrypt("app-1", fields, aad=sent_aad)
        messages.add(assert_xks_error(response, 400, "InvalidCiphertextException"))

    assert len(messages) == 1


def test_aad_added_at_decrypt_rejected(client: XksClient) -> None:
    encrypted = client.encrypt_ok("app-1", secret_bytes(40))

    response = client.decrypt("app-1", encrypted, aad=secret_bytes(16))

    assert_xks_error(response, 400, "InvalidCiphertextException")


# ---------------------------------------------------------------------------
# 16-byte IVs


@pytest.mark.parametrize(
    "ciphertext_metadata", [b"hyok/1", b""], ids=["hyok-metadata", "no-metadata"]
)
def test_decrypt_16_byte_iv_made_elsewhere(
    xks: RunningProxy, client: XksClient, ciphertext_metadata: bytes
) -> None:
    # Another XKS proxy may have used a 16-byte IV. Build such a ciphertext
    # with the key material and the documented AAD layout.
    plaintext = secret_bytes(64)
    aad = secret_bytes(20)
    iv = os.urandom(16)
    material = xks.data.key_material("app-1")
    sealed = AESGCM(material).encrypt(iv, plaintext, backend_aad(aad, ciphertext_metadata))
    fields = {
        "ciphertext": b64(sealed[:-16]),
        "initializationVector": b64(iv),
        "authenticationTag": b64(sealed[-16:]),
    }
    if ciphertext_metadata:
        fields["ciphertextMetadata"] = b64(ciphertext_metadata)

    assert_same_bytes(client.decrypted("app-1", fields, aad=aad), plaintext)


def test_decrypt_random_16_byte_iv_rejected(client: XksClient) -> None:
    encrypted = client.encrypt_ok("app-1", secret_bytes(40))
    forged = _with(encrypted, initializationVector=b64(os.urandom(16)))

    response = client.decrypt("app-1", forged)

    assert_xks_error(response, 400, "InvalidCiphertextException")


# ---------------------------------------------------------------------------
# Request metadata


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_unknown_kms_operation_accepted(
    xks: RunningProxy, client: XksClient, operation: str
) -> None:
    metadata = request_metadata("SomeOperationKmsAddsIn2031")
    plaintext = secret_bytes(16)
    encrypted = client.encrypt_ok("app-1", plaintext)

    if operation == "metadata":
        response = client.metadata("app-1", metadata=metadata)
    elif operation == "encrypt":
        response = client.encrypt("app-1", plaintext, metadata=metadata)
    else:
        response = client.decrypt("app-1", encrypted, metadata=metadata)

    expect_ok(response)
    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert event["kmsOperation"] == "SomeOperationKmsAddsIn2031"


@pytest.mark.parametrize(
    "request_id",
    [
        "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "not a uuid / with spaces, slashes and a comma",
        'quote " backslash \\ tab \t newline \n end',
        "unicode-\u00fc\u00f1\u00ef\u00e7\u00f8d\u00e9-\u2603-\U0001f511",
        '{"kmsRequestId": "nested JSON"}',
        "r" * 2048,
    ],
    ids=["uuid", "spaces", "escapes", "unicode", "json", "2048-chars"],
)
def test_kms_request_id_logged_verbatim(
    xks: RunningProxy, client: XksClient, request_id: str
) -> None:
    metadata = request_metadata("DescribeKey", kmsRequestId=request_id)

    expect_ok(client.metadata("app-1", metadata=metadata))

    event = xks.audit.for_request(request_id)
    assert event["kmsRequestId"] == request_id
    assert event["status"] == 200


def test_unknown_fields_ignored(client: XksClient) -> None:
    metadata = {**request_metadata(), "kmsFieldAddedLater": "value"}
    body = {
        "requestMetadata": metadata,
        "plaintext": b64(secret_bytes(16)),
        "encryptionAlgorithm": "AES_GCM",
        "someNewTopLevelField": {"nested": [1, 2, 3]},
    }

    response = client.send(client.path("encrypt", "app-1"), body)

    expect_ok(response)


def test_content_type_with_charset_accepted(client: XksClient) -> None:
    response = client.metadata("app-1", content_type="application/json; charset=utf-8")

    expect_ok(response)


# ---------------------------------------------------------------------------
# Key IDs


@pytest.mark.parametrize("key_id", EDGE_KEY_IDS, ids=lambda key_id: key_id[:20])
def test_edge_key_ids(xks: RunningProxy, client: XksClient, key_id: str) -> None:
    plaintext = secret_bytes(24)
    metadata = request_metadata("DescribeKey")

    expect_ok(client.metadata(key_id, metadata=metadata))
    encrypted = client.encrypt_ok(key_id, plaintext)

    assert_same_bytes(client.decrypted(key_id, encrypted), plaintext)
    assert xks.audit.for_request(metadata["kmsRequestId"])["keyId"] == key_id


def test_key_ids_are_separate_keys(client: XksClient) -> None:
    encrypted = client.encrypt_ok("a.b-c_d", secret_bytes(24))

    response = client.decrypt("app-1", encrypted)

    assert_xks_error(response, 400, "InvalidCiphertextException")


# ---------------------------------------------------------------------------
# Key stores on path prefixes


def test_prefixes_select_backends(xks: RunningProxy) -> None:
    default = expect_ok(xks.client("default").health())
    team_a = expect_ok(xks.client("team-a").health())
    team_b = expect_ok(xks.client("team-b").health())

    assert [m["id"] for m in default["ekmFleetDetails"]] == ["file:keystore.hyok"]
    assert [m["id"] for m in team_a["ekmFleetDetails"]] == ["file:keystore.hyok"]
    assert [m["id"] for m in team_b["ekmFleetDetails"]] == ["file:second.hyok"]


def test_prefix_round_trips(xks: RunningProxy) -> None:
    for store, key_id in (("team-a", "a-1"), ("team-b", "b-1"), ("team-b", "b-2")):
        client = xks.client(store)
        plaintext = secret_bytes(32)
        encrypted = client.encrypt_ok(key_id, plaintext)
        assert_same_bytes(client.decrypted(key_id, encrypted), plaintext)


def test_same_key_id_in_two_backends(xks: RunningProxy) -> None:
    # b-1 exists in both keystores with different material.
    team_b = xks.client("team-b")
    encrypted = team_b.encrypt_ok("b-1", secret_bytes(32))

    response = xks.client("default").decrypt("b-1", encrypted)

    assert_xks_error(response, 400, "InvalidCiphertextException")


@pytest.mark.parametrize(
    ("store", "key_id"),
    [("team-a", "app-1"), ("team-a", "b-1"), ("team-b", "a-1"), ("team-b", "app-1")],
)
def test_prefix_keys_pattern(xks: RunningProxy, store: str, key_id: str) -> None:
    response = xks.client(store).metadata(key_id)

    assert_xks_error(response, 404, "KeyNotFoundException", key_id, store)


@pytest.mark.parametrize(
    ("store", "credential_of"),
    [("team-a", "default"), ("team-a", "team-b"), ("team-b", "team-a"), ("default", "team-a")],
)
def test_prefix_rejects_other_store_credential(
    xks: RunningProxy, store: str, credential_of: str
) -> None:
    credential = xks.data.credentials[credential_of].credential
    client = xks.client(store, credential=credential)

    response = client.health()

    assert_xks_error(
        response, 401, "AuthenticationFailedException", credential.access_key_id
    )


def test_prefix_signs_with_own_region(xks: RunningProxy) -> None:
    client = xks.client("team-b")

    expect_ok(client.health())
    response = client.health(region=xks.data.region)

    assert_xks_error(response, 401, "AuthenticationFailedException", xks.data.region)


def test_unknown_credential_rejected_on_every_store(xks: RunningProxy) -> None:
    stranger = Credential("STRANGERAAAAAAAAAAAAAAAAAA", Secret(b64(secret_bytes(32))))
    for store in ("default", "team-a", "team-b"):
        response = xks.client(store, credential=stranger).health()
        assert_xks_error(response, 401, "AuthenticationFailedException", "STRANGER")
