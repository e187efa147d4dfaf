"""The RAM API (2015-05-01) login profile handlers: console passwords of RAM users.

``CreateLoginProfile``, ``GetLoginProfile``, ``UpdateLoginProfile`` and
``DeleteLoginProfile`` take ``UserName``, ``Password``,
``PasswordResetRequired`` and ``MFABindRequired``, and return the fields that
``alibabacloud-ram20150501`` parses (``LoginProfile`` with ``UserName``,
``PasswordResetRequired``, ``MFABindRequired`` and ``CreateDate``). No
response and no error contains the password. Only the account root may
create, change or delete a login profile (see ``require_root``), and
identity policies decide GetLoginProfile for others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from hyok.common.secrets import Secret
from hyok.kms.api.params import Params
from hyok.kms.api.ram._wire import Runner, require_permission, require_root, wire_date
from hyok.kms.domain.login_profiles import LoginProfile
from hyok.kms.ram.identities import RamService
from hyok.kms.ram.login_profiles import LoginProfileService
from hyok.kms.ram.permissions import ram_arn

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext

__all__ = ["login_profile_handlers"]

# The maximum length of a raw value before the service applies its own rule.
# The minimum is 0, so that a short password gets the password policy's error,
# which never shows the value.
_MAX_RAW: Final = 8_192

RamHandler = Callable[["CallContext", Params], Awaitable[dict[str, Any]]]


def _user_name(params: Params) -> str:
    return params.required_str("UserName", max_length=_MAX_RAW, min_length=0)


def _password(params: Params, *, required: bool) -> Secret | None:
    if required:
        return Secret(params.required_str("Password", max_length=_MAX_RAW, min_length=0))
    value = params.optional_str("Password", max_length=_MAX_RAW)
    return None if value is None else Secret(value)


def _optional_bool(params: Params, name: str) -> bool | None:
    return params.boolean(name) if name in params else None


def _login_profile(profile: LoginProfile) -> dict[str, Any]:
    return {
        "UserName": profile.user_name,
        "PasswordResetRequired": profile.password_reset_required,
        "MFABindRequired": profile.mfa_bind_required,
        "CreateDate": wire_date(profile.created_at),
    }


def login_profile_handlers(
    service: LoginProfileService, identities: RamService, run: Runner
) -> dict[str, RamHandler]:
    """Return the login profile action handlers, by action name, bound to ``service``.

    ``identities`` checks the identity policies of callers other than the account root.
    """

    async def create_login_profile(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "CreateLoginProfile")
        profile = await run(
            _create,
            ctx.account_id,
            _user_name(params),
            _password(params, required=True),
            params.boolean("PasswordResetRequired", default=False),
            params.boolean("MFABindRequired", default=False),
        )
        return {"LoginProfile": _login_profile(profile)}

    def _create(
        account_id: str, user_name: str, password: Secret, reset: bool, mfa: bool
    ) -> LoginProfile:
        return service.create_login_profile(
            account_id, user_name, password, password_reset_required=reset, mfa_bind_required=mfa
        )

    async def get_login_profile(ctx: CallContext, params: Params) -> dict[str, Any]:
        user_name = _user_name(params)
        resource = ram_arn(ctx.account_id, "user", user_name)
        await require_permission(ctx, identities, run, "GetLoginProfile", resource)
        profile = await run(service.get_login_profile, ctx.account_id, user_name)
        return {"LoginProfile": _login_profile(profile)}

    async def update_login_profile(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "UpdateLoginProfile")
        await run(
            _update,
            ctx.account_id,
            _user_name(params),
            _password(params, required=False),
            _optional_bool(params, "PasswordResetRequired"),
            _optional_bool(params, "MFABindRequired"),
        )
        return {}

    def _update(
        account_id: str,
        user_name: str,
        password: Secret | None,
        reset: bool | None,
        mfa: bool | None,
    ) -> LoginProfile:
        return service.update_login_profile(
            account_id,
            user_name,
            password=password,
            password_reset_required=reset,
            mfa_bind_required=mfa,
        )

    async def delete_login_profile(ctx: CallContext, params: Params) -> dict[str, Any]:
        require_root(ctx, "DeleteLoginProfile")
        await run(service.delete_login_profile, ctx.account_id, _user_name(params))
        return {}

    return {
        "CreateLoginProfile": create_login_profile,
        "GetLoginProfile": get_login_profile,
        "UpdateLoginProfile": update_login_profile,
        "DeleteLoginProfile": delete_login_profile,
    }
