"""KMIP 1.4 request payloads and TTLV messages, built with PyKMIP's message classes.

PyKMIP's clients leave out the KMIP 1.4 Encrypt and Decrypt fields
Authenticated Encryption Additional Data and Authenticated Encryption Tag,
and do not return the tag, so this module builds the payloads itself and
:mod:`._connection` sends them. Every message is one batch item of protocol
version 1.4, so the server must accept that version.

NOTE: tested only against PyKMIP; a 2.x server that refuses 1.4 messages is
not supported.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from hyok.kmi.kmip._pykmip import (
    AttributeFactory,
    ObjectFactory,
    attributes,
    contents,
    enums,
    messages,
    objects,
    payloads,
    pie_objects,
    primitives,
    utils,
)

__all__ = [
    "HEADER_BYTES",
    "MAX_MESSAGE_BYTES",
    "KmipResultError",
    "ObjectAttributes",
    "activate",
    "create_aes_key",
    "decode_response",
    "decrypt",
    "destroy",
    "encode_request",
    "encrypt",
    "get_attributes",
    "locate",
    "located_uids",
    "message_length",
    "parse_attributes",
    "query_server",
    "register_secret",
    "revoke",
    "secret_data_type",
    "server_information",
    "symmetric_key_type",
    "usage_bit",
    "usage_mask_items",
]

#: The TTLV header of a message: a 3-byte tag, a type byte and a 4-byte length.
HEADER_BYTES: Final = 8
#: Bound of a response; PyKMIP's server sends at most 1 MiB.
MAX_MESSAGE_BYTES: Final = 1_048_576
_VERSION: Final = enums.KMIPVersion.KMIP_1_4
_ATTRIBUTES: Final = AttributeFactory()
_ATTRIBUTE_NAMES: Final = (
    "State",
    "Cryptographic Algorithm",
    "Cryptographic Length",
    "Cryptographic Usage Mask",
    "Initial Date",
    "Name",
)


class KmipResultError(Exception):
    """The server responded to an operation with a failure result."""

    def __init__(self, operation: str, reason: str, message: str) -> None:
        super().__init__(f"{operation} failed: {reason}")
        self.operation = operation
        #: The Result Reason, such as "ITEM_NOT_FOUND", or "UNKNOWN".
        self.reason = reason
        #: The server's Result Message, for logs only: servers may put anything in it.
        self.server_message = message[:300]


@dataclass(frozen=True, slots=True)
class ObjectAttributes:
    """The attributes of a managed object that the backend reads."""

    state: str
    algorithm: str | None
    length: int | None
    usage_mask: int
    initial_date: datetime | None
    names: tuple[str, ...] = ()


# Payloads. Each function returns the operation and its request payload.


def create_aes_key(name: str, usage_mask: Iterable[Any]) -> tuple[Any, Any]:
    template = objects.TemplateAttribute(
        attributes=[
            _ATTRIBUTES.create_attribute(
                enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES
            ),
            _ATTRIBUTES.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
            _ATTRIBUTES.create_attribute(
                enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK, list(usage_mask)
            ),
            _ATTRIBUTES.create_attribute(enums.AttributeType.NAME, name),
        ]
    )
    payload = payloads.CreateRequestPayload(
        object_type=enums.ObjectType.SYMMETRIC_KEY, template_attribute=template
    )
    return enums.Operation.CREATE, payload


def register_secret(name: str, value: bytes) -> tuple[Any, Any]:
    """Register a Secret Data object (type Password) named ``name``."""
    secret = ObjectFactory().convert(pie_objects.SecretData(value, enums.SecretDataType.PASSWORD))
    template = objects.TemplateAttribute(
        attributes=[
            _ATTRIBUTES.create_attribute(enums.AttributeType.NAME, name),
            _ATTRIBUTES.create_attribute(
                enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                [enums.CryptographicUsageMask.VERIFY],
            ),
        ]
    )
    payload = payloads.RegisterRequestPayload(
        object_type=enums.ObjectType.SECRET_DATA,
        template_attribute=template,
        managed_object=secret,
    )
    return enums.Operation.REGISTER, payload


def locate(name: str | None, object_type: Any, maximum_items: int) -> tuple[Any, Any]:
    found = [_ATTRIBUTES.create_attribute(enums.AttributeType.OBJECT_TYPE, object_type)]
    if name is not None:
        found.append(_ATTRIBUTES.create_attribute(enums.AttributeType.NAME, name))
    payload = payloads.LocateRequestPayload(maximum_items=maximum_items, attributes=found)
    return enums.Operation.LOCATE, payload


def get_attributes(uid: str, names: Iterable[str] = _ATTRIBUTE_NAMES) -> tuple[Any, Any]:
    payload = payloads.GetAttributesRequestPayload(
        unique_identifier=uid, attribute_names=list(names)
    )
    return enums.Operation.GET_ATTRIBUTES, payload


def activate(uid: str) -> tuple[Any, Any]:
    payload = payloads.ActivateRequestPayload(unique_identifier=attributes.UniqueIdentifier(uid))
    return enums.Operation.ACTIVATE, payload


def revoke(uid: str) -> tuple[Any, Any]:
    reason = objects.RevocationReason(code=enums.RevocationReasonCode.CESSATION_OF_OPERATION)
    payload = payloads.RevokeRequestPayload(
        unique_identifier=attributes.UniqueIdentifier(uid), revocation_reason=reason
    )
    return enums.Operation.REVOKE, payload


def destroy(uid: str) -> tuple[Any, Any]:
    payload = payloads.DestroyRequestPayload(unique_identifier=attributes.UniqueIdentifier(uid))
    return enums.Operation.DESTROY, payload


def _gcm_parameters() -> Any:
    return attributes.CryptographicParameters(
        block_cipher_mode=enums.BlockCipherMode.GCM,
        cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
        tag_length=16,
    )


def encrypt(uid: str, plaintext: bytes, iv: bytes, aad: bytes) -> tuple[Any, Any]:
    payload = payloads.EncryptRequestPayload(
        unique_identifier=uid,
        cryptographic_parameters=_gcm_parameters(),
        data=plaintext,
        iv_counter_nonce=iv,
        auth_additional_data=aad,
    )
    return enums.Operation.ENCRYPT, payload


def decrypt(uid: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> tuple[Any, Any]:
    payload = payloads.DecryptRequestPayload(
        unique_identifier=uid,
        cryptographic_parameters=_gcm_parameters(),
        data=ciphertext,
        iv_counter_nonce=iv,
        auth_additional_data=aad,
        auth_tag=tag,
    )
    return enums.Operation.DECRYPT, payload


# Messages.


def encode_request(operation: Any, payload: Any) -> bytes:
    """Encode a request message with one batch item and no credential (TLS authenticates)."""
    item = messages.RequestBatchItem(
        operation=primitives.Enumeration(enums.Operation, operation, tag=enums.Tags.OPERATION),
        request_payload=payload,
    )
    header = messages.RequestHeader(
        protocol_version=contents.ProtocolVersion(1, 4),
        batch_count=contents.BatchCount(1),
    )
    stream = utils.BytearrayStream()
    messages.RequestMessage(request_header=header, batch_items=[item]).write(stream, _VERSION)
    return bytes(stream.buffer)


def message_length(header: bytes) -> int:
    """Return the length of the message body that follows an 8-byte TTLV header."""
    (length,) = struct.unpack("!I", header[4:8])
    return int(length)


def decode_response(operation: Any, data: bytes) -> Any:
    """Decode a response message; return its payload or raise KmipResultError.

    Raises ValueError when the message cannot be decoded or does not respond to
    ``operation`` with exactly one batch item.
    """
    response = messages.ResponseMessage()
    try:
        response.read(utils.BytearrayStream(data), _VERSION)
    except Exception as exc:  # PyKMIP raises many unrelated types for bad TTLV
        raise ValueError(f"undecodable KMIP response ({type(exc).__name__})") from None
    if len(response.batch_items) != 1:
        raise ValueError(f"KMIP response has {len(response.batch_items)} batch items, not 1")
    item = response.batch_items[0]
    name = getattr(operation, "name", str(operation))
    if item.result_status.value != enums.ResultStatus.SUCCESS:
        reason = item.result_reason.value.name if item.result_reason is not None else "UNKNOWN"
        message = item.result_message.value if item.result_message is not None else ""
        raise KmipResultError(name, reason, message)
    if item.operation is not None and item.operation.value != operation:
        raise ValueError(f"KMIP response is for {item.operation.value.name}, not {name}")
    return item.response_payload


def parse_attributes(payload: Any) -> ObjectAttributes:
    """Read the attributes that a Get Attributes response for ``_ATTRIBUTE_NAMES`` returns."""
    values: dict[str, Any] = {}
    names: list[str] = []
    for attribute in payload.attributes or []:
        name = attribute.attribute_name.value
        if name == "Name":
            names.append(str(attribute.attribute_value.name_value.value))
        else:
            values[name] = attribute.attribute_value
    state = values.get("State")
    algorithm = values.get("Cryptographic Algorithm")
    length = values.get("Cryptographic Length")
    mask = values.get("Cryptographic Usage Mask")
    initial = values.get("Initial Date")
    return ObjectAttributes(
        state=state.value.name if state is not None else "UNKNOWN",
        algorithm=algorithm.value.name if algorithm is not None else None,
        length=int(length.value) if length is not None else None,
        usage_mask=int(mask.value) if mask is not None else 0,
        initial_date=datetime.fromtimestamp(initial.value, UTC) if initial is not None else None,
        names=tuple(names),
    )


def located_uids(payload: Any) -> list[str]:
    return [str(uid) for uid in payload.unique_identifiers or []]


def usage_bit(name: str) -> int:
    """Return the Cryptographic Usage Mask bit of ``ENCRYPT`` or ``DECRYPT``."""
    return int(enums.CryptographicUsageMask[name].value)


def usage_mask_items(names: Iterable[str]) -> list[Any]:
    return [enums.CryptographicUsageMask[name] for name in names]


def symmetric_key_type() -> Any:
    return enums.ObjectType.SYMMETRIC_KEY


def secret_data_type() -> Any:
    return enums.ObjectType.SECRET_DATA


def query_server() -> tuple[Any, Any]:
    """Ask for the supported operations and the server information."""
    functions = [
        enums.QueryFunction.QUERY_OPERATIONS,
        enums.QueryFunction.QUERY_SERVER_INFORMATION,
    ]
    return enums.Operation.QUERY, payloads.QueryRequestPayload(query_functions=functions)


def server_information(payload: Any) -> tuple[frozenset[str], str]:
    """Return the operation names and the vendor identification of a Query response."""
    operations = frozenset(item.name for item in payload.operations or [])
    vendor = str(payload.vendor_identification or "").strip()
    return operations, vendor
