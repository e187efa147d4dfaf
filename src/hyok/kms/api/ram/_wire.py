"""Shared pieces of the RAM and STS handlers: the worker-thread runner, dates, the root check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hyok.kms.domain.policy_principals import CallerKind
from hyok.kms.ram.errors import NO_PERMISSION, RamError

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext

__all__ = ["Runner", "require_root", "wire_date"]

_T = TypeVar("_T")


class Runner(Protocol):
    """Runs a blocking function, such as a store transaction, in a worker thread."""

    async def __call__(self, function: Callable[..., _T], /, *args: Any) -> _T: ...


def wire_date(value: datetime) -> str:
    """Format a datetime as RAM and STS write it: ``2015-01-23T12:33:18Z`` in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def require_root(ctx: CallContext, action: str) -> None:
    """Reject a RAM action signed by anything but the account root, with ``NoPermission``."""
    # NOTE: RAM permissions (ram:* actions in identity policies) are not evaluated
    # yet, so only the account root may manage identities.
    if ctx.principal.kind is not CallerKind.ROOT:
        raise RamError(
            NO_PERMISSION,
            403,
            f"{ctx.principal_arn} is not authorized to perform ram:{action}: this KMS serves RAM "
            "actions to the account root only, so sign with the account's own AccessKey",
        )
