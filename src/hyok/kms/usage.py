"""The key usage flusher: moves the in-memory usage counts into the store every few seconds.

:class:`~hyok.kms.api.actions._usage.KeyUsageRecorder` counts uses on the
cryptographic path without store access; this task writes them in one
transaction every ``interval`` seconds and when the KMS stops. A failed
write puts the counts back, so a store outage loses no uses. A KMS that is
killed loses at most the last interval's counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final

from hyok.kms.store import KmsStore, StoreError
from hyok.kms.store.associations import UsageCount

if TYPE_CHECKING:
    from hyok.kms.api.actions._services import Services

__all__ = ["DEFAULT_FLUSH_INTERVAL", "KeyUsageFlusher", "flush_usage"]

logger = logging.getLogger("hyok.kms.usage")

DEFAULT_FLUSH_INTERVAL: Final = 5.0


def _write(store: KmsStore, counts: list[UsageCount]) -> int:
    with store.session() as session:
        return session.associations.add_usage(counts)


async def flush_usage(services: Services) -> int:
    """Write the counts gathered so far; return the number of rows written.

    Raises StoreError after putting the counts back.
    """
    counts = services.usage.drain()
    if not counts:
        return 0
    try:
        return await services.run(_write, services.store, counts)
    except BaseException:
        services.usage.restore(counts)
        raise


class KeyUsageFlusher:
    """Run :func:`flush_usage` every ``interval`` seconds, and once more at :meth:`stop`."""

    def __init__(self, services: Services, interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval}")
        self.services = services
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return f"KeyUsageFlusher(interval={self.interval}, running={running})"

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="hyok-key-usage")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._flush()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            if not self._stopping.is_set():
                await self._flush()

    async def _flush(self) -> None:
        try:
            await flush_usage(self.services)
        except StoreError as exc:
            logger.warning("key usage not stored yet, kept for the next flush: %s", exc.message)
        except Exception:
            logger.exception("key usage flush failed; the counts are kept for the next flush")
