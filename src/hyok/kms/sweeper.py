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

import logging
from datetime import datetime
from typing import Final

from hyok.kms.api.actions import Services
from hyok.kms.periodic import PeriodicTask, job_lock
from hyok.kms.store import KmsStore

__all__ = ["DEFAULT_SWEEP_INTERVAL", "SWEEP_JOB", "KeyDeletionSweeper"]

logger = logging.getLogger("hyok.kms.sweeper")

SWEEP_JOB: Final = "key-deletion-sweep"
DEFAULT_SWEEP_INTERVAL: Final = 60.0
_BATCH: Final = 100


class KeyDeletionSweeper(PeriodicTask):
    """Delete due PendingDeletion keys in rounds, one every ``interval`` seconds.

    The current time comes from ``services.clock``, so tests move it.
    """

    job = "key deletion sweeper"
    logger = logger

    def __init__(self, services: Services, interval: float = DEFAULT_SWEEP_INTERVAL) -> None:
        super().__init__(services, interval)

    async def run_once(self) -> int | None:
        """Run one round now: the number of keys deleted, or None when another node sweeps."""
        services = self.services
        async with job_lock(services, SWEEP_JOB) as acquired:
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
