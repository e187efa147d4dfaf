"""Key lifecycle actions: description, deletion protection, scheduled deletion and its cancellation.

Each action follows the key-state matrix of the KMS reference: a
PendingDeletion key keeps its description and protection until the deletion
is cancelled, and only a PendingDeletion key can have its deletion
cancelled. ScheduleKeyDeletion sets ``DeleteDate`` to now plus
``PendingWindowInDays`` (7 to 366); :mod:`hyok.kms.sweeper` deletes the key's
metadata once that date passes. Deleting a KMS key never touches the key in
the key manager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from hyok.common.errors import ValidationError
from hyok.kms.api.actions._lookup import KeyContext, find_key, find_key_by_reference
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    InvalidParameterError,
    MissingParameterError,
    RejectedPendingDeletionError,
    RejectedStateModifiedFailedError,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import MAX_DESCRIPTION_LENGTH, Key, KeyState
from hyok.kms.store import KmsStore, StaleStateError

__all__ = ["lifecycle_handlers"]

logger = logging.getLogger("hyok.kms.api")

MIN_PENDING_WINDOW_DAYS: Final = 7
MAX_PENDING_WINDOW_DAYS: Final = 366
MAX_PROTECTION_DESCRIPTION_LENGTH: Final = 1024
_MAX_ARN_LENGTH: Final = 256


def _not_pending_deletion(key: Key, action: str) -> None:
    if key.state is KeyState.PENDING_DELETION:
        raise RejectedPendingDeletionError(
            f"Key {key.key_id} is pending deletion, so {action} is rejected. Call "
            "CancelKeyDeletion first if the key must stay."
        )


async def _change(
    services: Services,
    found: KeyContext,
    change: Callable[[KmsStore], Key],
) -> Key:
    """Run a store change of the found key, and forget it in the key cache whatever happens."""
    try:
        return await services.run(change, services.store)
    except StaleStateError:
        raise RejectedStateModifiedFailedError(
            f"Key {found.key.key_id} changed state during the request. Call DescribeKey and "
            "retry."
        ) from None
    finally:
        services.keys.forget_key(found.key.key_id)


# --- UpdateKeyDescription ---------------------------------------------------------------


async def update_key_description(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    if "Description" not in params:
        raise MissingParameterError("Description")
    description = params.optional_str("Description", max_length=MAX_DESCRIPTION_LENGTH) or ""
    found = await find_key(services, ctx, params)
    _not_pending_deletion(found.key, "UpdateKeyDescription")
    key_id = found.key.key_id

    def change(store: KmsStore) -> Key:
        with store.session() as session:
            return session.keys.update_description(key_id, description)

    await _change(services, found, change)
    return {}


# --- SetDeletionProtection --------------------------------------------------------------


async def set_deletion_protection(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    arn = params.required_str("ProtectedResourceArn", max_length=_MAX_ARN_LENGTH)
    if not arn.startswith("acs:"):
        raise InvalidParameterError(
            "The parameter ProtectedResourceArn must be a key ARN, such as "
            "acs:kms:<region>:<account>:key/<key ID>. Call DescribeKey for the key's Arn.",
            parameter="ProtectedResourceArn",
        )
    if "EnableDeletionProtection" not in params:
        raise MissingParameterError("EnableDeletionProtection")
    enable = params.boolean("EnableDeletionProtection")
    description = (
        params.optional_str(
            "DeletionProtectionDescription", max_length=MAX_PROTECTION_DESCRIPTION_LENGTH
        )
        or ""
    )
    if description and not enable:
        raise InvalidParameterError(
            "The parameter DeletionProtectionDescription is only for enabling deletion "
            "protection. Leave it out when EnableDeletionProtection is false.",
            parameter="DeletionProtectionDescription",
        )
    found = await find_key_by_reference(services, ctx, arn, "ProtectedResourceArn")
    key = found.key
    if key.state is KeyState.PENDING_DELETION:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} is pending deletion, so its deletion protection cannot change. "
            "Call CancelKeyDeletion first."
        )

    def change(store: KmsStore) -> Key:
        with store.session() as session:
            return session.keys.set_deletion_protection(key.key_id, enable, description)

    await _change(services, found, change)
    logger.info(
        "key %s deletion protection %s (request %s)",
        key.key_id,
        "enabled" if enable else "disabled",
        ctx.request_id,
    )
    return {}


# --- ScheduleKeyDeletion / CancelKeyDeletion --------------------------------------------


async def schedule_key_deletion(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    if "PendingWindowInDays" not in params:
        raise MissingParameterError("PendingWindowInDays")
    days = params.int_in_range(
        "PendingWindowInDays", MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS
    )
    found = await find_key(services, ctx, params)
    key = found.key
    if key.state is KeyState.PENDING_DELETION:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} is already pending deletion, on {key.delete_date:%Y-%m-%d}. Call "
            "CancelKeyDeletion to keep it, then schedule again for another window."
        )
    if key.deletion_protection:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} has deletion protection, so it cannot be scheduled for "
            "deletion. Lift it first: call SetDeletionProtection with "
            "EnableDeletionProtection=false and ProtectedResourceArn set to the key's ARN."
        )
    delete_date = services.clock() + timedelta(days=days)

    def change(store: KmsStore) -> Key:
        with store.session() as session:
            return session.keys.update_state(
                key.key_id,
                KeyState.PENDING_DELETION,
                delete_date=delete_date,
                expected=(KeyState.ENABLED, KeyState.DISABLED),
            )

    try:
        await _change(services, found, change)
    except ValidationError as exc:
        # Deletion protection turned on by another request since the key was read.
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} cannot be scheduled for deletion: {exc.message}. Call "
            "DescribeKey and retry."
        ) from None
    logger.info(
        "key %s scheduled for deletion on %s (request %s)",
        key.key_id,
        delete_date.isoformat(),
        ctx.request_id,
    )
    return {}


async def cancel_key_deletion(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    key = found.key
    if key.state is not KeyState.PENDING_DELETION:
        raise RejectedStateModifiedFailedError(
            f"Key {key.key_id} is {key.state}, not pending deletion, so there is no deletion "
            "to cancel."
        )

    def change(store: KmsStore) -> Key:
        with store.session() as session:
            return session.keys.update_state(
                key.key_id, KeyState.ENABLED, expected=(KeyState.PENDING_DELETION,)
            )

    await _change(services, found, change)
    logger.info("key %s deletion cancelled (request %s)", key.key_id, ctx.request_id)
    return {}


def lifecycle_handlers(services: Services) -> dict[str, Handler]:
    """Return the lifecycle actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "UpdateKeyDescription": update_key_description,
            "SetDeletionProtection": set_deletion_protection,
            "ScheduleKeyDeletion": schedule_key_deletion,
            "CancelKeyDeletion": cancel_key_deletion,
        },
    )
