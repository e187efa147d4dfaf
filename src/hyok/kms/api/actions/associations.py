"""Key associations (hyok extensions): who uses a key, and what is built on it.

- ``ListKeyAssociations``: ``KeyId``, optional ``Days`` (1 to 3650: only uses
  in the last that many days). Returns the principals and via-services that
  used the key for cryptography, with first use, last use and count, and the
  resources registered with the key.
- ``RegisterKeyAssociation`` / ``RemoveKeyAssociation``: ``KeyId``,
  ``Service`` (1 to 64 lower-case letters, digits, ``.`` and ``-``) and
  ``ResourceId`` (1 to 512 printable characters): an integrating service
  records that one of its resources depends on the key, and removes that
  record when the resource stops using it.

Uses are counted in memory and stored every few seconds; ListKeyAssociations
first stores this node's counts, so it shows every use made through it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final

from hyok.kms.api.actions._lookup import find_key
from hyok.kms.api.actions._services import Services, bind_actions
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import (
    InvalidParameterError,
    RejectedPendingDeletionError,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.domain import KeyState
from hyok.kms.store import KmsStore
from hyok.kms.store.associations import KeyResource, KeyUse
from hyok.kms.usage import flush_usage

__all__ = ["association_handlers"]

_SERVICE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
_RESOURCE_ID: Final = re.compile(r"[\x21-\x7e]{1,512}")
MAX_DAYS: Final = 3650


def _format(when: Any) -> str:
    return str(when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _service(params: Params) -> str:
    value = params.required_str("Service", max_length=64)
    if not _SERVICE.fullmatch(value):
        raise InvalidParameterError(
            f"The parameter Service value {shown_value(value)} is not a service name. Use 1 to 64 "
            "lower-case letters, digits, '.' and '-', such as oss.",
            parameter="Service",
        )
    return value


def _resource_id(params: Params) -> str:
    value = params.required_str("ResourceId", max_length=512)
    if not _RESOURCE_ID.fullmatch(value):
        raise InvalidParameterError(
            f"The parameter ResourceId value {shown_value(value)} is not valid: use 1 to 512 "
            "printable ASCII characters without spaces.",
            parameter="ResourceId",
        )
    return value


async def register_key_association(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    service, resource_id = _service(params), _resource_id(params)
    found = await find_key(services, ctx, params)
    if found.key.state is KeyState.PENDING_DELETION:
        raise RejectedPendingDeletionError(
            f"Key {found.key.key_id} is pending deletion, so no resource can be registered "
            "with it. Call CancelKeyDeletion first if the key must stay."
        )
    resource = KeyResource(service, resource_id, ctx.principal_arn, services.clock())
    key_id = found.key.key_id

    def add(store: KmsStore) -> bool:
        with store.session() as session:
            return session.associations.add_resource(key_id, resource)

    added = await services.run(add, services.store)
    return {"KeyId": key_id, "Registered": "true" if added else "false"}


async def remove_key_association(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    service, resource_id = _service(params), _resource_id(params)
    found = await find_key(services, ctx, params)
    key_id = found.key.key_id

    def remove(store: KmsStore) -> bool:
        with store.session() as session:
            return session.associations.remove_resource(key_id, service, resource_id)

    removed = await services.run(remove, services.store)
    return {"KeyId": key_id, "Removed": "true" if removed else "false"}


def _use(use: KeyUse) -> dict[str, Any]:
    return {
        "Principal": use.principal,
        "ViaService": use.via_service,
        "FirstUsed": _format(use.first_used_at),
        "LastUsed": _format(use.last_used_at),
        "UseCount": use.use_count,
    }


def _resource(resource: KeyResource) -> dict[str, str]:
    return {
        "Service": resource.service,
        "ResourceId": resource.resource_id,
        "RegisteredBy": resource.registered_by,
        "RegisteredAt": _format(resource.registered_at),
    }


async def list_key_associations(
    services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    days = params.int_in_range("Days", 1, MAX_DAYS) if "Days" in params else None
    found = await find_key(services, ctx, params)
    key_id = found.key.key_id
    since = services.clock() - timedelta(days=days) if days is not None else None
    await flush_usage(services)

    def load(store: KmsStore) -> tuple[list[KeyUse], list[KeyResource]]:
        with store.session(read_only=True) as session:
            return (
                session.associations.usage(key_id, since),
                session.associations.resources(key_id),
            )

    uses, resources = await services.run(load, services.store)
    return {
        "KeyId": key_id,
        "Principals": {"Principal": [_use(use) for use in uses]},
        "Resources": {"Resource": [_resource(resource) for resource in resources]},
    }


def association_handlers(services: Services) -> dict[str, Handler]:
    """Return the association actions bound to ``services``."""
    return bind_actions(
        services,
        {
            "RegisterKeyAssociation": register_key_association,
            "RemoveKeyAssociation": remove_key_association,
            "ListKeyAssociations": list_key_associations,
        },
    )
