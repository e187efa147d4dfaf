"""The key usage flusher: moves the in-memory usage counts into the store every few seconds.

:class:`~hyok.kms.api.actions._usage.KeyUsageRecorder` counts uses on the
cryptographic path without store access; this task writes them in one
transaction every ``interval`` seconds and when the KMS stops. A failed
write puts the counts back, so a store outage loses no uses. A KMS that is
killed loses at most the last interval's counts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from hyok.kms.periodic import PeriodicTask
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


class KeyUsageFlusher(PeriodicTask):
    """Run :func:`flush_usage` every ``interval`` seconds, and once more at :meth:`stop`."""

    job = "key usage flusher"
    logger = logger
    first_round_at_start = False

    def __init__(self, services: Services, interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        super().__init__(services, interval)

    async def run_once(self) -> int | None:
        """Write the counts gathered so far and return the number of rows written."""
        return await flush_usage(self.services)

    async def after_stop(self) -> None:
        """Write the counts of the last interval, so a clean stop loses none."""
        try:
            await flush_usage(self.services)
        except StoreError as exc:
            logger.warning("key usage not stored at stop, %s", exc.message)
        except Exception:
            logger.exception("key usage flush at stop failed")
