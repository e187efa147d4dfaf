"""Finding the key a request names, checking the conditions of cryptography, calling the proxy.

A ``KeyId`` parameter is a key ID, ``alias/<name>`` or a key ARN. The key
must belong to the caller's account and this KMS's region: a root AccessKey
acts only in its own account, and external keys are never used across
regions.

The three conditions of a cryptographic operation are checked in order.
First, the KMS key is Enabled (else ``Rejected.Disabled`` or
``Rejected.PendingDeletion``). Second, the instance is Connected (else
``Forbidden.DKMSInstanceStateInvalid``). Third, the external key is ENABLED
in the key manager: only the proxy can check this, and its refusal becomes
``Rejected.Unavailable`` (see :func:`hyok.kms.api.errors.map_proxy_error`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

from hyok.common.errors import ValidationError
from hyok.kms.api.actions._services import Services
from hyok.kms.api.app import CallContext
from hyok.kms.api.errors import (
    ForbiddenAliasNotFoundError,
    ForbiddenInstanceStateInvalidError,
    ForbiddenKeyNotFoundError,
    ForbiddenNoPermissionError,
    InvalidParameterError,
    RejectedDisabledError,
    RejectedPendingDeletionError,
    UnsupportedOperationError,
    map_proxy_error,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import Instance, InstanceStatus, Key, KeyState, parse_key_arn
from hyok.kms.proxies import InstanceNotConfiguredError
from hyok.kms.store import KmsStore
from hyok.kms.xki_client import ProxyError, RequestMetadata, XkiClient

__all__ = [
    "MAX_KEY_REFERENCE_LENGTH",
    "KeyContext",
    "call_proxy",
    "find_key",
    "instance_id_parameter",
    "principal_arn",
    "proxy_client",
    "request_metadata",
    "require_crypto_ready",
]

MAX_KEY_REFERENCE_LENGTH: Final = 256
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
_INSTANCE_ID: Final = re.compile(r"kst-[a-z0-9]{1,60}")
_MAX_INSTANCE_ID_LENGTH: Final = 64
_ALIAS_PREFIX: Final = "alias/"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class KeyContext:
    """A key that a request names, with its instance."""

    key: Key
    instance: Instance


def instance_id_parameter(params: Params, name: str) -> str:
    """Return the required instance ID parameter ``name``, checked against the ``kst-`` form."""
    instance_id = params.required_str(name, max_length=_MAX_INSTANCE_ID_LENGTH)
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise InvalidParameterError(
            f"The parameter {name} value {shown_value(instance_id)} is not an instance ID. "
            "Pass an ID such as kst-... from ListKmsInstances.",
            parameter=name,
        )
    return instance_id


def principal_arn(ctx: CallContext) -> str:
    """Return the ARN of the caller: the account's root, until RAM identities exist."""
    return f"acs:ram::{ctx.account_id}:root"


def _load(store: KmsStore, key_id: str) -> tuple[Key | None, Instance | None]:
    with store.session(read_only=True) as session:
        key = session.keys.get(key_id)
        instance = session.instances.get(key.instance_id) if key is not None else None
    return key, instance


def _key_id_of(services: Services, ctx: CallContext, reference: str, parameter: str) -> str:
    if reference.startswith(_ALIAS_PREFIX):
        # NOTE: aliases are not stored yet, so every alias is unknown.
        raise ForbiddenAliasNotFoundError(
            f"The alias {shown_value(reference)} is not found in account {ctx.account_id}. "
            "Pass the key ID or key ARN."
        )
    if reference.startswith("acs:"):
        try:
            arn = parse_key_arn(reference)
        except ValidationError as exc:
            raise InvalidParameterError(
                f"The parameter {parameter} is not a valid key ARN: {exc.message}.",
                parameter=parameter,
            ) from None
        if arn.region != services.region:
            raise UnsupportedOperationError(
                f"The key ARN {shown_value(reference)} names region {arn.region}, but this "
                f"KMS serves region {services.region}. Cross-region use is not supported "
                "for external keys: call the KMS of that region."
            )
        if arn.account_id != ctx.account_id:
            raise ForbiddenNoPermissionError(
                f"The key ARN {shown_value(reference)} belongs to account {arn.account_id}, "
                f"and the caller is account {ctx.account_id}. Use a key of your own account."
            )
        return arn.key_id
    if not _KEY_ID.fullmatch(reference):
        raise InvalidParameterError(
            f"The parameter {parameter} value {shown_value(reference)} is not a key ID, "
            "alias or key ARN. Pass a key ID such as key-..., alias/<name>, or "
            "acs:kms:<region>:<account>:key/<key ID>.",
            parameter=parameter,
        )
    return reference


async def find_key(
    services: Services, ctx: CallContext, params: Params, parameter: str = "KeyId"
) -> KeyContext:
    """Find the key that the parameter ``parameter`` names, in the caller's account."""
    reference = params.required_str(parameter, max_length=MAX_KEY_REFERENCE_LENGTH)
    return await find_key_by_reference(services, ctx, reference, parameter)


async def find_key_by_reference(
    services: Services, ctx: CallContext, reference: str, parameter: str = "KeyId"
) -> KeyContext:
    """Find a key by ID, alias or ARN in the caller's account and this region."""
    key_id = _key_id_of(services, ctx, reference, parameter)
    key, instance = await services.keys.load(
        key_id, lambda: services.run(_load, services.store, key_id)
    )
    if (
        key is None
        or instance is None
        or key.account_id != ctx.account_id
        or key.region != services.region
    ):
        raise ForbiddenKeyNotFoundError(
            f"The key {shown_value(key_id)} is not found in account {ctx.account_id} in "
            f"region {services.region}. Check the key ID, or call ListKeys."
        )
    return KeyContext(key, instance)


def require_crypto_ready(found: KeyContext) -> None:
    """Check the first two conditions of cryptography: key Enabled, instance Connected."""
    key, instance = found.key, found.instance
    if key.state is KeyState.DISABLED:
        raise RejectedDisabledError(
            f"Key {key.key_id} is Disabled, and cryptographic operations need an Enabled "
            "key. Call EnableKey, then retry."
        )
    if key.state is KeyState.PENDING_DELETION:
        raise RejectedPendingDeletionError(
            f"Key {key.key_id} is pending deletion, and cryptographic operations need an "
            "Enabled key. Call CancelKeyDeletion and EnableKey, then retry."
        )
    require_connected(instance, f"Key {key.key_id} cannot be used because its instance")


def require_connected(instance: Instance, subject: str) -> None:
    """Raise Forbidden.DKMSInstanceStateInvalid unless the instance is Connected."""
    if instance.status is InstanceStatus.CONNECTED:
        return
    reason = f" ({instance.error_reason})" if instance.error_reason is not None else ""
    raise ForbiddenInstanceStateInvalidError(
        f"{subject} {instance.instance_id} is {instance.status}{reason}, not Connected. "
        "Check the instance's XKI proxy with GetKmsInstance, fix its configuration with "
        "UpdateXkiProxyConfiguration if needed, and call ConnectKmsInstance."
    )


def proxy_client(services: Services, instance: Instance) -> XkiClient:
    """Return the proxy client of a Connected instance."""
    try:
        return services.proxies.client(instance)
    except InstanceNotConfiguredError as exc:
        raise ForbiddenInstanceStateInvalidError(exc.message) from None


def request_metadata(ctx: CallContext, operation: str, key: Key | None = None) -> RequestMetadata:
    """Build the XKS request metadata of a call made for the caller of ``ctx``."""
    return RequestMetadata(
        kms_request_id=ctx.request_id,
        kms_operation=operation,
        principal_arn=principal_arn(ctx),
        kms_key_arn=key.arn if key is not None else None,
    )


async def call_proxy(call: Awaitable[_T], found: KeyContext) -> _T:
    """Await a proxy call, turning a ProxyError into the KMS error for the caller."""
    try:
        return await call
    except ProxyError as exc:
        raise map_proxy_error(
            exc, key_id=found.key.key_id, instance_id=found.instance.instance_id
        ) from exc
