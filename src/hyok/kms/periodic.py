"""Background jobs of the KMS that run in rounds: one base class and the job lock they share.

The health monitor, the deletion sweeper and the usage flusher each repeat
one round every few seconds while the server runs. :class:`PeriodicTask`
contains what they have in common: the background task, the wait between
rounds that a stop cuts short, the bounded stop, and the rule that a failed
round is logged and the next one still runs. A subclass supplies
:meth:`PeriodicTask.run_once`.

:func:`job_lock` takes a store job lock for one round, so that with several
KMS nodes on one database only one node runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, Final

from hyok.kms.store import StoreError

if TYPE_CHECKING:
    from hyok.kms.api.actions._services import Services

__all__ = ["STOP_TIMEOUT", "PeriodicTask", "job_lock"]

STOP_TIMEOUT: Final = 30.0
"""Seconds that :meth:`PeriodicTask.stop` lets a round in progress run before it cancels it."""


class PeriodicTask(ABC):
    """Run :meth:`run_once` every ``interval`` seconds in a background task.

    With ``first_round_at_start`` the first round runs as soon as the task
    starts; otherwise it runs after one interval. Subclasses name the job in
    ``job`` (for the task name and log lines) and give it a logger.
    """

    job: ClassVar[str]
    logger: ClassVar[logging.Logger]
    first_round_at_start: ClassVar[bool] = True

    def __init__(self, services: Services, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval}")
        self.services = services
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return f"{type(self).__name__}(interval={self.interval}, running={running})"

    @abstractmethod
    async def run_once(self) -> int | None:
        """Run one round now and return what it did (a count), or None when it was skipped."""

    async def start(self) -> None:
        """Start the rounds in a background task. Does nothing when they already run."""
        if self._task is not None and not self._task.done():
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"hyok-{self.job}")
        self.logger.info("%s started, every %.1f s", self.job, self.interval)

    async def stop(self) -> None:
        """Stop the rounds, letting a round in progress finish first (at most 30 s)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except TimeoutError:
            self.logger.warning(
                "%s round did not finish in %.0f s, so it is cancelled", self.job, STOP_TIMEOUT
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.after_stop()
        self.logger.info("%s stopped", self.job)

    async def after_stop(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Run once after the last round, before :meth:`stop` returns."""

    async def _run(self) -> None:
        if not self.first_round_at_start:
            await self._pause()
        while not self._stopping.is_set():
            await self._round()
            await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def _round(self) -> None:
        try:
            await self.run_once()
        except StoreError as exc:
            self.logger.warning("%s round failed: %s", self.job, exc.message)
        except Exception:
            self.logger.exception("%s round failed", self.job)


@contextlib.asynccontextmanager
async def job_lock(services: Services, job: str) -> AsyncIterator[bool]:
    """Hold the store job lock ``job`` for the body; yield False when another node has it.

    The lock's transaction opens and closes in the executor, because both
    block on the database.
    """
    with contextlib.ExitStack() as stack:
        acquired = await services.run(stack.enter_context, services.store.try_job_lock(job))
        try:
            yield bool(acquired)
        finally:
            await services.run(stack.pop_all().close)
