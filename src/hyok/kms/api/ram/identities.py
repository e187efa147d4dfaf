"""The RAM API (2015-05-01) handlers: users, AccessKeys, roles and custom policies.

The login profile handlers live in :mod:`hyok.kms.api.ram.login_profiles`.

Each handler reads its parameters, calls :class:`~hyok.kms.ram.RamService`
in a worker thread and returns the fields that ``alibabacloud-ram20150501``
parses. The actions that read (GetUser, ListUsers, ListAccessKeys, GetRole,
ListRoles, GetPolicy, ListPoliciesForUser) are open to every identity that
an identity policy allows (``require_permission``), and the actions that
change identities to the account root only (``require_root``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from hyok.kms.api.errors import InvalidParameterError
from hyok.kms.api.params import Params
from hyok.kms.api.ram._wire import Runner, require_permission, require_root, wire_date
from hyok.kms.api.ram.login_profiles import login_profile_handlers
from hyok.kms.domain import AccessKey
from hyok.kms.domain.ram import (
    DEFAULT_MAX_SESSION_DURATION,
    MAX_ROLE_SESSION_DURATION,
    MIN_ROLE_SESSION_DURATION,
    AttachedPolicy,
    RamPolicy,
    RamRole,
    RamUser,
)
from hyok.kms.ram import CUSTOM_POLICY_TYPE, LoginProfileService, RamService
from hyok.kms.ram.errors import invalid_parameter
from hyok.kms.ram.permissions import ram_arn

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext

__all__ = ["ram_handlers"]

# The longest raw value read before the service applies the parameter's own rule.
_MAX_RAW: Final = 8_192
_MAX_DOCUMENT: Final = 65_536
_DEFAULT_VERSION: Final = "v1"
_MAX_ITEMS_LIMIT: Final = 1_000
_DEFAULT_MAX_ITEMS: Final = 100

RamHandler = Callable[["CallContext", Params], Awaitable[dict[str, Any]]]


def _text(params: Params, name: str, *, required: bool = True, limit: int = _MAX_RAW) -> str:
    if required:
        return params.required_str(name, max_length=limit, min_length=0)
    return params.optional_str(name, max_length=limit) or ""


def _user_arn(ctx: CallContext, user_name: str) -> str:
    return ram_arn(ctx.account_id, "user", user_name)


def _user(user: RamUser, *, detailed: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "UserId": user.user_id,
        "UserName": user.user_name,
        "DisplayName": user.display_name,
        "Comments": user.comments,
        "CreateDate": wire_date(user.created_at),
    }
    if detailed:
        fields["UpdateDate"] = wire_date(user.created_at)
    return fields


def _access_key(access_key: AccessKey) -> dict[str, Any]:
    return {
        "AccessKeyId": access_key.access_key_id,
        "Status": str(access_key.status),
        "CreateDate": wire_date(access_key.created_at),
    }


def _role(role: RamRole, *, detailed: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "RoleId": role.role_id,
        "RoleName": role.role_name,
        "Arn": role.arn,
        "Description": role.description,
        "AssumeRolePolicyDocument": role.trust_policy,
        "MaxSessionDuration": role.max_session_duration,
        "CreateDate": wire_date(role.created_at),
    }
    if detailed:
        fields["UpdateDate"] = wire_date(role.created_at)
        fields["IsServiceLinkedRole"] = False
    return fields


def _policy(policy: RamPolicy) -> dict[str, Any]:
    return {
        "PolicyName": policy.policy_name,
        "PolicyType": CUSTOM_POLICY_TYPE,
        "Description": policy.description,
        "DefaultVersion": _DEFAULT_VERSION,
        "CreateDate": wire_date(policy.created_at),
    }


def _attached(item: AttachedPolicy) -> dict[str, Any]:
    return {
        "PolicyName": item.policy.policy_name,
        "PolicyType": CUSTOM_POLICY_TYPE,
        "Description": item.policy.description,
        "DefaultVersion": _DEFAULT_VERSION,
        "AttachDate": wire_date(item.attached_at),
    }


def _marker(params: Params, action: str) -> str | None:
    raw = params.optional_str("Marker", max_length=512)
    if not raw:
        return None
    try:
        return base64.b64decode(raw.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (UnicodeError, binascii.Error, ValueError):
        raise InvalidParameterError(
            f"the parameter Marker is not a marker that {action} returned: pass the Marker of "
            "the previous response unchanged",
            parameter="Marker",
        ) from None


def _listing(
    wrapper: str, item: str, entries: list[dict[str, Any]], truncated: bool, last_name: str
) -> dict[str, Any]:
    """Build a list response in RAM's shape, with the Marker of the next page when truncated."""
    result: dict[str, Any] = {"IsTruncated": truncated, wrapper: {item: entries}}
    if truncated:
        result["Marker"] = base64.urlsafe_b64encode(last_name.encode("utf-8")).decode("ascii")
    return result


def _max_session_duration(params: Params) -> int:
    raw = params.optional_str("MaxSessionDuration", max_length=32)
    if raw is None:
        return DEFAULT_MAX_SESSION_DURATION
    if not raw.isdigit() or not MIN_ROLE_SESSION_DURATION <= int(raw) <= MAX_ROLE_SESSION_DURATION:
        raise invalid_parameter(
            "InvalidParameter.MaxSessionDuration",
            f"the parameter MaxSessionDuration {raw!r} is out of range: use "
            f"{MIN_ROLE_SESSION_DURATION} to {MAX_ROLE_SESSION_DURATION} seconds",
        )
    return int(raw)


def _user_handlers(service: RamService, run: Runner) -> dict[str, RamHandler]:

    async def create_user(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "CreateUser")
        user = await run(
            _create_user,
            ctx.account_id,
            _text(params, "UserName"),
            _text(params, "DisplayName", required=False),
            _text(params, "Comments", required=False),
        )
        return {"User": _user(user)}

    def _create_user(account_id: str, name: str, display: str, comments: str) -> RamUser:
        return service.create_user(account_id, name, display_name=display, comments=comments)

    async def get_user(ctx: CallContext, params: Params) -> dict[str, Any]:
        user_name = _text(params, "UserName")
        await require_permission(ctx, service, run, "GetUser", _user_arn(ctx, user_name))
        user = await run(service.get_user, ctx.account_id, user_name)
        return {"User": _user(user, detailed=True)}

    async def list_users(ctx: CallContext, params: Params) -> dict[str, Any]:
        await require_permission(ctx, service, run, "ListUsers", _user_arn(ctx, "*"))
        limit = params.int_in_range("MaxItems", 1, _MAX_ITEMS_LIMIT, default=_DEFAULT_MAX_ITEMS)
        after = _marker(params, "ListUsers")
        users, truncated = await run(_list_users, ctx.account_id, after, limit)
        entries = [_user(user, detailed=True) for user in users]
        last = users[-1].user_name if users else ""
        return _listing("Users", "User", entries, truncated, last)

    def _list_users(account_id: str, after: str | None, limit: int) -> tuple[list[RamUser], bool]:
        return service.list_users(account_id, after=after, limit=limit)

    async def delete_user(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "DeleteUser")
        await run(service.delete_user, ctx.account_id, _text(params, "UserName"))
        return {}

    async def create_access_key(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "CreateAccessKey")
        access_key = await run(service.create_access_key, ctx.account_id, _text(params, "UserName"))
        fields = _access_key(access_key)
        fields["AccessKeySecret"] = access_key.secret.reveal()
        return {"AccessKey": fields}

    async def list_access_keys(ctx: CallContext, params: Params) -> dict[str, Any]:
        user_name = _text(params, "UserName")
        await require_permission(ctx, service, run, "ListAccessKeys", _user_arn(ctx, user_name))
        found = await run(service.list_access_keys, ctx.account_id, user_name)
        return {"AccessKeys": {"AccessKey": [_access_key(item) for item in found]}}

    async def delete_access_key(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "DeleteAccessKey")
        await run(
            service.delete_access_key,
            ctx.account_id,
            _text(params, "UserName"),
            _text(params, "UserAccessKeyId", limit=128),
        )
        return {}

    return {
        "CreateUser": create_user,
        "GetUser": get_user,
        "ListUsers": list_users,
        "DeleteUser": delete_user,
        "CreateAccessKey": create_access_key,
        "ListAccessKeys": list_access_keys,
        "DeleteAccessKey": delete_access_key,
    }


def _role_handlers(service: RamService, run: Runner) -> dict[str, RamHandler]:
    async def create_role(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "CreateRole")
        role = await run(
            _create_role,
            ctx.account_id,
            _text(params, "RoleName"),
            _text(params, "AssumeRolePolicyDocument", limit=_MAX_DOCUMENT),
            _text(params, "Description", required=False),
            _max_session_duration(params),
        )
        return {"Role": _role(role)}

    def _create_role(
        account_id: str, name: str, trust_policy: str, description: str, duration: int
    ) -> RamRole:
        return service.create_role(
            account_id,
            name,
            trust_policy,
            description=description,
            max_session_duration=duration,
        )

    async def get_role(ctx: CallContext, params: Params) -> dict[str, Any]:
        role_name = _text(params, "RoleName")
        resource = ram_arn(ctx.account_id, "role", role_name)
        await require_permission(ctx, service, run, "GetRole", resource)
        role = await run(service.get_role, ctx.account_id, role_name)
        return {"Role": _role(role, detailed=True)}

    async def list_roles(ctx: CallContext, params: Params) -> dict[str, Any]:
        resource = ram_arn(ctx.account_id, "role", "*")
        await require_permission(ctx, service, run, "ListRoles", resource)
        if any(name == "Tag" or name.startswith("Tag.") for name in params.names()):
            raise InvalidParameterError(
                "the parameter Tag filters roles by tag, and hyok's RAM roles have no tags: "
                "call ListRoles without Tag",
                parameter="Tag",
            )
        limit = params.int_in_range("MaxItems", 1, _MAX_ITEMS_LIMIT, default=_DEFAULT_MAX_ITEMS)
        after = _marker(params, "ListRoles")
        roles, truncated = await run(_list_roles, ctx.account_id, after, limit)
        entries = [_role(role, detailed=True) for role in roles]
        last = roles[-1].role_name if roles else ""
        return _listing("Roles", "Role", entries, truncated, last)

    def _list_roles(account_id: str, after: str | None, limit: int) -> tuple[list[RamRole], bool]:
        return service.list_roles(account_id, after=after, limit=limit)

    async def delete_role(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "DeleteRole")
        await run(service.delete_role, ctx.account_id, _text(params, "RoleName"))
        return {}

    return {
        "CreateRole": create_role,
        "GetRole": get_role,
        "ListRoles": list_roles,
        "DeleteRole": delete_role,
    }


def _policy_handlers(service: RamService, run: Runner) -> dict[str, RamHandler]:
    async def create_policy(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "CreatePolicy")
        policy = await run(
            _create_policy,
            ctx.account_id,
            _text(params, "PolicyName"),
            _text(params, "PolicyDocument", limit=_MAX_DOCUMENT),
            _text(params, "Description", required=False),
        )
        return {"Policy": _policy(policy)}

    def _create_policy(account_id: str, name: str, document: str, description: str) -> RamPolicy:
        return service.create_policy(account_id, name, document, description=description)

    async def get_policy(ctx: CallContext, params: Params) -> dict[str, Any]:
        policy_name = _text(params, "PolicyName")
        resource = ram_arn(ctx.account_id, "policy", policy_name)
        await require_permission(ctx, service, run, "GetPolicy", resource)
        policy, attachments = await run(
            service.get_policy, ctx.account_id, policy_name, _text(params, "PolicyType")
        )
        fields = _policy(policy)
        fields["PolicyDocument"] = policy.document
        fields["UpdateDate"] = wire_date(policy.created_at)
        fields["AttachmentCount"] = attachments
        return {
            "Policy": fields,
            "DefaultPolicyVersion": {
                "VersionId": _DEFAULT_VERSION,
                "IsDefaultVersion": True,
                "PolicyDocument": policy.document,
                "CreateDate": wire_date(policy.created_at),
            },
        }

    async def delete_policy(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "DeletePolicy")
        await run(service.delete_policy, ctx.account_id, _text(params, "PolicyName"))
        return {}

    def attachment(action: str, kind: str, attach: bool) -> RamHandler:
        parameter = "UserName" if kind == "user" else "RoleName"
        change = service.attach_policy if attach else service.detach_policy

        async def handle(ctx: CallContext, params: Params) -> dict[str, Any]:
            require_root(ctx, action)
            await run(
                change,
                ctx.account_id,
                kind,
                _text(params, parameter),
                _text(params, "PolicyType"),
                _text(params, "PolicyName"),
            )
            return {}

        return handle

    async def list_policies_for_user(ctx: CallContext, params: Params) -> dict[str, Any]:
        user_name = _text(params, "UserName")
        resource = _user_arn(ctx, user_name)
        await require_permission(ctx, service, run, "ListPoliciesForUser", resource)
        attached = await run(service.list_policies_for_user, ctx.account_id, user_name)
        return {"Policies": {"Policy": [_attached(item) for item in attached]}}

    return {
        "CreatePolicy": create_policy,
        "GetPolicy": get_policy,
        "DeletePolicy": delete_policy,
        "AttachPolicyToUser": attachment("AttachPolicyToUser", "user", attach=True),
        "AttachPolicyToRole": attachment("AttachPolicyToRole", "role", attach=True),
        "DetachPolicyFromUser": attachment("DetachPolicyFromUser", "user", attach=False),
        "DetachPolicyFromRole": attachment("DetachPolicyFromRole", "role", attach=False),
        "ListPoliciesForUser": list_policies_for_user,
    }


def ram_handlers(service: RamService, run: Runner) -> dict[str, RamHandler]:
    """Return the RAM action handlers, by action name, bound to ``service``.

    The login profile actions use a :class:`LoginProfileService` on the same
    store and clock.
    """
    login_profiles = LoginProfileService(service.store, clock=service.clock)
    return {
        **_user_handlers(service, run),
        **login_profile_handlers(login_profiles, service, run),
        **_role_handlers(service, run),
        **_policy_handlers(service, run),
    }
