"""Authorising KMS actions: the caller's identity policies and the key's policy, per request.

Every KMS action has a row in :data:`hyok.kms.domain.kms_actions.KMS_ACTIONS`.
:func:`guard` wraps each action so that permissions on the account (``*``)
and on an instance are checked before the action runs, and so that an
action returns only after it has checked every permission on a key. Key
permissions are checked where the key is found
(:func:`hyok.kms.api.actions._lookup.find_key_by_reference`), because the
key's policy, tags and owner take part in the decision.

The decision itself is :func:`hyok.kms.domain.policy_eval.evaluate`. This
module loads its inputs: identity policies come from
:class:`~hyok.kms.api.actions._identity_policies.IdentityPolicyCache`, and
parsed key policies are kept by their text.
A denial raises ``Forbidden.NoPermission`` with ``AccessDeniedDetail`` and
logs one line with the reason (never a parameter value).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from hyok.kms.api.actions._cache import KeyContext
from hyok.kms.api.actions._parameters import instance_id_parameter
from hyok.kms.api.errors import ForbiddenNoPermissionError, InternalFailureError
from hyok.kms.api.params import Params
from hyok.kms.domain.ids import key_arn
from hyok.kms.domain.kms_actions import (
    Permission,
    ResourceKind,
    authorization_for,
    resource_arn,
)
from hyok.kms.domain.policy_conditions import parse_source_ip
from hyok.kms.domain.policy_document import Effect, PolicyDocument, parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_eval import AccessRequest, evaluate
from hyok.kms.domain.policy_principals import CallerKind

if TYPE_CHECKING:
    from hyok.kms.api.actions._services import Action, Services
    from hyok.kms.api.app import CallContext

__all__ = [
    "authorize",
    "authorize_key",
    "guard",
    "key_permission",
]

logger = logging.getLogger("hyok.kms.access")

_INSTANCE_PARAMETER: Final = "KmsInstanceId"
# Permissions checked before the action runs; the others, on keys and
# aliases, are checked where the action finds them.
_ACCOUNT_LEVEL: Final = frozenset({ResourceKind.ANY, ResourceKind.INSTANCE})


@functools.lru_cache(maxsize=1024)
def _key_policy(text: str) -> tuple[PolicyDocument | None, bool]:
    """Parse a stored key policy, and report whether it has a Deny statement."""
    try:
        document = parse_policy(text, PolicyKind.KEY)
    except PolicyDocumentError:
        # CreateKey and SetKeyPolicy check every document; a policy that no
        # longer parses allows nothing.
        return None, True
    return document, any(statement.effect is Effect.DENY for statement in document.statements)


def key_permission(ctx: CallContext) -> str:
    """The ``kms:`` action that the request's action needs on the key it names."""
    for permission in authorization_for(ctx.action).permissions:
        if permission.resource is ResourceKind.KEY:
            return permission.action
    raise LookupError(f"the action {ctx.action} has no permission on a key")


async def authorize_key(
    services: Services,
    ctx: CallContext,
    found: KeyContext,
    *,
    addressed_by_arn: bool,
    action: str | None = None,
) -> None:
    """Check that the caller may perform ``action`` (the request's own by default) on a key."""
    permission = action or key_permission(ctx)
    key = found.key
    document, has_deny = _key_policy(key.policy)
    if (
        document is not None
        and not has_deny
        and ctx.principal.kind is CallerKind.ROOT
        and ctx.principal.account_id == key.account_id
    ):
        # The common case needs no evaluation: the root of the key's own
        # account is allowed unless a Deny names it, and no Deny exists.
        ctx.authorized.append(permission)
        return
    await authorize(
        services,
        ctx,
        permission,
        resource=key_arn(key.region, key.account_id, key.key_id),
        owner=key.account_id,
        key_policy=document,
        tags=found.tags,
        addressed_by_arn=addressed_by_arn,
    )


async def authorize(
    services: Services,
    ctx: CallContext,
    action: str,
    *,
    resource: str,
    owner: str,
    key_policy: PolicyDocument | None = None,
    tags: Mapping[str, str] | None = None,
    addressed_by_arn: bool = False,
) -> None:
    """Decide one permission check, and raise ``Forbidden.NoPermission`` when it is denied.

    ``key_policy`` is None for a resource that is not a key, and for a key
    whose stored policy no longer parses: such a policy allows nothing, and
    the caller's own account may still use its identity policies.
    """
    identity_policies = await services.access.policies(services, ctx.principal)
    request = AccessRequest(
        action=action,
        resource_arn=resource,
        caller=ctx.principal,
        addressed_by_arn=addressed_by_arn,
        current_time=services.clock(),
        secure_transport=ctx.secure_transport,
        source_ip=parse_source_ip(ctx.source_ip),
    )
    decision = evaluate(
        request,
        identity_policies=identity_policies,
        key_policy=key_policy,
        key_tags=tags or {},
        resource_owner=owner,
    )
    if decision.allowed:
        ctx.authorized.append(action)
        return
    logger.info(
        "kms access denied request_id=%s principal=%s action=%s resource=%s: %s",
        ctx.request_id,
        ctx.principal_arn,
        action,
        resource,
        decision.reason,
    )
    raise ForbiddenNoPermissionError(
        f"{decision.reason}.", access_denied_detail=decision.access_denied_detail(request)
    )


def guard(name: str, action: Action) -> Action:
    """Wrap ``action`` (the KMS action ``name``) with its permission checks.

    Raises LookupError at once when ``name`` has no row in the table, so
    that no action is served without authorisation.
    """
    permissions = authorization_for(name).permissions
    before = tuple(p for p in permissions if p.resource in _ACCOUNT_LEVEL)
    after = frozenset(p.action for p in permissions if p.resource not in _ACCOUNT_LEVEL)

    async def guarded(services: Services, ctx: CallContext, params: Params) -> dict[str, Any]:
        for permission in before:
            await _authorize_account_level(services, ctx, params, permission)
        result = await action(services, ctx, params)
        missing = after.difference(ctx.authorized)
        if missing:
            logger.error(
                "KMS action %s returned without checking %s (request %s)",
                name,
                ", ".join(sorted(missing)),
                ctx.request_id,
            )
            raise InternalFailureError(
                "the KMS failed to authorise the request: retry later, and report the "
                "RequestId if the failure persists"
            )
        return result

    guarded.__name__ = getattr(action, "__name__", name)
    return guarded


async def _authorize_account_level(
    services: Services, ctx: CallContext, params: Params, permission: Permission
) -> None:
    if permission.resource is ResourceKind.INSTANCE:
        instance_id = instance_id_parameter(params, _INSTANCE_PARAMETER)
        resource = resource_arn(
            ResourceKind.INSTANCE,
            region=services.region,
            account_id=ctx.account_id,
            resource_id=instance_id,
        )
    else:
        resource = resource_arn(
            ResourceKind.ANY, region=services.region, account_id=ctx.account_id
        )
    await authorize(services, ctx, permission.action, resource=resource, owner=ctx.account_id)

