"""Deep health checks of the backends, cached so that KMS polling stays cheap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from hyok.kmi.base import FleetMember, HealthStatus, KeyManager

__all__ = ["MAX_AGE_SECONDS", "HealthCache"]

# XKS v1: a cached health result must not be older than one minute.
MAX_AGE_SECONDS: Final = 60.0

logger = logging.getLogger("hyok.xki.health")

Runner = Callable[[Callable[[], list[FleetMember]], float], Awaitable[list[FleetMember]]]


class HealthCache:
    """The latest deep check of one backend, refreshed when older than ``ttl`` seconds.

    ``run`` executes the backend's blocking ``health`` call with a timeout;
    concurrent callers share one check in flight.
    """

    def __init__(
        self,
        name: str,
        backend: KeyManager,
        run: Runner,
        *,
        ttl: float = 10.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._backend = backend
        self._run = run
        self._ttl = min(ttl, MAX_AGE_SECONDS)
        self._timeout = timeout
        self._clock = clock
        self._members: list[FleetMember] | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def last(self) -> list[FleetMember] | None:
        """The cached result, or None before the first check or once it is too old."""
        if self._members is None or self._clock() - self._checked_at > MAX_AGE_SECONDS:
            return None
        return self._members

    async def get(self) -> list[FleetMember]:
        if self._members is not None and self._clock() - self._checked_at <= self._ttl:
            return self._members
        async with self._lock:
            if self._members is not None and self._clock() - self._checked_at <= self._ttl:
                return self._members
            self._members = await self._check()
            self._checked_at = self._clock()
            return self._members

    async def _check(self) -> list[FleetMember]:
        try:
            members = await self._run(self._backend.health, self._timeout)
        except TimeoutError:
            logger.warning("health check of backend %s timed out after %.1f s",
                           self.name, self._timeout)
            return [FleetMember(self.name, "unknown", HealthStatus.UNAVAILABLE,
                                "health check timed out")]
        except Exception as exc:
            logger.warning("health check of backend %s failed: %s", self.name,
                           type(exc).__name__)
            return [FleetMember(self.name, "unknown", HealthStatus.UNAVAILABLE,
                                f"health check failed: {type(exc).__name__}")]
        if not members:
            return [FleetMember(self.name, "unknown", HealthStatus.UNAVAILABLE,
                                "backend reported no fleet members")]
        for member in members:
            if member.status is not HealthStatus.ACTIVE:
                logger.warning("backend %s member %s is %s: %s", self.name, member.id,
                               member.status.value, member.detail)
        return members
