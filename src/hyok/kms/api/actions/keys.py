"""Key actions: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey and the key versions.

Every key is an external key: it lives in an external key management
instance (``DKMSInstanceId``) and references a key in the customer's key
manager (``ExternalKeyId``, a hyok extension of CreateKey). CreateKey reads
the external key's metadata through the instance's XKI proxy and rejects a
key that is not AES-256, lacks ENCRYPT or DECRYPT, or is not ENABLED.
``DryRun=true`` runs those checks, the proxy and the access management
quota included, then fails with DryRunOperationError and stores nothing:
the console checks an external key ID this way before it submits.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Final

from hyok.common.errors import RequestError, ValidationError
from hyok.kms.api.actions._lookup import (
    KeyContext,
    find_key,
    instance_id_parameter,
    proxy_client,
    request_metadata,
    require_connected,
)
from hyok.kms.api.actions._quota import (
    check_key_within_quota,
    insert_key_within_quota,
    replace_policy_within_quota,
)
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    DryRunOperationError,
    ForbiddenInstanceNotFoundError,
    ForbiddenKeyVersionNotFoundError,
    ForbiddenResourceNotFoundError,
    InvalidParameterError,
    MissingParameterError,
    RejectedStateModifiedFailedError,
    RejectedUnavailableError,
    UnsupportedOperationError,
    map_proxy_error,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import (
    MAX_DESCRIPTION_LENGTH,
    MAX_PAGE_SIZE,
    MAX_POLICY_BYTES,
    Instance,
    InstanceStatus,
    Key,
    KeyFilter,
    KeyOrigin,
    KeySpec,
    KeyState,
    KeyUsage,
    KeyVersion,
    PageRequest,
    ProtectionLevel,
    new_key_id,
    new_key_version_id,
)
from hyok.kms.domain.key_policy import build_default_policy
from hyok.kms.domain.policy_document import PolicyDocument, parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.store import KmsStore, StaleStateError
from hyok.kms.xki_client import ExternalKeyStatus, ProxyError, ProxyRejectedError

__all__ = ["describe_key_metadata", "format_date", "key_handlers"]

logger = logging.getLogger("hyok.kms.api")

_EXTERNAL_KEY_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Specs and usages that Alibaba Cloud KMS defines but that an external key cannot have.
_OTHER_KEY_SPECS: Final = frozenset(
    {"Aliyun_SM4", "RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P256K", "EC_SM2"}
)
_OTHER_KEY_USAGES: Final = frozenset({"SIGN/VERIFY"})
_FILTER_KEYS: Final = (
    "KeyState",
    "KeySpec",
    "KeyUsage",
    "ProtectionLevel",
    "CreatorType",
    "DKMSInstanceId",
    "AliasName",
    "TagKey",
    "TagValue",
)
_MAX_FILTERS: Final = 10
_MAX_FILTER_VALUES: Final = 10


def format_date(value: datetime) -> str:
    """Format a UTC datetime as Alibaba Cloud does: ``2024-05-20T06:34:21Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_key_metadata(key: Key) -> dict[str, Any]:
    """Build the ``KeyMetadata`` object of CreateKey and DescribeKey, every value a string."""
    metadata = {
        "KeyId": key.key_id,
        "Arn": key.arn,
        "Description": key.description,
        "KeyState": str(key.state),
        "KeySpec": str(key.key_spec),
        "KeyUsage": str(key.key_usage),
        "Origin": str(key.origin),
        "ProtectionLevel": str(key.protection_level),
        "CreationDate": format_date(key.created_at),
        "Creator": key.creator,
        "DKMSInstanceId": key.instance_id,
        "PrimaryKeyVersion": key.primary_key_version_id,
        "LastRotationDate": format_date(key.created_at),
        "AutomaticRotation": "Disabled",
        "MaterialExpireTime": "",
        "DeletionProtection": "Enabled" if key.deletion_protection else "Disabled",
        "DeletionProtectionDescription": key.deletion_protection_description,
        "ExternalKeyId": key.external_key_id,
    }
    if key.delete_date is not None:
        metadata["DeleteDate"] = format_date(key.delete_date)
    return metadata


# --- CreateKey --------------------------------------------------------------------


def _check_create_options(params: Params) -> None:
    spec = params.optional_str("KeySpec", max_length=32)
    if spec is not None and spec != str(KeySpec.ALIYUN_AES_256):
        if spec in _OTHER_KEY_SPECS:
            raise UnsupportedOperationError(
                f"KeySpec {spec} is not supported for external keys, which are symmetric "
                "AES-256 keys. Use KeySpec Aliyun_AES_256 or leave it out."
            )
        raise InvalidParameterError(
            f"The parameter KeySpec value {shown_value(spec)} is not a key spec. Use "
            "Aliyun_AES_256, the only spec of external keys.",
            parameter="KeySpec",
        )
    usage = params.optional_str("KeyUsage", max_length=32)
    if usage is not None and usage != str(KeyUsage.ENCRYPT_DECRYPT):
        if usage in _OTHER_KEY_USAGES:
            raise UnsupportedOperationError(
                f"KeyUsage {usage} is not supported for external keys, which only encrypt "
                "and decrypt. Use KeyUsage ENCRYPT/DECRYPT or leave it out."
            )
        raise InvalidParameterError(
            f"The parameter KeyUsage value {shown_value(usage)} is not a key usage. Use "
            "ENCRYPT/DECRYPT, the only usage of external keys.",
            parameter="KeyUsage",
        )
    origin = params.enum("Origin", ("Aliyun_KMS", "EXTERNAL"), default="Aliyun_KMS")
    if origin == "EXTERNAL":
        raise UnsupportedOperationError(
            "Origin EXTERNAL (importing key material) is not supported for external keys: "
            "their material stays in your key manager. Leave Origin out."
        )
    params.enum("ProtectionLevel", ("SOFTWARE", "HSM"), default="SOFTWARE")
    params.enum(
        "KeyStorageMechanism", ("HsmInternal", "HsmEncryptedDatabase"), default="HsmInternal"
    )
    if params.boolean("EnableAutomaticRotation", default=False):
        raise UnsupportedOperationError(
            "Automatic rotation is not supported for external keys: your key manager owns "
            "their versions. Leave EnableAutomaticRotation out or set it to false."
        )
    if "RotationInterval" in params:
        raise UnsupportedOperationError(
            "RotationInterval is not supported for external keys, which do not rotate in "
            "the KMS. Leave it out."
        )


def _policy(params: Params) -> PolicyDocument | None:
    """Return the checked Policy parameter, or None when the request has none."""
    text = params.optional_str("Policy", max_length=MAX_POLICY_BYTES)
    if text is None:
        return None
    try:
        return parse_policy(text, PolicyKind.KEY)
    except PolicyDocumentError as exc:
        raise InvalidParameterError(
            f"The parameter Policy is not a valid key policy: {exc.message}", parameter="Policy"
        ) from None


def _external_key_id(params: Params) -> str:
    value = params.optional_str("ExternalKeyId", max_length=128, min_length=1)
    if value is None:
        raise MissingParameterError("ExternalKeyId")
    if not _EXTERNAL_KEY_ID.fullmatch(value) or value in (".", ".."):
        raise InvalidParameterError(
            f"The parameter ExternalKeyId value {shown_value(value)} is not an external key "
            "ID. Use the key ID that the XKI proxy reports: 1 to 128 letters, digits, '.', "
            "'-' and '_'.",
            parameter="ExternalKeyId",
        )
    return value


def _load_instance(store: KmsStore, instance_id: str, account_id: str) -> Instance | None:
    """Return the instance if the account owns it or it is shared with the account."""
    with store.session(read_only=True) as session:
        instance = session.instances.get(instance_id)
        if instance is None or instance.account_id == account_id:
            return instance
        return instance if session.sharing.is_member(instance_id, account_id) else None


async def _check_external_key(
    services: Services, ctx: CallContext, instance: Instance, external_key_id: str
) -> None:
    client = proxy_client(services, instance)
    metadata = request_metadata(ctx, "CreateKey")
    try:
        result = await client.get_key_metadata(external_key_id, metadata)
    except ProxyError as exc:
        if isinstance(exc, ProxyRejectedError) and exc.error_name == "KeyNotFoundException":
            raise InvalidParameterError(
                f"The external key {shown_value(external_key_id)} is not found by the XKI "
                f"proxy of instance {instance.instance_id}. Create it in your key manager "
                "(for the proxy of hyok up: hyok kmi create-key --key-id ID), and pass the key "
                "ID the proxy reports.",
                parameter="ExternalKeyId",
            ) from exc
        raise map_proxy_error(exc, key_id="(new key)", instance_id=instance.instance_id) from exc
    subject = f"The external key {shown_value(external_key_id)}"
    if result.key_spec != "AES_256":
        raise InvalidParameterError(
            f"{subject} has key spec {shown_value(result.key_spec)}, and external keys must "
            "be AES_256. Choose an AES-256 key in your key manager.",
            parameter="ExternalKeyId",
        )
    missing = {"ENCRYPT", "DECRYPT"} - result.key_usage
    if missing:
        raise InvalidParameterError(
            f"{subject} lacks the usage {', '.join(sorted(missing))}, and external keys need "
            "both ENCRYPT and DECRYPT. Allow both usages in your key manager.",
            parameter="ExternalKeyId",
        )
    if result.key_status is not ExternalKeyStatus.ENABLED:
        raise RejectedUnavailableError(
            f"{subject} is {result.key_status} in the key manager behind the XKI proxy of "
            f"instance {instance.instance_id}. Enable it there, then retry."
        )


async def create_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "DKMSInstanceId")
    external_key_id = _external_key_id(params)
    _check_create_options(params)
    description = params.optional_str("Description", max_length=MAX_DESCRIPTION_LENGTH) or ""
    tags = params.tags_json("Tags") or []
    policy = _policy(params)
    dry_run = params.boolean("DryRun", default=False)

    # A member of a shared instance may create keys in it; the key belongs to the member.
    instance = await services.run(_load_instance, services.store, instance_id, ctx.account_id)
    if instance is None or instance.region != services.region:
        raise ForbiddenInstanceNotFoundError(
            f"The instance {instance_id} is not found in account {ctx.account_id} in region "
            f"{services.region}, and is not shared with it. Check the ID with ListKmsInstances."
        )
    require_connected(instance, "The key cannot be created because instance")
    if policy is None:
        policy = parse_policy(
            build_default_policy(
                creator_account=ctx.account_id, instance_owner=instance.account_id
            ),
            PolicyKind.KEY,
        )
    await _check_external_key(services, ctx, instance, external_key_id)

    now = services.clock()
    key_id = new_key_id()
    version_id = new_key_version_id()
    try:
        key = Key(
            key_id=key_id,
            account_id=ctx.account_id,
            region=services.region,
            instance_id=instance_id,
            external_key_id=external_key_id,
            description=description,
            origin=KeyOrigin.EXTERNAL,
            protection_level=ProtectionLevel.SOFTWARE,
            creator=ctx.account_id,
            created_at=now,
            primary_key_version_id=version_id,
            policy=policy.text,
        )
    except ValidationError as exc:
        raise InvalidParameterError(f"The key cannot be created: {exc.message}.") from None
    if dry_run:
        await services.run(
            check_key_within_quota, services.store, key, policy, instance.account_id, now
        )
        raise DryRunOperationError(
            "The CreateKey request passed every check, including the external key's metadata "
            "from the XKI proxy, and would have succeeded; nothing was done because DryRun is "
            "true."
        )
    version = KeyVersion(key_id=key_id, key_version_id=version_id, created_at=now)
    await services.run(insert_key_within_quota, services.store, key, version, tags, policy, now)
    # Named only once stored, so the audit event of the key's creation lists it.
    ctx.resources.append(key_id)
    return {"KeyMetadata": describe_key_metadata(key)}


# --- DescribeKey ------------------------------------------------------------------


async def _external_key_state(services: Services, ctx: CallContext, found: KeyContext) -> str:
    """Return the external key's state from the proxy, or ``Unknown`` when the proxy fails."""
    instance = found.instance
    if instance.status is not InstanceStatus.CONNECTED:
        return "Unknown"
    try:
        client = proxy_client(services, instance)
        result = await client.get_key_metadata(
            found.key.external_key_id, request_metadata(ctx, "DescribeKey", found.key)
        )
    except ProxyRejectedError as exc:
        return "NotFound" if exc.error_name == "KeyNotFoundException" else "Unknown"
    except (ProxyError, RequestError):
        # DescribeKey reports the state and never fails because of it.
        return "Unknown"
    return str(result.key_status)


async def describe_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    metadata = describe_key_metadata(found.key)
    metadata["ExternalKeyState"] = await _external_key_state(services, ctx, found)
    metadata["KmsInstanceStatus"] = str(found.instance.status)
    return {"KeyMetadata": metadata}


# --- ListKeys ---------------------------------------------------------------------


def _key_filter(params: Params) -> tuple[KeyFilter, bool]:
    """Parse ``Filters``; the bool is False when a filter matches no key at all."""
    document = params.json_array("Filters", max_bytes=8_192)
    if document is None:
        return KeyFilter(), True
    if len(document) > _MAX_FILTERS:
        raise InvalidParameterError(
            f"The parameter Filters has {len(document)} filters, above the maximum of "
            f"{_MAX_FILTERS}. Send fewer filters.",
            parameter="Filters",
        )
    values: dict[str, set[str]] = {}
    for position, item in enumerate(document, start=1):
        if (
            not isinstance(item, dict)
            or set(item) != {"Key", "Values"}
            or not isinstance(item["Key"], str)
            or not isinstance(item["Values"], list)
            or not all(isinstance(value, str) for value in item["Values"])
        ):
            raise InvalidParameterError(
                f"Filter {position} of the parameter Filters is invalid: each filter must be "
                'a JSON object {"Key": "...", "Values": ["..."]} with string values.',
                parameter="Filters",
            )
        name, wanted = item["Key"], item["Values"]
        if name not in _FILTER_KEYS:
            raise InvalidParameterError(
                f"Filter {position} has the key {shown_value(name)}, which is not a filter "
                f"key. Use one of: {', '.join(_FILTER_KEYS)}.",
                parameter="Filters",
            )
        if not 1 <= len(wanted) <= _MAX_FILTER_VALUES:
            raise InvalidParameterError(
                f"Filter {position} ({name}) has {len(wanted)} values; give 1 to "
                f"{_MAX_FILTER_VALUES}.",
                parameter="Filters",
            )
        values.setdefault(name, set()).update(wanted)

    creator_types = values.pop("CreatorType", None)
    matches_any = True
    if creator_types is not None:
        unknown = creator_types - {"User", "Service"}
        if unknown:
            raise InvalidParameterError(
                f"The CreatorType filter value {shown_value(sorted(unknown)[0])} is invalid. "
                "Use User or Service.",
                parameter="Filters",
            )
        # Every hyok key is created by a user; no cloud service creates keys.
        matches_any = "User" in creator_types
    try:
        key_filter = KeyFilter.from_strings(
            states=values.get("KeyState", ()),
            specs=values.get("KeySpec", ()),
            usages=values.get("KeyUsage", ()),
            protection_levels=values.get("ProtectionLevel", ()),
            instance_ids=values.get("DKMSInstanceId", ()),
            alias_names=values.get("AliasName", ()),
            tag_keys=values.get("TagKey", ()),
            tag_values=values.get("TagValue", ()),
        )
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The parameter Filters has an invalid value: {exc.message}.", parameter="Filters"
        ) from None
    return key_filter, matches_any


def _page_request(params: Params, default_size: int) -> PageRequest:
    number = params.int_in_range("PageNumber", 1, 1_000_000, default=1)
    size = params.int_in_range("PageSize", 1, MAX_PAGE_SIZE, default=default_size)
    return PageRequest(number, size)


def _list_keys(
    store: KmsStore, account_id: str, region: str, page: PageRequest, key_filter: KeyFilter
) -> tuple[list[Key], int]:
    with store.session(read_only=True) as session:
        result = session.keys.list(account_id, region, page, key_filter)
    return list(result.items), result.total_count


async def list_keys(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    page = _page_request(params, 10)
    key_filter, matches_any = _key_filter(params)
    found: list[Key] = []
    total = 0
    if matches_any:
        found, total = await services.run(
            _list_keys, services.store, ctx.account_id, services.region, page, key_filter
        )
    return {
        "Keys": {"Key": [{"KeyId": key.key_id, "KeyArn": key.arn} for key in found]},
        "PageNumber": page.number,
        "PageSize": page.size,
        "TotalCount": total,
    }


# --- EnableKey and DisableKey -----------------------------------------------------


def _set_state(store: KmsStore, key_id: str, state: KeyState) -> Key:
    with store.session() as session:
        return session.keys.update_state(
            key_id, state, expected=(KeyState.ENABLED, KeyState.DISABLED)
        )


async def _change_state(
    services: Services, ctx: CallContext, params: Params, state: KeyState
) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    key = found.key
    if key.state is KeyState.PENDING_DELETION:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} is pending deletion, so it cannot be set to {state}. Call "
            "CancelKeyDeletion first."
        )
    try:
        await services.run(_set_state, services.store, key.key_id, state)
    except StaleStateError:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} changed state during the request, so it was not set to "
            f"{state}. Call DescribeKey and retry."
        ) from None
    finally:
        services.keys.forget_key(key.key_id)
    logger.info("key %s set to %s (request %s)", key.key_id, state, ctx.request_id)
    return {}


async def enable_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    return await _change_state(services, ctx, params, KeyState.ENABLED)


async def disable_key(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    return await _change_state(services, ctx, params, KeyState.DISABLED)


# --- Key policies -----------------------------------------------------------------

_POLICY_NAME: Final = "default"


def _check_policy_name(params: Params) -> None:
    name = params.optional_str("PolicyName", max_length=128)
    if name is not None and name != _POLICY_NAME:
        raise ForbiddenResourceNotFoundError(
            f"The key policy {shown_value(name)} is not found: every key has one policy, "
            f"named {_POLICY_NAME}. Leave PolicyName out or pass {_POLICY_NAME}."
        )


async def set_key_policy(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _check_policy_name(params)
    policy = _policy(params)
    if policy is None:
        raise MissingParameterError("Policy")
    found = await find_key(services, ctx, params)
    try:
        await services.run(
            replace_policy_within_quota, services.store, found.key, policy, services.clock()
        )
    finally:
        services.keys.forget_key(found.key.key_id)
    logger.info("key %s policy replaced (request %s)", found.key.key_id, ctx.request_id)
    return {}


async def get_key_policy(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _check_policy_name(params)
    found = await find_key(services, ctx, params)
    return {"Policy": found.key.policy}


# --- Key versions -----------------------------------------------------------------


def _version_item(version: KeyVersion) -> dict[str, str]:
    return {
        "KeyId": version.key_id,
        "KeyVersionId": version.key_version_id,
        "CreationDate": format_date(version.created_at),
    }


def _get_version(store: KmsStore, key_id: str, version_id: str) -> KeyVersion | None:
    with store.session(read_only=True) as session:
        return session.keys.get_version(key_id, version_id)


def _list_versions(store: KmsStore, key_id: str, page: PageRequest) -> tuple[list[KeyVersion], int]:
    with store.session(read_only=True) as session:
        result = session.keys.list_versions(key_id, page)
    return list(result.items), result.total_count


async def describe_key_version(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    version_id = params.required_str("KeyVersionId", max_length=64)
    version = await services.run(_get_version, services.store, found.key.key_id, version_id)
    if version is None:
        raise ForbiddenKeyVersionNotFoundError(
            f"The key version {shown_value(version_id)} is not found for key "
            f"{found.key.key_id}. An external key has one version, "
            f"{found.key.primary_key_version_id}; call ListKeyVersions."
        )
    return {"KeyVersion": _version_item(version)}


async def list_key_versions(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    page = _page_request(params, 10)
    versions, total = await services.run(_list_versions, services.store, found.key.key_id, page)
    return {
        "KeyVersions": {"KeyVersion": [_version_item(version) for version in versions]},
        "PageNumber": page.number,
        "PageSize": page.size,
        "TotalCount": total,
    }


def key_handlers(services: Services) -> dict[str, Handler]:
    """Return the key actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "CreateKey": create_key,
            "DescribeKey": describe_key,
            "ListKeys": list_keys,
            "EnableKey": enable_key,
            "DisableKey": disable_key,
            "DescribeKeyVersion": describe_key_version,
            "ListKeyVersions": list_key_versions,
            "SetKeyPolicy": set_key_policy,
            "GetKeyPolicy": get_key_policy,
        },
    )
