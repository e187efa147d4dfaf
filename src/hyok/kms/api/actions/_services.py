"""The dependencies of every action handler: the store, the proxy clients, the region, a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from hyok.kms.api.actions._access import guard
from hyok.kms.api.actions._cache import KeyCache
from hyok.kms.api.actions._identity_policies import IdentityPolicyCache
from hyok.kms.api.actions._usage import KeyUsageRecorder
from hyok.kms.api.params import Params
from hyok.kms.proxies import ProxyPool
from hyok.kms.store import KmsStore

if TYPE_CHECKING:
    from hyok.kms.api.app import CallContext, Handler

__all__ = ["Action", "Services", "bind_actions"]

_T = TypeVar("_T")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """The shared dependencies of the action handlers of one KMS process.

    ``region`` is the region this KMS serves. ``executor`` runs blocking
    store work (None: the loop's default executor). ``clock`` returns the
    current time, timezone-aware. ``keys`` caches keys and instances for the
    cryptographic path; an action that changes a key or an instance must
    call its ``forget_key`` or ``forget_instance``. ``access`` caches the
    identity policies of RAM users and roles for the access checks, and
    ``usage`` counts who used each key until the usage flusher stores it.
    """

    store: KmsStore
    proxies: ProxyPool
    region: str
    executor: Executor | None = None
    clock: Callable[[], datetime] = field(default=_utc_now)
    keys: KeyCache = field(default_factory=KeyCache)
    access: IdentityPolicyCache = field(default_factory=IdentityPolicyCache)
    usage: KeyUsageRecorder = field(default_factory=KeyUsageRecorder)

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking function, such as a store transaction, in the executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(function, *args))


Action = Callable[["Services", "CallContext", Params], Awaitable[dict[str, Any]]]
"""An action implementation: a handler that also receives the services."""


def bind_actions(services: Services, actions: Mapping[str, Action]) -> dict[str, Handler]:
    """Bind each action, with its access checks, to ``services``, giving KmsApp's handlers."""
    return {name: partial(guard(name, action), services) for name, action in actions.items()}
