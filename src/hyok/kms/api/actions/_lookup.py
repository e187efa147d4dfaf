"""Finding the key a request names, checking the conditions of cryptography, calling the proxy.

A ``KeyId`` parameter is a key ID, a key ARN, ``alias/<name>`` or an alias
ARN, in this KMS's region: external keys are never used across regions. A
key of another account is reachable only by its key ARN (or through a
ciphertext made under it), and only when its key policy names the caller.
Aliases work in the caller's own account only, so an alias ARN of another
account gives ``Forbidden.NoPermission``. An alias is read from the store on
every use, so UpdateAlias takes effect at once on every KMS node. A request
by key ID or key ARN reads no alias. Finding a key also checks the caller's
permission on the key, never on the alias
(:mod:`hyok.kms.api.actions._access`).

The three conditions of a cryptographic operation are checked in order.
First, the KMS key is Enabled (else ``Rejected.Disabled`` or
``Rejected.PendingDeletion``). Second, the instance is Connected (else
``Forbidden.DKMSInstanceStateInvalid``). Third, the external key is ENABLED
in the key manager: only the proxy can check this, and its refusal becomes
``Rejected.Unavailable`` (see :func:`hyok.kms.api.errors.map_proxy_error`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from hyok.common.errors import ValidationError
from hyok.kms.api.actions._access import authorize_key
from hyok.kms.api.actions._cache import KeyContext
from hyok.kms.api.actions._parameters import instance_id_parameter
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
from hyok.kms.domain.aliases import (
    ALIAS_PREFIX,
    MAX_ALIAS_NAME_LENGTH,
    check_alias_name,
    is_alias_arn,
    parse_alias_arn,
)
from hyok.kms.domain.policy_eval import PolicyType
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

# The maximum length of an alias ARN: "acs:kms:", a region of 64, ":", an account ID
# of 16, ":" and an alias name of 255. Key ARNs are shorter.
MAX_KEY_REFERENCE_LENGTH: Final = len("acs:kms:") + 64 + 1 + 16 + 1 + MAX_ALIAS_NAME_LENGTH
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

_T = TypeVar("_T")
_A = TypeVar("_A")


def principal_arn(ctx: CallContext) -> str:
    """Return the ARN of the caller, as the proxy's request metadata carries it."""
    return ctx.principal_arn


def _load(store: KmsStore, key_id: str) -> KeyContext | None:
    with store.session(read_only=True) as session:
        key = session.keys.get(key_id)
        if key is None:
            return None
        instance = session.instances.get(key.instance_id)
        if instance is None:
            return None
        tags = dict(session.keys.list_tags(key_id))
    return KeyContext(key, instance, tags)


def _alias_target(store: KmsStore, account_id: str, region: str, alias_name: str) -> str | None:
    with store.session(read_only=True) as session:
        alias = session.aliases.get(account_id, region, alias_name)
    return None if alias is None else alias.key_id


@dataclass(frozen=True, slots=True)
class _Reference:
    """The key ID that a KeyId parameter names, and the account of its key ARN if any."""

    key_id: str
    arn_account: str | None


def _unavailable_key(ctx: CallContext, reference: str, owner: str) -> ForbiddenNoPermissionError:
    """Build the one refusal of a key of another account, whether the key exists or not."""
    return ForbiddenNoPermissionError(
        f"The key {shown_value(reference)} of account {owner} is not available to "
        f"{ctx.principal.arn}: it does not exist, or its key policy does not allow the "
        "caller. Ask the key's owner to grant access in the key policy."
    )


def _check_region(services: Services, reference: str, region: str, kind: str) -> None:
    if region != services.region:
        raise UnsupportedOperationError(
            f"The {kind} ARN {shown_value(reference)} names region {region}, but this "
            f"KMS serves region {services.region}. Cross-region use is not supported "
            "for external keys: call the KMS of that region."
        )


def _parsed_arn(parse: Callable[[str], _A], reference: str, parameter: str, kind: str) -> _A:
    """Parse a key or alias ARN, turning a ValidationError into InvalidParameter."""
    try:
        return parse(reference)
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The parameter {parameter} is not a valid {kind} ARN: {exc.message}.",
            parameter=parameter,
        ) from None


async def _resolve_alias(
    services: Services, ctx: CallContext, alias_name: str, shown: str, parameter: str
) -> _Reference:
    """Return the key that an alias of the caller's account points to.

    ``shown`` is the reference as the caller gave it (alias name or alias ARN).
    """
    try:
        check_alias_name(alias_name)
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The parameter {parameter} is not a valid alias: {exc.message}.",
            parameter=parameter,
        ) from None
    key_id = await services.run(
        _alias_target, services.store, ctx.account_id, services.region, alias_name
    )
    if key_id is None:
        raise ForbiddenAliasNotFoundError(
            f"The alias {shown_value(shown)} is not found in account {ctx.account_id} in "
            f"region {services.region}. Check the name with ListAliases, or create it with "
            "CreateAlias."
        )
    return _Reference(key_id, None)


async def _reference_of(
    services: Services, ctx: CallContext, reference: str, parameter: str
) -> _Reference:
    if reference.startswith(ALIAS_PREFIX):
        return await _resolve_alias(services, ctx, reference, reference, parameter)
    if reference.startswith("acs:") and is_alias_arn(reference):
        alias = _parsed_arn(parse_alias_arn, reference, parameter, "alias")
        _check_region(services, reference, alias.region, "alias")
        if alias.account_id != ctx.account_id:
            # Aliases are not shared across accounts: another account's key is
            # reachable by its key ARN only.
            raise _unavailable_key(ctx, reference, alias.account_id)
        return await _resolve_alias(services, ctx, alias.alias_name, reference, parameter)
    if reference.startswith("acs:"):
        arn = _parsed_arn(parse_key_arn, reference, parameter, "key")
        _check_region(services, reference, arn.region, "key")
        return _Reference(arn.key_id, arn.account_id)
    if not _KEY_ID.fullmatch(reference):
        raise InvalidParameterError(
            f"The parameter {parameter} value {shown_value(reference)} is not a key ID, "
            "alias or ARN. Pass a key ID such as key-..., alias/<name>, "
            "acs:kms:<region>:<account>:key/<key ID> or acs:kms:<region>:<account>:alias/<name>.",
            parameter=parameter,
        )
    return _Reference(reference, None)


async def find_key(
    services: Services, ctx: CallContext, params: Params, parameter: str = "KeyId"
) -> KeyContext:
    """Find the key that the parameter ``parameter`` names, and authorise the request on it."""
    reference = params.required_str(parameter, max_length=MAX_KEY_REFERENCE_LENGTH)
    return await find_key_by_reference(services, ctx, reference, parameter)


async def find_key_by_reference(
    services: Services,
    ctx: CallContext,
    reference: str,
    parameter: str = "KeyId",
    *,
    permission: str | None = None,
    from_ciphertext: bool = False,
) -> KeyContext:
    """Find a key by ID, key ARN, alias or alias ARN in this region, and authorise ``permission``.

    ``permission`` is the ``kms:`` action to check, by default the one of the
    request's action. A key of the caller's account may be named any way. A
    key of another account must be named by its ARN, or come from a
    ciphertext (``from_ciphertext``), which binds the key's ARN; when such a
    key is missing or the policies deny the caller, the error is the same
    ``Forbidden.NoPermission``, so that other accounts learn nothing of it.
    """
    named = await _reference_of(services, ctx, reference, parameter)
    key_id = named.key_id
    ctx.resources.append(key_id)
    found = await services.keys.load(key_id, lambda: services.run(_load, services.store, key_id))
    foreign = (named.arn_account or ctx.account_id) != ctx.account_id or (
        from_ciphertext and found is not None and found.key.account_id != ctx.account_id
    )
    if foreign:
        owner = named.arn_account or (found.key.account_id if found else ctx.account_id)
        unavailable = _unavailable_key(ctx, reference, owner)
        if found is None or found.key.account_id != owner or found.key.region != services.region:
            raise unavailable
        try:
            await authorize_key(services, ctx, found, addressed_by_arn=True, action=permission)
        except ForbiddenNoPermissionError as exc:
            # Only a caller that the key policy allows may learn more about the key.
            detail = exc.access_denied_detail or {}
            if detail.get("PolicyType") == PolicyType.KEY.value:
                raise unavailable from None
            raise
        return found
    if found is None or found.key.account_id != ctx.account_id or (
        found.key.region != services.region
    ):
        raise ForbiddenKeyNotFoundError(
            f"The key {shown_value(key_id)} is not found in account {ctx.account_id} in "
            f"region {services.region}. Check the key ID, or call ListKeys; a key of another "
            "account is reachable only by its ARN."
        )
    await authorize_key(
        services, ctx, found, addressed_by_arn=named.arn_account is not None, action=permission
    )
    return found


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
            "Enabled key. Call CancelKeyDeletion, which makes the key Enabled, then retry."
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
        kms_via_service=ctx.via_service or None,
    )


async def call_proxy(call: Awaitable[_T], found: KeyContext) -> _T:
    """Await a proxy call, turning a ProxyError into the KMS error for the caller."""
    try:
        return await call
    except ProxyError as exc:
        raise map_proxy_error(
            exc, key_id=found.key.key_id, instance_id=found.instance.instance_id
        ) from exc
