"""Shared instances and the access management quota (hyok extensions, except the quota report).

An instance owner shares an instance with other accounts of this KMS
(``ShareKmsInstance``), lists them (``ListKmsInstanceShares``) and stops
sharing (``UnshareKmsInstance``). A member sees the instance in
ListKmsInstances and GetKmsInstance and creates its own keys in it, but
only the owner may change the instance: its proxy settings, its connection,
its members and its quota.

Unsharing is refused while the member has keys in the instance, so no key is
ever left in an instance that its account can no longer see.

``GetKmsInstanceQuotaInfos`` (an Alibaba Cloud action) reports the access
management quota, resource type ``share``: the distinct foreign accounts
that key policies in the instance grant (see
:mod:`hyok.kms.domain.share_quota`). ``UpdateKmsInstanceShareQuota`` sets it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from hyok.kms.api.actions._parameters import instance_id_parameter
from hyok.kms.api.actions._services import Action, Services
from hyok.kms.api.app import CallContext
from hyok.kms.api.errors import (
    DeleteConflictShareKeyError,
    ForbiddenInstanceNotFoundError,
    ForbiddenNoPermissionError,
    ForbiddenResourceNotFoundError,
    InvalidParameterError,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import Instance
from hyok.kms.domain.share_quota import MAX_SHARE_QUOTA
from hyok.kms.store import MissingReferenceError
from hyok.kms.store.repositories import StoreSession

__all__ = [
    "QUOTA_PARAMETER",
    "SHARE_RESOURCE_TYPE",
    "share_quota_parameter",
    "sharing_actions",
    "visible_instance",
]

logger = logging.getLogger("hyok.kms.api.instances")

SHARE_RESOURCE_TYPE: Final = "share"
"""The ``ResourceType`` of the access management quota in GetKmsInstanceQuotaInfos."""
QUOTA_PARAMETER: Final = "ShareQuota"
"""The parameter of CreateKmsInstance and UpdateKmsInstanceShareQuota that sets the quota."""
_ACCOUNT_PARAMETER: Final = "AccountId"
_ACCOUNT_ID_LENGTHS: Final = (12, 16)


# --- Parameters -------------------------------------------------------------------


def share_quota_parameter(params: Params) -> int | None:
    """Return the ``ShareQuota`` parameter (0 to 1,000 foreign accounts), or None when absent."""
    if QUOTA_PARAMETER not in params:
        return None
    return _required_quota(params)


def _required_quota(params: Params) -> int:
    return params.int_in_range(QUOTA_PARAMETER, 0, MAX_SHARE_QUOTA)


def _member_account(params: Params) -> str:
    low, high = _ACCOUNT_ID_LENGTHS
    value = params.required_str(_ACCOUNT_PARAMETER, max_length=high)
    if not (low <= len(value) <= high and value.isascii() and value.isdigit()):
        raise InvalidParameterError(
            f"The parameter {_ACCOUNT_PARAMETER} value {shown_value(value)} is not an account "
            f"ID. Pass the {low} to {high} digit ID of the account to share the instance with.",
            parameter=_ACCOUNT_PARAMETER,
        )
    return value


# --- Who may see and change an instance -----------------------------------------------


def _not_found(ctx: CallContext, services: Services, instance_id: str) -> Exception:
    return ForbiddenInstanceNotFoundError(
        f"The instance {instance_id} is not found in account {ctx.account_id} in region "
        f"{services.region}, and is not shared with it. Check the instance ID, or call "
        "ListKmsInstances."
    )


def visible_instance(
    session: StoreSession,
    ctx: CallContext,
    services: Services,
    instance_id: str,
    *,
    owner_only: bool,
) -> Instance:
    """Return an instance that the caller's account owns or that is shared with it.

    With ``owner_only``, a member gets Forbidden.NoPermission, because only
    the owner may change an instance. An instance that the account can
    neither own nor see, or of another region, is Forbidden.DKMSInstanceNotFound.
    """
    instance = session.instances.get(instance_id)
    if instance is None or instance.region != services.region:
        raise _not_found(ctx, services, instance_id)
    if instance.account_id == ctx.account_id:
        return instance
    if not session.sharing.is_member(instance_id, ctx.account_id):
        raise _not_found(ctx, services, instance_id)
    if owner_only:
        raise ForbiddenNoPermissionError(
            f"The instance {instance_id} belongs to account {instance.account_id} and is shared "
            f"with account {ctx.account_id}, so {ctx.action} is refused: only the owner account "
            "may change an instance, its members or its quota. Ask the owner."
        )
    return instance


# --- Store work (blocking, run in the executor) -------------------------------------


def _share(services: Services, ctx: CallContext, instance_id: str, account_id: str) -> bool:
    with services.store.session() as session:
        visible_instance(session, ctx, services, instance_id, owner_only=True)
        if session.accounts.get(account_id) is None:
            raise InvalidParameterError(
                f"The account {account_id} in {_ACCOUNT_PARAMETER} is not an account of this "
                "KMS. Check the account ID.",
                parameter=_ACCOUNT_PARAMETER,
            )
        try:
            return session.sharing.add_member(instance_id, account_id, services.clock())
        except MissingReferenceError:
            # The instance or account was deleted after the reads above.
            raise _not_found(ctx, services, instance_id) from None


def _unshare(services: Services, ctx: CallContext, instance_id: str, account_id: str) -> None:
    with services.store.session() as session:
        # The lock orders this change after any CreateKey of the member in progress.
        session.sharing.lock_instance(instance_id)
        visible_instance(session, ctx, services, instance_id, owner_only=True)
        if not session.sharing.is_member(instance_id, account_id):
            raise ForbiddenResourceNotFoundError(
                f"The instance {instance_id} is not shared with account {account_id}. Call "
                "ListKmsInstanceShares to see its members."
            )
        key_count = session.sharing.count_account_keys(instance_id, account_id)
        if key_count:
            raise DeleteConflictShareKeyError(
                f"Account {account_id} has {key_count} key(s) in instance {instance_id}, so the "
                "instance stays shared with it: the keys would be left in an instance that "
                "their account cannot see. The member must delete its keys first."
            )
        session.sharing.remove_member(instance_id, account_id)


def _members(services: Services, ctx: CallContext, instance_id: str) -> list[dict[str, str]]:
    with services.store.session(read_only=True) as session:
        visible_instance(session, ctx, services, instance_id, owner_only=True)
        return [
            {
                "AccountId": member.account_id,
                "ShareTime": member.shared_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "KeyNum": str(session.sharing.count_account_keys(instance_id, member.account_id)),
            }
            for member in session.sharing.members(instance_id)
        ]


def _quota_infos(services: Services, ctx: CallContext, instance_id: str) -> tuple[int, int]:
    with services.store.session(read_only=True) as session:
        visible_instance(session, ctx, services, instance_id, owner_only=False)
        usage = session.sharing.usage(instance_id, services.clock())
        return usage.quota, usage.used


def _set_quota(services: Services, ctx: CallContext, instance_id: str, quota: int) -> int:
    with services.store.session() as session:
        session.sharing.lock_instance(instance_id)
        visible_instance(session, ctx, services, instance_id, owner_only=True)
        session.sharing.set_quota(instance_id, quota)
        return session.sharing.usage(instance_id, services.clock()).used


# --- Actions ------------------------------------------------------------------------


async def share_kms_instance(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "KmsInstanceId")
    account_id = _member_account(params)
    if account_id == ctx.account_id:
        raise InvalidParameterError(
            f"The parameter {_ACCOUNT_PARAMETER} is the owner's own account {account_id}. Pass "
            "the account of another tenant of this KMS.",
            parameter=_ACCOUNT_PARAMETER,
        )
    added = await services.run(_share, services, ctx, instance_id, account_id)
    if added:
        logger.info(
            "instance %s of account %s shared with account %s (request %s)",
            instance_id,
            ctx.account_id,
            account_id,
            ctx.request_id,
        )
    return {}


async def unshare_kms_instance(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "KmsInstanceId")
    account_id = _member_account(params)
    await services.run(_unshare, services, ctx, instance_id, account_id)
    logger.info(
        "instance %s of account %s no longer shared with account %s (request %s)",
        instance_id,
        ctx.account_id,
        account_id,
        ctx.request_id,
    )
    return {}


async def list_kms_instance_shares(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "KmsInstanceId")
    members = await services.run(_members, services, ctx, instance_id)
    return {"KmsInstanceId": instance_id, "Shares": {"Share": members}, "TotalCount": len(members)}


async def get_kms_instance_quota_infos(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "KmsInstanceId")
    resource_type = params.optional_str("ResourceType", max_length=32)
    if resource_type is not None and resource_type != SHARE_RESOURCE_TYPE:
        raise InvalidParameterError(
            f"The parameter ResourceType value {shown_value(resource_type)} is not a quota that "
            f"hyok keeps. Pass {SHARE_RESOURCE_TYPE} (the access management quota) or leave "
            "ResourceType out.",
            parameter="ResourceType",
        )
    quota, used = await services.run(_quota_infos, services, ctx, instance_id)
    return {
        "KmsInstanceId": instance_id,
        "KmsInstanceQuotaInfos": [
            {"ResourceType": SHARE_RESOURCE_TYPE, "ResourceQuota": quota, "UsedQuantity": used}
        ],
    }


async def update_kms_instance_share_quota(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    instance_id = instance_id_parameter(params, "KmsInstanceId")
    quota = _required_quota(params)
    used = await services.run(_set_quota, services, ctx, instance_id, quota)
    logger.info(
        "access management quota of instance %s set to %d, %d in use (request %s)",
        instance_id,
        quota,
        used,
        ctx.request_id,
    )
    return {}


def sharing_actions() -> dict[str, Action]:
    """Return the sharing and quota actions by name, for the instance handlers to bind."""
    return {
        "ShareKmsInstance": share_kms_instance,
        "UnshareKmsInstance": unshare_kms_instance,
        "ListKmsInstanceShares": list_kms_instance_shares,
        "GetKmsInstanceQuotaInfos": get_kms_instance_quota_infos,
        "UpdateKmsInstanceShareQuota": update_kms_instance_share_quota,
    }
