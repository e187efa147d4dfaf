"""Tag actions on keys: TagResource, UntagResource, ListResourceTags and their batch forms.

Tag rules (:func:`hyok.kms.api.params.check_tag`): keys of 1 to 128 and
values of 0 to 128 characters from letters, digits, space and
``/ \\ _ - . + = : @``; keys never start with ``aliyun`` or ``acs:``; a key
carries at most :data:`~hyok.kms.store.repositories.MAX_TAGS_PER_KEY` tags.
Every action changes all its keys in one transaction: a batch with one bad
tag or one unknown, forbidden or pending-deletion key changes nothing, and
the error names what was wrong. Tagging an existing tag key replaces its
value. Only keys carry tags here: secrets and certificates are refused with
``UnsupportedOperation``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from hyok.common.errors import ValidationError
from hyok.kms.api.actions._lookup import KeyContext, find_key, find_key_by_reference
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    InvalidParameterError,
    MissingParameterError,
    RejectedPendingDeletionError,
    UnsupportedOperationError,
    shown_value,
)
from hyok.kms.api.params import MAX_TAG_LENGTH, Params, check_tag
from hyok.kms.domain import KeyState
from hyok.kms.store import KmsStore

__all__ = ["tag_handlers"]

logger = logging.getLogger("hyok.kms.api")

MAX_RESOURCES: Final = 50
MAX_TAGS_PER_CALL: Final = 20
LIST_PAGE_SIZE: Final = 200
_RESOURCE_TYPE: Final = "key"
_OTHER_RESOURCES: Final = ("SecretName", "CertificateId")
_MAX_TAG_KEYS_TEXT: Final = MAX_TAGS_PER_CALL * (MAX_TAG_LENGTH * 6 + 4) + 2


def _reject_other_resources(params: Params) -> None:
    for name in _OTHER_RESOURCES:
        if name in params:
            raise UnsupportedOperationError(
                f"The parameter {name} names a resource that hyok does not manage: it keeps "
                "keys only. Pass KeyId."
            )


def _resource_type(params: Params) -> None:
    kind = params.required_str("ResourceType", max_length=32)
    if kind.lower() != _RESOURCE_TYPE:
        raise UnsupportedOperationError(
            f"The parameter ResourceType value {shown_value(kind)} is not supported: hyok "
            "keeps keys only. Pass ResourceType key."
        )


def _region(services: Services, params: Params) -> None:
    region = params.required_str("RegionId", max_length=64)
    if region != services.region:
        raise InvalidParameterError(
            f"The parameter RegionId value {shown_value(region)} is not this KMS's region "
            f"{services.region}. Call the KMS of that region, or pass {services.region}.",
            parameter="RegionId",
        )


def _writable(found: KeyContext, action: str) -> None:
    if found.key.state is KeyState.PENDING_DELETION:
        raise RejectedPendingDeletionError(
            f"Key {found.key.key_id} is pending deletion, so {action} is rejected. Call "
            "CancelKeyDeletion first if the key must stay."
        )


def _tag_keys_parameter(params: Params, name: str) -> list[str]:
    """Read tag keys given as a JSON array string or as a comma-separated list."""
    text = params.required_str(name, max_length=_MAX_TAG_KEYS_TEXT)
    if text.lstrip().startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise InvalidParameterError(
                f"The parameter {name} is not a valid JSON array of tag keys. Send "
                '["key1","key2"] or key1,key2.',
                parameter=name,
            ) from None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise InvalidParameterError(
                f"The parameter {name} must be a JSON array of strings, such as "
                '["key1","key2"].',
                parameter=name,
            )
        names: list[str] = parsed
    else:
        names = [part.strip() for part in text.split(",")]
    return _checked_tag_keys(names, name)


def _checked_tag_keys(names: Sequence[str], parameter: str) -> list[str]:
    if not names:
        raise MissingParameterError(parameter)
    if len(names) > MAX_TAGS_PER_CALL:
        raise InvalidParameterError(
            f"The parameter {parameter} has {len(names)} tag keys, above the maximum of "
            f"{MAX_TAGS_PER_CALL}. Send fewer.",
            parameter=parameter,
        )
    for name in names:
        check_tag(name, "", key_name=parameter, value_name=parameter)
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class _TagChange:
    """The change of one key's tags by one action: add ``add``, then remove ``remove``.

    ``remove`` None removes nothing; ``remove_all`` removes every tag.
    """

    key_id: str
    add: Sequence[tuple[str, str]] = ()
    remove: Sequence[str] | None = None
    remove_all: bool = False


def _apply(store: KmsStore, changes: Sequence[_TagChange]) -> None:
    """Apply every change in one transaction, so that a failure changes nothing."""
    with store.session() as session:
        for change in changes:
            if change.add:
                session.keys.set_tags(change.key_id, change.add)
            if change.remove_all:
                session.keys.remove_tags(change.key_id, None)
            elif change.remove is not None:
                session.keys.remove_tags(change.key_id, change.remove)


async def _store_changes(services: Services, changes: Sequence[_TagChange]) -> None:
    try:
        await services.run(_apply, services.store, changes)
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The tags were not changed: {exc.message}. Remove tags with UntagResource "
            "first, or tag fewer.",
            parameter="Tags",
        ) from None
    finally:
        for change in changes:
            services.keys.forget_key(change.key_id)


# --- One key ---------------------------------------------------------------------------


async def tag_resource(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _reject_other_resources(params)
    tags = params.tags_json("Tags", max_items=MAX_TAGS_PER_CALL)
    if not tags:
        raise MissingParameterError("Tags")
    found = await find_key(services, ctx, params)
    _writable(found, "TagResource")
    await _store_changes(services, [_TagChange(found.key.key_id, add=tags)])
    return {}


async def untag_resource(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    _reject_other_resources(params)
    names = _tag_keys_parameter(params, "TagKeys")
    found = await find_key(services, ctx, params)
    _writable(found, "UntagResource")
    await _store_changes(services, [_TagChange(found.key.key_id, remove=names)])
    return {}


async def list_resource_tags(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    tags = [
        {"KeyId": found.key.key_id, "TagKey": key, "TagValue": value}
        for key, value in sorted(found.tags.items())
    ]
    return {"Tags": {"Tag": tags}}


# --- Several keys ------------------------------------------------------------------------


async def _resources(services: Services, ctx: CallContext, params: Params) -> list[KeyContext]:
    _region(services, params)
    _resource_type(params)
    references = params.repeat_list(
        "ResourceId", max_items=MAX_RESOURCES, max_length=256, required=True
    )
    found: dict[str, KeyContext] = {}
    for index, reference in enumerate(references, start=1):
        key = await find_key_by_reference(services, ctx, reference, f"ResourceId.{index}")
        found.setdefault(key.key.key_id, key)
    return list(found.values())


async def tag_resources(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    tags = params.tag_list("Tag", max_items=MAX_TAGS_PER_CALL)
    if not tags:
        raise MissingParameterError("Tag.1.Key")
    keys = await _resources(services, ctx, params)
    for found in keys:
        _writable(found, "TagResources")
    await _store_changes(services, [_TagChange(found.key.key_id, add=tags) for found in keys])
    return {}


async def untag_resources(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    names = params.repeat_list("TagKey", max_items=MAX_TAGS_PER_CALL, max_length=MAX_TAG_LENGTH)
    remove_all = params.boolean("All", default=False)
    if names and remove_all:
        raise InvalidParameterError(
            "The parameters TagKey.N and All=true exclude each other. Name the tag keys to "
            "remove, or send All=true alone to remove every tag.",
            parameter="All",
        )
    if not names and not remove_all:
        raise MissingParameterError("TagKey.1")
    checked = _checked_tag_keys(names, "TagKey.N") if names else None
    keys = await _resources(services, ctx, params)
    for found in keys:
        _writable(found, "UntagResources")
    await _store_changes(
        services,
        [_TagChange(found.key.key_id, remove=checked, remove_all=remove_all) for found in keys],
    )
    return {}


async def list_tag_resources(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    wanted = params.tag_list("Tag", max_items=MAX_TAGS_PER_CALL)
    token = params.optional_str("NextToken", max_length=32) or "0"
    if not token.isdigit():
        raise InvalidParameterError(
            f"The parameter NextToken value {shown_value(token)} is not a token this KMS "
            "returned. Leave it out for the first page.",
            parameter="NextToken",
        )
    keys = await _resources(services, ctx, params)
    rows = [
        {
            "ResourceId": found.key.key_id,
            "ResourceType": _RESOURCE_TYPE,
            "TagKey": tag_key,
            "TagValue": tag_value,
        }
        for found in keys
        for tag_key, tag_value in sorted(found.tags.items())
        if not wanted or (tag_key, tag_value) in wanted
    ]
    start = int(token)
    page = rows[start : start + LIST_PAGE_SIZE]
    following = start + LIST_PAGE_SIZE
    return {
        "TagResources": {"TagResource": page},
        "NextToken": str(following) if following < len(rows) else "",
    }


def tag_handlers(services: Services) -> dict[str, Handler]:
    """Return the tag actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "TagResource": tag_resource,
            "UntagResource": untag_resource,
            "ListResourceTags": list_resource_tags,
            "TagResources": tag_resources,
            "UntagResources": untag_resources,
            "ListTagResources": list_tag_resources,
        },
    )

