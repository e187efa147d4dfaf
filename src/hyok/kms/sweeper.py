"""The key deletion sweeper: deletes keys whose scheduled deletion date has passed.

ScheduleKeyDeletion moves a key to PendingDeletion with a ``DeleteDate``.
The sweeper looks for due keys every ``interval`` seconds and deletes each
one's metadata, versions and tags in its own transaction, and only if the
key is still PendingDeletion and due then: a CancelKeyDeletion that wins the
race keeps the key. A round runs under the store's job lock
:data:`SWEEP_JOB`, so with several KMS nodes on PostgreSQL only one node
sweeps at a time; a node that restarts simply finds the due keys again.

Deleting a KMS key never touches the key in the key manager: the external
key stays where it is, and only the customer can delete it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Final

from hyok.kms.api.actions import Services
from hyok.kms.store import KmsStore, StoreError

__all__ = ["DEFAULT_SWEEP_INTERVAL", "SWEEP_JOB", "KeyDeletionSweeper"]

logger = logging.getLogger("hyok.kms.sweeper")

SWEEP_JOB: Final = "key-deletion-sweep"
DEFAULT_SWEEP_INTERVAL: Final = 60.0
_BATCH: Final = 100
_STOP_TIMEOUT: Final = 30.0


class KeyDeletionSweeper:
    """Delete due PendingDeletion keys in rounds, one every ``interval`` seconds.

    The current time comes from ``services.clock``, so tests move it.
    """

    def __init__(self, services: Services, interval: float = DEFAULT_SWEEP_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be more than 0 seconds, got {interval}")
        self.services = services
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        running = self._task is not None and not self._task.done()
        return f"KeyDeletionSweeper(interval={self.interval}, running={running})"

    async def start(self) -> None:
        """Start the rounds in a background task. Does nothing when they already run."""
        if self._task is not None and not self._task.done():
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="hyok-key-sweeper")
        logger.info("key deletion sweeper started, every %.0f s", self.interval)

    async def stop(self) -> None:
        """Stop the rounds, letting a round in progress finish first (at most 30 s)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), _STOP_TIMEOUT)
        except TimeoutError:
            logger.warning(
                "key deletion round did not finish in %.0f s, so it is cancelled", _STOP_TIMEOUT
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except StoreError as exc:
                logger.warning("key deletion round failed: %s", exc.message)
            except Exception:
                logger.exception("key deletion round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def run_once(self) -> int | None:
        """Run one round now: the number of keys deleted, or None when another node sweeps."""
        services = self.services
        with contextlib.ExitStack() as stack:
            acquired = await services.run(
                stack.enter_context, services.store.try_job_lock(SWEEP_JOB)
            )
            try:
                if not acquired:
                    logger.debug("key deletion round skipped: another KMS node runs it")
                    return None
                deleted = 0
                while True:
                    now = services.clock()
                    due = await services.run(_due, services.store, now)
                    for key_id in due:
                        if await services.run(_delete, services.store, key_id, now):
                            deleted += 1
                            logger.info("key %s deleted: its deletion date passed", key_id)
                        services.keys.forget_key(key_id)
                    if len(due) < _BATCH:
                        return deleted
            finally:
                await services.run(stack.pop_all().close)


def _due(store: KmsStore, now: datetime) -> tuple[str, ...]:
    with store.session(read_only=True) as session:
        return session.keys.due_for_deletion(now, _BATCH)


def _delete(store: KmsStore, key_id: str, now: datetime) -> bool:
    with store.session() as session:
        key = session.keys.get(key_id)
        if key is None:
            return False
        # Deleting the key deletes its grant rows, so read them first: the
        # foreign accounts keep their quota units for 5 more minutes.
        grants = session.sharing.key_grants(key_id)
        deleted = session.keys.delete_if_due(key_id, now)
        if deleted and grants:
            session.sharing.record_revocations(key.instance_id, grants, now)
        return deleted
