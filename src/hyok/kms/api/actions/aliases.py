"""Alias actions: CreateAlias, UpdateAlias, DeleteAlias, ListAliases and ListAliasesByKeyId.

An alias (``alias/<name>``, rules in :mod:`hyok.kms.domain.aliases`) points
to one key of the caller's account in this region, and is unique there: the
database's primary key decides between concurrent CreateAlias requests of
one name, and the losers get ``AliasAlreadyExists``. An account has at most
:data:`MAX_ALIASES_PER_ACCOUNT` aliases per region (``Rejected.LimitExceeded``).

Permissions: CreateAlias, UpdateAlias and DeleteAlias need their ``kms:``
action on the alias ARN and on the key (for UpdateAlias, the new key). The
alias is checked first, so the KMS reveals whether it exists only to callers
allowed on it.
ListAliases is checked on the account, ListAliasesByKeyId on the key.

Key states: an alias cannot be created for, or moved to, a key pending
deletion (``Rejected.StateModifiedFailed``). DeleteAlias, ListAliases and
ListAliasesByKeyId work in every state. Deleting a key deletes its aliases.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

from hyok.common.errors import ValidationError
from hyok.kms.api.actions._access import authorize
from hyok.kms.api.actions._lookup import (
    MAX_KEY_REFERENCE_LENGTH,
    KeyContext,
    find_key,
    find_key_by_reference,
)
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.actions.keys import _page_request
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    AliasAlreadyExistsError,
    ForbiddenAliasNotFoundError,
    ForbiddenKeyNotFoundError,
    InvalidParameterError,
    RejectedLimitExceededError,
    RejectedStateModifiedFailedError,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import KeyState, PageRequest, parse_key_arn
from hyok.kms.domain.aliases import MAX_ALIAS_NAME_LENGTH, Alias, check_alias_name, is_alias_arn
from hyok.kms.domain.kms_actions import ResourceKind, authorization_for, resource_arn
from hyok.kms.store import (
    DuplicateRowError,
    KmsStore,
    MissingReferenceError,
    RowNotFoundError,
    StaleStateError,
)

__all__ = ["MAX_ALIASES_PER_ACCOUNT", "alias_handlers"]

logger = logging.getLogger("hyok.kms.api")

MAX_ALIASES_PER_ACCOUNT: Final = 300
"""The maximum number of aliases of one account in one region, Alibaba Cloud's default quota."""
_DEFAULT_PAGE_SIZE: Final = 10
_PARAMETER: Final = "AliasName"


def _alias_name(params: Params) -> str:
    name = params.required_str(_PARAMETER, max_length=MAX_ALIAS_NAME_LENGTH)
    try:
        return check_alias_name(name)
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The parameter AliasName is invalid: {exc.message}.", parameter=_PARAMETER
        ) from None


def _listed(alias: Alias) -> dict[str, str]:
    return {"AliasName": alias.alias_name, "AliasArn": alias.arn, "KeyId": alias.key_id}


def _not_found(
    ctx: CallContext, services: Services, alias_name: str
) -> ForbiddenAliasNotFoundError:
    return ForbiddenAliasNotFoundError(
        f"The alias {shown_value(alias_name)} is not found in account {ctx.account_id} in "
        f"region {services.region}. Check the name with ListAliases."
    )


def _changed_meanwhile(alias_name: str) -> RejectedStateModifiedFailedError:
    return RejectedStateModifiedFailedError(
        f"The alias {shown_value(alias_name)} or its key changed during the request. Call "
        "ListAliases and retry."
    )


def _refuse_pending_deletion(key_id: str, state: KeyState | None, action: str) -> None:
    if state is KeyState.PENDING_DELETION:
        raise RejectedStateModifiedFailedError(
            f"Key {key_id} is pending deletion, so {action} cannot point an alias to it. "
            "Call CancelKeyDeletion first, or choose another key."
        )


async def _authorize_alias(services: Services, ctx: CallContext, alias_name: str) -> None:
    """Check the request's permission on the alias ARN, which needs no store read."""
    permission = next(
        p.action
        for p in authorization_for(ctx.action).permissions
        if p.resource is ResourceKind.ALIAS
    )
    resource = resource_arn(
        ResourceKind.ALIAS,
        region=services.region,
        account_id=ctx.account_id,
        resource_id=alias_name,
    )
    await authorize(services, ctx, permission, resource=resource, owner=ctx.account_id)


def _key_reference(params: Params) -> str:
    return params.required_str("KeyId", max_length=MAX_KEY_REFERENCE_LENGTH)


async def _target_key(services: Services, ctx: CallContext, reference: str) -> KeyContext:
    """Find the key that an alias is to point to (``KeyId``): a key of the caller's account."""
    if reference.startswith("acs:") and not is_alias_arn(reference):
        try:
            account_id = parse_key_arn(reference).account_id
        except ValidationError:
            account_id = ctx.account_id  # find_key_by_reference names the error.
        if account_id != ctx.account_id:
            raise InvalidParameterError(
                f"The parameter KeyId names a key of account {account_id}, but an alias can "
                f"point only to a key of its own account {ctx.account_id}. Pass a key of "
                "that account.",
                parameter="KeyId",
            )
    found = await find_key_by_reference(services, ctx, reference, "KeyId")
    _refuse_pending_deletion(found.key.key_id, found.key.state, ctx.action)
    return found


def _get(store: KmsStore, account_id: str, region: str, alias_name: str) -> Alias | None:
    with store.session(read_only=True) as session:
        return session.aliases.get(account_id, region, alias_name)


async def _existing(services: Services, ctx: CallContext, alias_name: str) -> Alias:
    alias = await services.run(_get, services.store, ctx.account_id, services.region, alias_name)
    if alias is None:
        raise _not_found(ctx, services, alias_name)
    return alias


# --- CreateAlias ------------------------------------------------------------------------


def _insert_within_limit(store: KmsStore, alias: Alias, limit: int) -> None:
    """Insert an alias if its key is not pending deletion and the account is under ``limit``.

    The account row is locked first, so concurrent creators in one account
    count one after another, and the key row next, so the key cannot be
    scheduled for deletion before the alias is written.
    """
    with store.session() as session:
        session.aliases.lock_account(alias.account_id)
        state = session.aliases.lock_key_state(alias.key_id)
        if state is None:
            raise RowNotFoundError(f"key {alias.key_id!r} does not exist")
        _refuse_pending_deletion(alias.key_id, state, "CreateAlias")
        count = session.aliases.count(alias.account_id, alias.region)
        if count >= limit:
            raise RejectedLimitExceededError(
                f"Account {alias.account_id} has {count} aliases in region {alias.region}, "
                f"the maximum of {limit}. Delete unused aliases with DeleteAlias, or point an "
                "existing alias to this key with UpdateAlias."
            )
        session.aliases.create(alias)


async def create_alias(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    alias_name = _alias_name(params)
    ctx.resources.append(alias_name)
    reference = _key_reference(params)
    await _authorize_alias(services, ctx, alias_name)
    found = await _target_key(services, ctx, reference)
    key_id = found.key.key_id
    now = services.clock()
    alias = Alias(
        alias_name=alias_name,
        account_id=ctx.account_id,
        region=services.region,
        key_id=key_id,
        created_at=now,
        updated_at=now,
    )
    try:
        await services.run(_insert_within_limit, services.store, alias, MAX_ALIASES_PER_ACCOUNT)
    except DuplicateRowError:
        raise AliasAlreadyExistsError(
            f"The alias {shown_value(alias_name)} already exists in account {ctx.account_id} "
            f"in region {services.region}. Choose another name, or call UpdateAlias to point "
            "it to another key."
        ) from None
    except (RowNotFoundError, MissingReferenceError):
        # The sweeper deleted the key since it was found.
        raise ForbiddenKeyNotFoundError(
            f"The key {key_id} is not found in account {ctx.account_id} in region "
            f"{services.region}. Check the key ID, or call ListKeys."
        ) from None
    logger.info("alias %s created for key %s (request %s)", alias_name, key_id, ctx.request_id)
    return {}


# --- UpdateAlias ------------------------------------------------------------------------


def _retarget(
    store: KmsStore, account_id: str, region: str, alias_name: str, key_id: str, now: datetime
) -> Alias:
    with store.session() as session:
        # The key row is locked before the alias row, in the order in which
        # deleting a key locks the key and then its aliases.
        state = session.aliases.lock_key_state(key_id)
        if state is None:
            raise MissingReferenceError(f"key {key_id!r} does not exist")
        _refuse_pending_deletion(key_id, state, "UpdateAlias")
        return session.aliases.update_target(account_id, region, alias_name, key_id, now)


async def update_alias(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    alias_name = _alias_name(params)
    ctx.resources.append(alias_name)
    reference = _key_reference(params)
    await _authorize_alias(services, ctx, alias_name)
    previous = await _existing(services, ctx, alias_name)
    found = await _target_key(services, ctx, reference)
    key_id = found.key.key_id
    try:
        await services.run(
            _retarget,
            services.store,
            ctx.account_id,
            services.region,
            alias_name,
            key_id,
            services.clock(),
        )
    except RowNotFoundError:
        raise _not_found(ctx, services, alias_name) from None
    except MissingReferenceError:
        raise ForbiddenKeyNotFoundError(
            f"The key {key_id} is not found in account {ctx.account_id} in region "
            f"{services.region}. Check the key ID, or call ListKeys."
        ) from None
    logger.info(
        "alias %s moved from key %s to key %s (request %s)",
        alias_name,
        previous.key_id,
        key_id,
        ctx.request_id,
    )
    return {}


# --- DeleteAlias ------------------------------------------------------------------------


def _delete(store: KmsStore, alias: Alias) -> None:
    with store.session() as session:
        session.aliases.delete(
            alias.account_id, alias.region, alias.alias_name, expected_key_id=alias.key_id
        )


async def delete_alias(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    alias_name = _alias_name(params)
    ctx.resources.append(alias_name)
    await _authorize_alias(services, ctx, alias_name)
    alias = await _existing(services, ctx, alias_name)
    # The permission on the key the alias points to, in whatever state the key is.
    await find_key_by_reference(services, ctx, alias.key_id, _PARAMETER)
    try:
        await services.run(_delete, services.store, alias)
    except RowNotFoundError:
        raise _not_found(ctx, services, alias_name) from None
    except StaleStateError:
        # UpdateAlias moved it meanwhile: the permission was checked on the old key.
        raise _changed_meanwhile(alias_name) from None
    logger.info("alias %s of key %s deleted (request %s)", alias_name, alias.key_id, ctx.request_id)
    return {}


# --- ListAliases and ListAliasesByKeyId ---------------------------------------------------


def _list(
    store: KmsStore, account_id: str, region: str, page: PageRequest
) -> tuple[list[Alias], int]:
    with store.session(read_only=True) as session:
        result = session.aliases.list(account_id, region, page)
    return list(result.items), result.total_count


def _list_for_key(store: KmsStore, key_id: str, page: PageRequest) -> tuple[list[Alias], int]:
    with store.session(read_only=True) as session:
        result = session.aliases.list_for_key(key_id, page)
    return list(result.items), result.total_count


def _page(page: PageRequest, found: list[Alias], total: int) -> dict[str, Any]:
    return {
        "Aliases": {"Alias": [_listed(alias) for alias in found]},
        "PageNumber": page.number,
        "PageSize": page.size,
        "TotalCount": total,
    }


async def list_aliases(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
    page = _page_request(params, _DEFAULT_PAGE_SIZE)
    found, total = await services.run(_list, services.store, ctx.account_id, services.region, page)
    return _page(page, found, total)


async def list_aliases_by_key_id(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    page = _page_request(params, _DEFAULT_PAGE_SIZE)
    found_key = await find_key(services, ctx, params)
    found, total = await services.run(_list_for_key, services.store, found_key.key.key_id, page)
    return _page(page, found, total)


def alias_handlers(services: Services) -> dict[str, Handler]:
    """Return the alias actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "CreateAlias": create_alias,
            "UpdateAlias": update_alias,
            "DeleteAlias": delete_alias,
            "ListAliases": list_aliases,
            "ListAliasesByKeyId": list_aliases_by_key_id,
        },
    )
