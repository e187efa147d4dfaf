"""Cryptographic actions: Encrypt, Decrypt, the data key actions and ReEncrypt.

The KMS never has external key material. Encrypt sends the plaintext to
the instance's XKI proxy, and the data key actions make a data key from the
OS CSPRNG and have the proxy encrypt it. The AAD sent to the proxy binds the
KMS key ARN, the key version and the EncryptionContext
(:func:`hyok.kms.ciphertext.proxy_aad`), and the returned fields go into a
versioned ciphertext blob (docs/ciphertext-format.md).

Each action checks its parameters first, then the key and the three
conditions (see ``_lookup``). A ``DryRun`` request stops after these checks
with ``DryRunOperationError``. Plaintext and data keys appear in no log line,
message or repr.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hyok.kms.api.actions._lookup import (
    MAX_KEY_REFERENCE_LENGTH,
    KeyContext,
    call_proxy,
    find_key,
    find_key_by_reference,
    proxy_client,
    request_metadata,
    require_crypto_ready,
)
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    DryRunOperationError,
    InvalidParameterError,
    UnsupportedOperationError,
)
from hyok.kms.api.params import Params
from hyok.kms.ciphertext import (
    MAX_BLOB_BASE64_LENGTH,
    MAX_ENCRYPTION_CONTEXT_LENGTH,
    CiphertextBlob,
    InvalidCiphertextBlobError,
    InvalidEncryptionContextError,
    decode_blob_base64,
    encode_blob_base64,
    parse_encryption_context,
    proxy_aad,
)

__all__ = ["MAX_PLAINTEXT_BYTES", "crypto_handlers"]

MAX_PLAINTEXT_BYTES: Final = 6_144
MAX_DATA_KEY_BYTES: Final = 1_024
_MAX_PUBLIC_KEY_BYTES: Final = 4_096
_KEY_SPEC_BYTES: Final = {"AES_256": 32, "AES_128": 16}
_WRAPPING_HASHES: Final = {"RSAES_OAEP_SHA_256": hashes.SHA256, "RSAES_OAEP_SHA_1": hashes.SHA1}
_RSA_2048_BITS: Final = 2048


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _context(params: Params, name: str = "EncryptionContext") -> dict[str, str]:
    text = params.optional_str(name, max_length=MAX_ENCRYPTION_CONTEXT_LENGTH)
    try:
        return parse_encryption_context(text)
    except InvalidEncryptionContextError as exc:
        message = exc.message.replace("EncryptionContext", name)
        raise InvalidParameterError(message, parameter=name) from None


def _dry_run(params: Params, action: str) -> None:
    if params.boolean("DryRun", default=False):
        raise DryRunOperationError(
            f"The {action} request passed every check and would have succeeded; nothing was "
            "done because DryRun is true."
        )


def _reject_recipient(params: Params) -> None:
    if "Recipient" in params:
        raise UnsupportedOperationError(
            "The parameter Recipient (enclave attestation) is not supported by this KMS. "
            "Leave it out."
        )


def _number_of_bytes(params: Params) -> int:
    spec = params.enum("KeySpec", tuple(_KEY_SPEC_BYTES), default="AES_256")
    return params.int_in_range(
        "NumberOfBytes", 1, MAX_DATA_KEY_BYTES, default=_KEY_SPEC_BYTES[spec]
    )


async def _encrypt(
    services: Services,
    ctx: CallContext,
    found: KeyContext,
    plaintext: bytes,
    context: dict[str, str],
    operation: str,
) -> str:
    key = found.key
    aad = proxy_aad(key.arn, key.primary_key_version_id, context)
    client = proxy_client(services, found.instance)
    output = await call_proxy(
        client.encrypt(key.external_key_id, plaintext, aad, request_metadata(ctx, operation, key)),
        found,
    )
    services.usage.record(key.key_id, ctx.principal_arn, ctx.via_service, services.clock())
    blob = CiphertextBlob(
        key_id=key.key_id,
        key_version_id=key.primary_key_version_id,
        iv=output.iv,
        tag=output.tag,
        ciphertext=output.ciphertext,
        ciphertext_metadata=output.ciphertext_metadata,
    )
    return encode_blob_base64(blob)


def _blob(params: Params, name: str = "CiphertextBlob") -> CiphertextBlob:
    text = params.required_str(name, max_length=MAX_BLOB_BASE64_LENGTH + 64)
    return decode_blob_base64(text)


async def _decrypt(
    services: Services,
    ctx: CallContext,
    params: Params,
    blob: CiphertextBlob,
    context: dict[str, str],
    operation: str,
) -> tuple[KeyContext, bytes]:
    """Decrypt ``blob`` through its key's proxy, after the checks and the DryRun check."""
    found = await find_key_by_reference(
        services,
        ctx,
        blob.key_id,
        "CiphertextBlob",
        permission="kms:ReEncryptFrom" if operation == "ReEncrypt" else None,
        from_ciphertext=True,
    )
    key = found.key
    if blob.key_version_id != key.primary_key_version_id:
        raise InvalidCiphertextBlobError(
            f"blob key version {blob.key_version_id!r} is not a version of key {key.key_id}"
        )
    require_crypto_ready(found)
    _dry_run(params, operation)
    aad = proxy_aad(key.arn, key.primary_key_version_id, context)
    client = proxy_client(services, found.instance)
    plaintext = await call_proxy(
        client.decrypt(
            key.external_key_id,
            blob.ciphertext,
            blob.iv,
            blob.tag,
            blob.ciphertext_metadata,
            aad,
            request_metadata(ctx, operation, key),
        ),
        found,
    )
    services.usage.record(key.key_id, ctx.principal_arn, ctx.via_service, services.clock())
    return found, plaintext


def _result(found: KeyContext, **fields: Any) -> dict[str, Any]:
    return {"KeyId": found.key.key_id, "KeyVersionId": found.key.primary_key_version_id, **fields}


# --- Actions ----------------------------------------------------------------------


async def encrypt(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    plaintext = params.base64("Plaintext", max_bytes=MAX_PLAINTEXT_BYTES)
    context = _context(params)
    found = await find_key(services, ctx, params)
    require_crypto_ready(found)
    _dry_run(params, "Encrypt")
    blob = await _encrypt(services, ctx, found, plaintext, context, "Encrypt")
    return _result(found, CiphertextBlob=blob)


async def decrypt(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _reject_recipient(params)
    blob = _blob(params)
    context = _context(params)
    found, plaintext = await _decrypt(services, ctx, params, blob, context, "Decrypt")
    return _result(found, Plaintext=_b64(plaintext))


async def _generate(
    services: Services, ctx: CallContext, params: Params, action: str
) -> tuple[KeyContext, bytes, str]:
    size = _number_of_bytes(params)
    context = _context(params)
    found = await find_key(services, ctx, params)
    require_crypto_ready(found)
    _dry_run(params, action)
    data_key = secrets.token_bytes(size)
    blob = await _encrypt(services, ctx, found, data_key, context, action)
    return found, data_key, blob


async def generate_data_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _reject_recipient(params)
    found, data_key, blob = await _generate(services, ctx, params, "GenerateDataKey")
    return _result(found, CiphertextBlob=blob, Plaintext=_b64(data_key))


async def generate_data_key_without_plaintext(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    found, _data_key, blob = await _generate(
        services, ctx, params, "GenerateDataKeyWithoutPlaintext"
    )
    return _result(found, CiphertextBlob=blob)


def _wrapping_key(params: Params) -> tuple[rsa.RSAPublicKey, type[hashes.HashAlgorithm]]:
    """Parse PublicKeyBlob, WrappingKeySpec and WrappingAlgorithm into an RSA key and hash."""
    spec = params.enum("WrappingKeySpec", ("RSA_2048", "EC_SM2"))
    algorithm = params.enum(
        "WrappingAlgorithm", ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "SM2PKE")
    )
    if spec == "EC_SM2" or algorithm == "SM2PKE":
        raise UnsupportedOperationError(
            "SM2 wrapping (EC_SM2, SM2PKE) is not supported by this KMS. Use WrappingKeySpec "
            "RSA_2048 with WrappingAlgorithm RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1."
        )
    der = params.base64("PublicKeyBlob", max_bytes=_MAX_PUBLIC_KEY_BYTES)
    try:
        public_key = serialization.load_der_public_key(der)
    except ValueError:
        raise InvalidParameterError(
            "The parameter PublicKeyBlob is not a DER-encoded public key. Pass the Base64 of "
            "an RSA public key in SubjectPublicKeyInfo (X.509) DER form.",
            parameter="PublicKeyBlob",
        ) from None
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size != _RSA_2048_BITS:
        raise InvalidParameterError(
            "The parameter PublicKeyBlob does not hold a 2048-bit RSA public key, which "
            "WrappingKeySpec RSA_2048 needs. Pass a 2048-bit RSA public key.",
            parameter="PublicKeyBlob",
        )
    return public_key, _WRAPPING_HASHES[algorithm]


def _wrap(data_key: bytes, public_key: rsa.RSAPublicKey, digest: type[hashes.HashAlgorithm]) -> str:
    algorithm = digest()
    # OAEP fits at most key bytes - 2 * hash bytes - 2 bytes of message.
    room = public_key.key_size // 8 - 2 * algorithm.digest_size - 2
    if len(data_key) > room:
        raise InvalidParameterError(
            f"The data key has {len(data_key)} bytes, and RSA-2048 with "
            f"{algorithm.name.upper()} OAEP wraps at most {room}. Use a shorter data key."
        )
    wrapped = public_key.encrypt(
        data_key, padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)
    )
    return _b64(wrapped)


async def generate_and_export_data_key(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    public_key, digest = _wrapping_key(params)
    found, data_key, blob = await _generate(services, ctx, params, "GenerateAndExportDataKey")
    return _result(found, CiphertextBlob=blob, ExportedDataKey=_wrap(data_key, public_key, digest))


async def export_data_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    public_key, digest = _wrapping_key(params)
    blob = _blob(params)
    context = _context(params)
    found, data_key = await _decrypt(services, ctx, params, blob, context, "ExportDataKey")
    return _result(found, ExportedDataKey=_wrap(data_key, public_key, digest))


async def re_encrypt(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    for name in ("SourceKeyId", "SourceKeyVersionId", "SourceEncryptionAlgorithm"):
        if name in params:
            raise UnsupportedOperationError(
                f"The parameter {name} is for ciphertext made with an asymmetric key, which "
                "external keys are not. Leave it out: the CiphertextBlob names its key."
            )
    blob = _blob(params)
    source_context = _context(params, "SourceEncryptionContext")
    destination_context = _context(params, "DestinationEncryptionContext")
    destination_reference = params.required_str(
        "DestinationKeyId", max_length=MAX_KEY_REFERENCE_LENGTH
    )
    destination = await find_key_by_reference(
        services, ctx, destination_reference, "DestinationKeyId", permission="kms:ReEncryptTo"
    )
    require_crypto_ready(destination)
    _source, plaintext = await _decrypt(services, ctx, params, blob, source_context, "ReEncrypt")
    new_blob = await _encrypt(
        services, ctx, destination, plaintext, destination_context, "ReEncrypt"
    )
    return _result(destination, CiphertextBlob=new_blob)


def crypto_handlers(services: Services) -> dict[str, Handler]:
    """Return the cryptographic actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "Encrypt": encrypt,
            "Decrypt": decrypt,
            "GenerateDataKey": generate_data_key,
            "GenerateDataKeyWithoutPlaintext": generate_data_key_without_plaintext,
            "GenerateAndExportDataKey": generate_and_export_data_key,
            "ExportDataKey": export_data_key,
            "ReEncrypt": re_encrypt,
        },
    )
