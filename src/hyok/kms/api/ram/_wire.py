"""Shared pieces of the RAM and STS handlers: the worker-thread runner, dates, permission checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hyok.kms.domain.policy_conditions import parse_source_ip
from hyok.kms.domain.policy_principals import CallerKind
from hyok.kms.ram.errors import NO_PERMISSION, RamError

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext
    from hyok.kms.ram.identities import RamService

__all__ = ["Runner", "require_permission", "require_root", "wire_date"]

_T = TypeVar("_T")


class Runner(Protocol):
    """Runs a blocking function, such as a store transaction, in a worker thread."""

    async def __call__(self, function: Callable[..., _T], /, *args: Any) -> _T: ...


def wire_date(value: datetime) -> str:
    """Format a datetime as RAM and STS write it: ``2015-01-23T12:33:18Z`` in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def require_root(ctx: CallContext, action: str) -> None:
    """Reject a RAM action that changes identities unless the account root signed it."""
    # NOTE: identity policies decide the RAM actions that read (require_permission),
    # but only the account root may change users, roles, policies and passwords.
    if ctx.principal.kind is not CallerKind.ROOT:
        raise RamError(
            NO_PERMISSION,
            403,
            f"{ctx.principal_arn} is not authorized to perform ram:{action}: this KMS lets only "
            "the account root change RAM identities, so sign with the account's own AccessKey",
        )


async def require_permission(
    ctx: CallContext, service: RamService, run: Runner, action: str, resource_arn: str
) -> None:
    """Reject a reading RAM action unless the identity policies of the caller allow it."""
    if ctx.principal.kind is CallerKind.ROOT:
        return
    await run(
        service.check_permission,
        ctx.principal,
        ctx.principal_arn,
        f"ram:{action}",
        resource_arn,
        ctx.secure_transport,
        parse_source_ip(ctx.source_ip),
    )
