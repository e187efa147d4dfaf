"""Key and cryptographic actions of the KMS, through the official SDK, on SQLite and PostgreSQL.

Every test runs against the whole chain of ``tests.integration._kms``: the
SDK calls the KMS over TLS, the KMS calls a real hyok XKI proxy over TLS,
and the proxy uses the file key manager.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from darabonba.runtime import ExtendsParameters  # type: ignore[import-untyped]

from hyok.kms.ciphertext import decode_blob_base64, encode_blob_base64
from hyok.kms.domain import InstanceStatus, KeyState
from tests.integration._kms import (
    ACCOUNT_ID,
    REGION,
    KmsStack,
    kms_stack,
    postgres_server,
)
from tests.integration._sdk import call, client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

Sensitive = Callable[[bytes | str], None]
OPAQUE_MESSAGE_START = "The CiphertextBlob is invalid or corrupted"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_key(stack: KmsStack, external_key_id: str = "app-1", **extra: str) -> dict[str, Any]:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": external_key_id, **extra}
    metadata: dict[str, Any] = call(stack.sdk(), "CreateKey", query)["KeyMetadata"]
    return metadata


@pytest.fixture(scope="module")
def key_id(kms_stack: KmsStack) -> str:
    return str(create_key(kms_stack, Description="module key")["KeyId"])


def encrypt(
    stack: KmsStack, key: str, plaintext: bytes, context: dict[str, str] | None = None
) -> Any:
    request = models.EncryptRequest(
        key_id=key, plaintext=b64(plaintext), encryption_context=context
    )
    return stack.sdk().encrypt_with_options(request, runtime()).body


def decrypt(stack: KmsStack, blob: str, context: dict[str, str] | None = None) -> Any:
    request = models.DecryptRequest(ciphertext_blob=blob, encryption_context=context)
    return stack.sdk().decrypt_with_options(request, runtime()).body


# --- CreateKey and reading keys -----------------------------------------------------


def test_create_key_metadata(kms_stack: KmsStack) -> None:
    metadata = create_key(
        kms_stack, Description="payments", Tags='[{"TagKey":"team","TagValue":"pay"}]'
    )
    assert metadata["KeyId"].startswith("key-")
    assert metadata["Arn"] == f"acs:kms:{REGION}:{ACCOUNT_ID}:key/{metadata['KeyId']}"
    assert metadata["KeyState"] == "Enabled"
    assert metadata["KeySpec"] == "Aliyun_AES_256"
    assert metadata["KeyUsage"] == "ENCRYPT/DECRYPT"
    assert metadata["DKMSInstanceId"] == kms_stack.instance_id
    assert metadata["ExternalKeyId"] == "app-1"
    assert metadata["Creator"] == ACCOUNT_ID
    assert metadata["Description"] == "payments"
    assert metadata["AutomaticRotation"] == "Disabled"
    with kms_stack.store.session(read_only=True) as session:
        assert session.keys.list_tags(metadata["KeyId"]) == [("team", "pay")]


def test_create_key_through_typed_client_with_extension(kms_stack: KmsStack) -> None:
    options = runtime()
    options.extends_parameters = ExtendsParameters(queries={"ExternalKeyId": "app-1"})
    request = models.CreateKeyRequest(dkmsinstance_id=kms_stack.instance_id, description="typed")
    body = kms_stack.sdk().create_key_with_options(request, options).body
    assert body.key_metadata.key_state == "Enabled"
    assert body.key_metadata.dkmsinstance_id == kms_stack.instance_id


def test_describe_key(kms_stack: KmsStack, key_id: str) -> None:
    response = kms_stack.sdk().describe_key_with_options(
        models.DescribeKeyRequest(key_id=key_id), runtime()
    )
    metadata = response.body.key_metadata
    assert metadata.key_id == key_id
    assert metadata.description == "module key"
    assert metadata.deletion_protection == "Disabled"
    # The typed model drops the extension fields, so they are read from the raw body.
    raw = call(kms_stack.sdk(), "DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert raw["ExternalKeyId"] == "app-1"
    assert raw["ExternalKeyState"] == "ENABLED"
    assert raw["KmsInstanceStatus"] == "Connected"


def test_describe_key_by_arn(kms_stack: KmsStack, key_id: str) -> None:
    arn = f"acs:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    response = kms_stack.sdk().describe_key_with_options(
        models.DescribeKeyRequest(key_id=arn), runtime()
    )
    assert response.body.key_metadata.key_id == key_id


def test_one_external_key_backs_several_keys(kms_stack: KmsStack) -> None:
    first = create_key(kms_stack)["KeyId"]
    second = create_key(kms_stack)["KeyId"]
    assert first != second


def test_list_keys_paging_and_filters(kms_stack: KmsStack, key_id: str) -> None:
    client = kms_stack.sdk()
    first = client.list_keys_with_options(models.ListKeysRequest(page_size=1), runtime()).body
    assert first.page_size == 1
    assert first.page_number == 1
    assert first.total_count >= 1
    assert len(first.keys.key) == 1
    everything = client.list_keys_with_options(
        models.ListKeysRequest(page_size=100), runtime()
    ).body
    ids = [key.key_id for key in everything.keys.key]
    assert key_id in ids
    assert everything.total_count == len(ids)

    filters = json.dumps([{"Key": "DKMSInstanceId", "Values": [kms_stack.instance_id]}])
    matched = client.list_keys_with_options(
        models.ListKeysRequest(page_size=100, filters=filters), runtime()
    ).body
    assert matched.total_count == len(ids)
    service_only = json.dumps([{"Key": "CreatorType", "Values": ["Service"]}])
    none = client.list_keys_with_options(
        models.ListKeysRequest(filters=service_only), runtime()
    ).body
    assert none.total_count == 0
    disabled = json.dumps([{"Key": "KeyState", "Values": ["Disabled"]}])
    assert key_id not in [
        key.key_id
        for key in client.list_keys_with_options(
            models.ListKeysRequest(filters=disabled, page_size=100), runtime()
        ).body.keys.key
    ]


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ("{}", "JSON array"),
        ('[{"Key":"Color","Values":["x"]}]', "not a filter key"),
        ('[{"Key":"KeyState","Values":["Sleeping"]}]', "invalid value"),
        ('[{"Key":"KeyState","Values":[]}]', "give 1 to 10"),
        ('[{"Key":"KeyState"}]', "is invalid"),
    ],
)
def test_list_keys_bad_filters(kms_stack: KmsStack, filters: str, fragment: str) -> None:
    error = client_error(
        lambda: kms_stack.sdk().list_keys_with_options(
            models.ListKeysRequest(filters=filters), runtime()
        )
    )
    assert error.code == "InvalidParameter"
    assert fragment in error.data["Message"]


def test_list_keys_bad_page_size(kms_stack: KmsStack) -> None:
    error = client_error(
        lambda: kms_stack.sdk().list_keys_with_options(
            models.ListKeysRequest(page_size=101), runtime()
        )
    )
    assert error.code == "InvalidParameter"
    assert "PageSize" in error.data["Message"]


def test_key_versions(kms_stack: KmsStack, key_id: str) -> None:
    client = kms_stack.sdk()
    versions = client.list_key_versions_with_options(
        models.ListKeyVersionsRequest(key_id=key_id), runtime()
    ).body
    assert versions.total_count == 1
    (version,) = versions.key_versions.key_version
    described = client.describe_key_version_with_options(
        models.DescribeKeyVersionRequest(key_id=key_id, key_version_id=version.key_version_id),
        runtime(),
    ).body.key_version
    assert described.key_version_id == version.key_version_id
    assert described.key_id == key_id
    error = client_error(
        lambda: client.describe_key_version_with_options(
            models.DescribeKeyVersionRequest(
                key_id=key_id, key_version_id="00000000-0000-4000-8000-000000000000"
            ),
            runtime(),
        )
    )
    assert error.code == "Forbidden.KeyVersionNotFound"
    assert error.status_code == 404


# --- CreateKey refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ({"ExternalKeyId": "app-1"}, "MissingParameter", "DKMSInstanceId"),
        ({"DKMSInstanceId": "INSTANCE"}, "MissingParameter", "ExternalKeyId"),
        (
            {"DKMSInstanceId": "kst-nope", "ExternalKeyId": "app-1"},
            "Forbidden.DKMSInstanceNotFound",
            "kst-nope",
        ),
        (
            {"DKMSInstanceId": "bad id", "ExternalKeyId": "app-1"},
            "InvalidParameter",
            "DKMSInstanceId",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "a/b"},
            "InvalidParameter",
            "ExternalKeyId",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "nope-1"},
            "InvalidParameter",
            "not found",
        ),
        ({"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "sign-1"}, "InvalidParameter", "DECRYPT"),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "off-1"},
            "Rejected.Unavailable",
            "DISABLED",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "KeySpec": "RSA_2048"},
            "UnsupportedOperation",
            "AES-256",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "KeySpec": "AES"},
            "InvalidParameter",
            "KeySpec",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "KeyUsage": "SIGN/VERIFY"},
            "UnsupportedOperation",
            "encrypt",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "Origin": "EXTERNAL"},
            "UnsupportedOperation",
            "import",
        ),
        (
            {
                "DKMSInstanceId": "INSTANCE",
                "ExternalKeyId": "app-1",
                "EnableAutomaticRotation": "true",
            },
            "UnsupportedOperation",
            "rotation",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "RotationInterval": "7d"},
            "UnsupportedOperation",
            "RotationInterval",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "Description": "x" * 8193},
            "InvalidParameter",
            "Description",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "Tags": "[{}]"},
            "InvalidParameter",
            "Tags",
        ),
        (
            {
                "DKMSInstanceId": "INSTANCE",
                "ExternalKeyId": "app-1",
                "Tags": '[{"TagKey":"acs:x","TagValue":"v"}]',
            },
            "InvalidParameter.TagKey",
            "acs:",
        ),
        (
            {"DKMSInstanceId": "INSTANCE", "ExternalKeyId": "app-1", "Policy": "[]"},
            "InvalidParameter",
            "Policy",
        ),
    ],
)
def test_create_key_refusals(
    kms_stack: KmsStack, query: dict[str, str], code: str, fragment: str
) -> None:
    filled = {
        name: kms_stack.instance_id if value == "INSTANCE" else value
        for name, value in query.items()
    }
    with kms_stack.store.session(read_only=True) as session:
        before = session.keys.list(ACCOUNT_ID, REGION).total_count
    error = client_error(lambda: call(kms_stack.sdk(), "CreateKey", filled))
    assert error.code == code, error.data
    assert fragment in error.data["Message"]
    with kms_stack.store.session(read_only=True) as session:
        assert session.keys.list(ACCOUNT_ID, REGION).total_count == before


def test_create_key_dry_run(kms_stack: KmsStack) -> None:
    with kms_stack.store.session(read_only=True) as session:
        before = session.keys.list(ACCOUNT_ID, REGION).total_count
    query = {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "app-1", "DryRun": "true"}
    error = client_error(lambda: call(kms_stack.sdk(), "CreateKey", query))
    assert error.code == "DryRunOperationError", error.data
    assert error.status_code == 412
    # The dry run asks the proxy: an unknown external key fails as a real CreateKey does.
    missing = client_error(
        lambda: call(kms_stack.sdk(), "CreateKey", {**query, "ExternalKeyId": "no-such-key"})
    )
    assert missing.code == "InvalidParameter"
    assert "not found by the XKI proxy" in missing.data["Message"]
    with kms_stack.store.session(read_only=True) as session:
        assert session.keys.list(ACCOUNT_ID, REGION).total_count == before


def test_create_key_in_other_accounts_instance(kms_stack: KmsStack) -> None:
    error = client_error(
        lambda: call(
            kms_stack.sdk(other_account=True),
            "CreateKey",
            {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "app-1"},
        )
    )
    assert error.code == "Forbidden.DKMSInstanceNotFound"
    assert error.status_code == 403


# --- Encrypt and Decrypt ------------------------------------------------------------


def test_encrypt_decrypt_round_trip(kms_stack: KmsStack, key_id: str, sensitive: Sensitive) -> None:
    plaintext = os.urandom(6144)
    sensitive(plaintext)
    context = {"purpose": "backup", "tenant": "t-1", "ünï": "çødé"}
    encrypted = encrypt(kms_stack, key_id, plaintext, context)
    assert encrypted.key_id == key_id
    assert encrypted.ciphertext_blob.startswith("hyok")
    decrypted = decrypt(kms_stack, encrypted.ciphertext_blob, dict(reversed(context.items())))
    assert base64.b64decode(decrypted.plaintext) == plaintext
    assert decrypted.key_id == key_id
    assert decrypted.key_version_id == encrypted.key_version_id


def test_encrypt_legacy_v1_signature(
    kms_stack: KmsStack, key_id: str, sensitive: Sensitive
) -> None:
    plaintext = os.urandom(32)
    sensitive(plaintext)
    client = kms_stack.sdk(signature_algorithm="v2")
    blob = client.encrypt_with_options(
        models.EncryptRequest(key_id=key_id, plaintext=b64(plaintext)), runtime()
    ).body.ciphertext_blob
    body = client.decrypt_with_options(models.DecryptRequest(ciphertext_blob=blob), runtime()).body
    assert base64.b64decode(body.plaintext) == plaintext


def test_plaintext_too_large(kms_stack: KmsStack, key_id: str, sensitive: Sensitive) -> None:
    plaintext = os.urandom(6145)
    sensitive(plaintext)
    error = client_error(lambda: encrypt(kms_stack, key_id, plaintext))
    assert error.code == "InvalidParameter"
    assert "Plaintext" in error.data["Message"]


def test_plaintext_not_base64(kms_stack: KmsStack, key_id: str) -> None:
    error = client_error(
        lambda: kms_stack.sdk().encrypt_with_options(
            models.EncryptRequest(key_id=key_id, plaintext="not base64!"), runtime()
        )
    )
    assert error.code == "InvalidParameter"
    assert "Base64" in error.data["Message"]


@pytest.mark.parametrize(
    "context",
    ['{"a":1}', "[]", '{"a":"b","a":"c"}', "{", '{"a":{"b":"c"}}'],
)
def test_bad_encryption_context(kms_stack: KmsStack, key_id: str, context: str) -> None:
    error = client_error(
        lambda: call(
            kms_stack.sdk(),
            "Encrypt",
            {"KeyId": key_id, "Plaintext": b64(b"hello"), "EncryptionContext": context},
        )
    )
    assert error.code == "InvalidParameter"
    assert "EncryptionContext" in error.data["Message"]


def test_decrypt_mismatches_are_opaque(
    kms_stack: KmsStack, key_id: str, sensitive: Sensitive
) -> None:
    plaintext = os.urandom(48)
    sensitive(plaintext)
    blob = encrypt(kms_stack, key_id, plaintext, {"a": "b"}).ciphertext_blob
    other_key = create_key(kms_stack)["KeyId"]
    parsed = decode_blob_base64(blob)
    import dataclasses

    moved = encode_blob_base64(dataclasses.replace(parsed, key_id=other_key))
    flipped = bytearray(parsed.ciphertext)
    flipped[0] ^= 1
    tampered = encode_blob_base64(dataclasses.replace(parsed, ciphertext=bytes(flipped)))
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 0xFF
    cases: list[tuple[str, dict[str, str] | None]] = [
        (blob, {"a": "c"}),
        (blob, None),
        (moved, {"a": "b"}),
        (tampered, {"a": "b"}),
        (b64(bytes(raw)), {"a": "b"}),
        (blob[:-8], {"a": "b"}),
        ("AAAA", {"a": "b"}),
    ]
    messages = set()
    for candidate, context in cases:
        error = client_error(lambda: decrypt(kms_stack, candidate, context))  # noqa: B023
        assert error.code == "InvalidParameter", error.data
        assert error.data["Message"].startswith(OPAQUE_MESSAGE_START)
        messages.add(error.data["Message"])
    assert len(messages) == 1


def test_decrypt_is_bound_to_the_account(kms_stack: KmsStack, key_id: str) -> None:
    """Another account may not decrypt: the default key policy names only the owner."""
    blob = encrypt(kms_stack, key_id, b"account bound").ciphertext_blob
    client = kms_stack.sdk(other_account=True)
    error = client_error(
        lambda: client.decrypt_with_options(models.DecryptRequest(ciphertext_blob=blob), runtime())
    )
    assert error.code == "Forbidden.NoPermission"
    assert error.status_code == 403
    assert "key policy" in error.data["Message"]


def test_dry_run(kms_stack: KmsStack, key_id: str) -> None:
    error = client_error(
        lambda: call(
            kms_stack.sdk(),
            "Encrypt",
            {"KeyId": key_id, "Plaintext": b64(b"dry"), "DryRun": "true"},
        )
    )
    assert error.code == "DryRunOperationError"
    assert error.status_code == 412


# --- Data keys and ReEncrypt --------------------------------------------------------


def test_generate_data_key(kms_stack: KmsStack, key_id: str) -> None:
    client = kms_stack.sdk()
    body = client.generate_data_key_with_options(
        models.GenerateDataKeyRequest(key_id=key_id, encryption_context={"f": "1"}), runtime()
    ).body
    data_key = base64.b64decode(body.plaintext)
    assert len(data_key) == 32
    assert (
        base64.b64decode(decrypt(kms_stack, body.ciphertext_blob, {"f": "1"}).plaintext) == data_key
    )

    short = client.generate_data_key_with_options(
        models.GenerateDataKeyRequest(key_id=key_id, key_spec="AES_128"), runtime()
    ).body
    assert len(base64.b64decode(short.plaintext)) == 16
    sized = client.generate_data_key_with_options(
        models.GenerateDataKeyRequest(key_id=key_id, number_of_bytes=1024), runtime()
    ).body
    assert len(base64.b64decode(sized.plaintext)) == 1024


@pytest.mark.parametrize("number", [0, 1025])
def test_generate_data_key_bad_size(kms_stack: KmsStack, key_id: str, number: int) -> None:
    error = client_error(
        lambda: kms_stack.sdk().generate_data_key_with_options(
            models.GenerateDataKeyRequest(key_id=key_id, number_of_bytes=number), runtime()
        )
    )
    assert error.code == "InvalidParameter"
    assert "NumberOfBytes" in error.data["Message"]


def test_generate_data_key_without_plaintext(kms_stack: KmsStack, key_id: str) -> None:
    body = (
        kms_stack.sdk()
        .generate_data_key_without_plaintext_with_options(
            models.GenerateDataKeyWithoutPlaintextRequest(key_id=key_id), runtime()
        )
        .body
    )
    assert "Plaintext" not in body.to_map()
    assert len(base64.b64decode(decrypt(kms_stack, body.ciphertext_blob).plaintext)) == 32


def rsa_key() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b64(der)


def unwrap(private: rsa.RSAPrivateKey, exported: str, digest: hashes.HashAlgorithm) -> bytes:
    return private.decrypt(
        base64.b64decode(exported),
        padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None),
    )


def test_generate_and_export_data_key(kms_stack: KmsStack, key_id: str) -> None:
    private, public_blob = rsa_key()
    client = kms_stack.sdk()
    body = client.generate_and_export_data_key_with_options(
        models.GenerateAndExportDataKeyRequest(
            key_id=key_id,
            public_key_blob=public_blob,
            wrapping_key_spec="RSA_2048",
            wrapping_algorithm="RSAES_OAEP_SHA_256",
        ),
        runtime(),
    ).body
    data_key = unwrap(private, body.exported_data_key, hashes.SHA256())
    assert base64.b64decode(decrypt(kms_stack, body.ciphertext_blob).plaintext) == data_key

    exported = client.export_data_key_with_options(
        models.ExportDataKeyRequest(
            ciphertext_blob=body.ciphertext_blob,
            public_key_blob=public_blob,
            wrapping_key_spec="RSA_2048",
            wrapping_algorithm="RSAES_OAEP_SHA_1",
        ),
        runtime(),
    ).body
    assert unwrap(private, exported.exported_data_key, hashes.SHA1()) == data_key
    assert exported.key_id == key_id


@pytest.mark.parametrize(
    ("spec", "algorithm", "public_key", "code"),
    [
        ("EC_SM2", "SM2PKE", None, "UnsupportedOperation"),
        ("RSA_2048", "RSAES_PKCS1", None, "InvalidParameter"),
        ("RSA_2048", "RSAES_OAEP_SHA_256", "bm90IGEga2V5", "InvalidParameter"),
    ],
)
def test_export_refusals(
    kms_stack: KmsStack, key_id: str, spec: str, algorithm: str, public_key: str | None, code: str
) -> None:
    blob = public_key or rsa_key()[1]
    error = client_error(
        lambda: kms_stack.sdk().generate_and_export_data_key_with_options(
            models.GenerateAndExportDataKeyRequest(
                key_id=key_id,
                public_key_blob=blob,
                wrapping_key_spec=spec,
                wrapping_algorithm=algorithm,
            ),
            runtime(),
        )
    )
    assert error.code == code


def test_re_encrypt(kms_stack: KmsStack, key_id: str, sensitive: Sensitive) -> None:
    plaintext = os.urandom(100)
    sensitive(plaintext)
    destination = create_key(kms_stack)["KeyId"]
    blob = encrypt(kms_stack, key_id, plaintext, {"from": "a"}).ciphertext_blob
    body = (
        kms_stack.sdk()
        .re_encrypt_with_options(
            models.ReEncryptRequest(
                ciphertext_blob=blob,
                destination_key_id=destination,
                source_encryption_context={"from": "a"},
                destination_encryption_context={"to": "b"},
            ),
            runtime(),
        )
        .body
    )
    assert body.key_id == destination
    assert (
        base64.b64decode(decrypt(kms_stack, body.ciphertext_blob, {"to": "b"}).plaintext)
        == plaintext
    )


# --- The three conditions -----------------------------------------------------------


def test_condition_key_disabled(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    client = kms_stack.sdk()
    blob = encrypt(kms_stack, key, b"before").ciphertext_blob
    client.disable_key_with_options(models.DisableKeyRequest(key_id=key), runtime())
    assert call(client, "DescribeKey", {"KeyId": key})["KeyMetadata"]["KeyState"] == "Disabled"
    for attempt in (lambda: encrypt(kms_stack, key, b"x"), lambda: decrypt(kms_stack, blob)):
        error = client_error(attempt)
        assert error.code == "Rejected.Disabled"
        assert error.status_code == 409
        assert "Disabled" in error.data["Message"]
        assert "EnableKey" in error.data["Message"]
    client.enable_key_with_options(models.EnableKeyRequest(key_id=key), runtime())
    assert decrypt(kms_stack, blob).key_id == key


def test_disabled_key_set_elsewhere(kms_stack: KmsStack) -> None:
    key = create_key(kms_stack)["KeyId"]
    kms_stack.set_key_state(key, KeyState.DISABLED)
    error = client_error(lambda: encrypt(kms_stack, key, b"x"))
    assert error.code == "Rejected.Disabled"


def test_enable_pending_deletion_key(kms_stack: KmsStack) -> None:
    from datetime import UTC, datetime, timedelta

    key = create_key(kms_stack)["KeyId"]
    with kms_stack.store.session() as session:
        session.keys.update_state(
            key, KeyState.PENDING_DELETION, delete_date=datetime.now(UTC) + timedelta(days=7)
        )
    kms_stack.services.keys.forget_key(key)
    client = kms_stack.sdk()
    for attempt in (
        lambda: client.enable_key_with_options(models.EnableKeyRequest(key_id=key), runtime()),
        lambda: client.disable_key_with_options(models.DisableKeyRequest(key_id=key), runtime()),
    ):
        error = client_error(attempt)
        assert error.code == "Rejected.StateModifiedFailed"
        assert "CancelKeyDeletion" in error.data["Message"]
    error = client_error(lambda: encrypt(kms_stack, key, b"x"))
    assert error.code == "Rejected.PendingDeletion"


def test_condition_instance_not_connected(kms_stack: KmsStack, key_id: str) -> None:
    blob = encrypt(kms_stack, key_id, b"before").ciphertext_blob
    kms_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    try:
        for attempt in (
            lambda: encrypt(kms_stack, key_id, b"x"),
            lambda: decrypt(kms_stack, blob),
        ):
            error = client_error(attempt)
            assert error.code == "Forbidden.DKMSInstanceStateInvalid"
            assert error.status_code == 403
            assert "Disconnected" in error.data["Message"]
            assert "ConnectKmsInstance" in error.data["Message"]
    finally:
        kms_stack.set_instance_status(InstanceStatus.CONNECTED)


def test_condition_external_key_disabled(kms_stack: KmsStack) -> None:
    kms_stack.data.create_keys(["toggle-1"])
    key = create_key(kms_stack, "toggle-1")["KeyId"]
    blob = encrypt(kms_stack, key, b"while enabled").ciphertext_blob
    kms_stack.disable_external_key("toggle-1")
    try:
        for attempt in (
            lambda: encrypt(kms_stack, key, b"x"),
            lambda: decrypt(kms_stack, blob),
        ):
            error = client_error(attempt)
            assert error.code == "Rejected.Unavailable"
            assert error.status_code == 409
            assert "not ENABLED" in error.data["Message"]
        described = call(kms_stack.sdk(), "DescribeKey", {"KeyId": key})["KeyMetadata"]
        assert described["ExternalKeyState"] == "DISABLED"
    finally:
        kms_stack.enable_external_key("toggle-1")
    assert decrypt(kms_stack, blob).key_id == key


# --- Keys of other accounts, regions and unsupported actions ------------------------


def test_other_account_cannot_see_key(kms_stack: KmsStack, key_id: str) -> None:
    client = kms_stack.sdk(other_account=True)
    error = client_error(
        lambda: client.describe_key_with_options(
            models.DescribeKeyRequest(key_id=key_id), runtime()
        )
    )
    assert error.code == "Forbidden.KeyNotFound"
    arn = f"acs:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    error = client_error(
        lambda: client.describe_key_with_options(models.DescribeKeyRequest(key_id=arn), runtime())
    )
    assert error.code == "Forbidden.NoPermission"


def test_cross_region_arn_refused(kms_stack: KmsStack, key_id: str) -> None:
    arn = f"acs:kms:cn-shanghai:{ACCOUNT_ID}:key/{key_id}"
    error = client_error(lambda: encrypt(kms_stack, arn, b"x"))
    assert error.code == "UnsupportedOperation"
    assert "Cross-region" in error.data["Message"]


def test_alias_not_found(kms_stack: KmsStack) -> None:
    error = client_error(lambda: encrypt(kms_stack, "alias/none", b"x"))
    assert error.code == "Forbidden.AliasNotFound"
    assert error.status_code == 404


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ("CreateKeyVersion", "new key versions"),
        ("UpdateRotationPolicy", "rotation"),
        ("GetParametersForImport", "import"),
        ("ImportKeyMaterial", "import"),
        ("DeleteKeyMaterial", "key material"),
        ("AsymmetricSign", "symmetric"),
        ("GetPublicKey", "public key"),
    ],
)
def test_unsupported_for_external_keys(
    kms_stack: KmsStack, key_id: str, action: str, fragment: str
) -> None:
    error = client_error(lambda: call(kms_stack.sdk(), action, {"KeyId": key_id}))
    assert error.code == "UnsupportedOperation"
    assert "not supported" in error.data["Message"]
    assert fragment in error.data["Message"]
