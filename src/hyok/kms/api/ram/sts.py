"""The STS API (2015-04-01) handlers: AssumeRole and GetCallerIdentity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from hyok.kms.api.params import Params
from hyok.kms.api.ram._wire import Runner, wire_date
from hyok.kms.domain.policy_conditions import parse_source_ip
from hyok.kms.domain.policy_principals import CallerKind
from hyok.kms.ram import RamService, StsService
from hyok.kms.ram.errors import invalid_parameter

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext

__all__ = ["sts_handlers"]

StsHandler = Callable[["CallContext", Params], Awaitable[dict[str, Any]]]
_MAX_DURATION_DIGITS: Final = 9


def _duration(params: Params) -> int | None:
    raw = params.optional_str("DurationSeconds", max_length=64)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > _MAX_DURATION_DIGITS:
        raise invalid_parameter(
            "InvalidParameter.DurationSeconds",
            f"the parameter DurationSeconds {raw[:32]!r} is not a whole number of seconds",
        )
    return int(raw)


def sts_handlers(sts: StsService, ram: RamService, run: Runner) -> dict[str, StsHandler]:
    """Return the STS action handlers, by action name."""

    async def assume_role(ctx: CallContext, params: Params) -> dict[str, Any]:
        role_arn = params.required_str("RoleArn", max_length=512, min_length=0)
        session_name = params.required_str("RoleSessionName", max_length=512, min_length=0)
        duration = _duration(params)
        if params.optional_str("Policy", max_length=65_536) is not None:
            raise invalid_parameter(
                "InvalidParameter.PolicyGrammar",
                "session policies (the parameter Policy) are not supported by this KMS: leave "
                "Policy out, and narrow the role's own policies instead",
            )
        assumed = await run(
            _assume,
            ctx,
            role_arn,
            session_name,
            duration,
        )
        credential = assumed.credential
        return {
            "Credentials": {
                "AccessKeyId": credential.access_key_id,
                "AccessKeySecret": credential.secret.reveal(),
                "SecurityToken": assumed.security_token.reveal(),
                "Expiration": wire_date(credential.expires_at),
            },
            "AssumedRoleUser": {
                "Arn": credential.assumed_role_arn,
                "AssumedRoleId": f"{assumed.role.role_id}:{credential.session_name}",
            },
        }

    def _assume(ctx: CallContext, role_arn: str, session_name: str, duration: int | None) -> Any:
        return sts.assume_role(
            ctx.principal,
            caller_arn=ctx.principal_arn,
            role_arn=role_arn,
            session_name=session_name,
            duration_seconds=duration,
            source_ip=parse_source_ip(ctx.source_ip),
            secure_transport=True,
        )

    async def get_caller_identity(ctx: CallContext, _params: Params) -> dict[str, Any]:
        principal = ctx.principal
        result: dict[str, Any] = {"AccountId": ctx.account_id, "Arn": ctx.principal_arn}
        if principal.kind is CallerKind.ROOT:
            result.update(IdentityType="Account", PrincipalId=ctx.account_id)
        elif principal.kind is CallerKind.USER:
            assert principal.name is not None
            user = await run(ram.get_user, ctx.account_id, principal.name)
            result.update(IdentityType="RAMUser", UserId=user.user_id, PrincipalId=user.user_id)
        else:
            assert principal.name is not None
            role = await run(ram.get_role, ctx.account_id, principal.name)
            result.update(
                IdentityType="AssumedRoleUser",
                RoleId=role.role_id,
                PrincipalId=f"{role.role_id}:{ctx.session_name}",
            )
        return result

    return {"AssumeRole": assume_role, "GetCallerIdentity": get_caller_identity}
