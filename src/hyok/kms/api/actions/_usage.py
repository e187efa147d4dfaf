"""Counting who uses each key, in memory, until the usage flusher writes the counts.

Every successful cryptographic call adds one use of its key by the caller's
principal ARN and via-service. Counting here costs no store access on the
cryptographic path; :mod:`hyok.kms.usage` moves the counts into the store
every few seconds, and before ListKeyAssociations reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from hyok.kms.store.associations import UsageCount

__all__ = ["DEFAULT_MAX_PENDING", "KeyUsageRecorder"]

logger = logging.getLogger("hyok.kms.usage")

DEFAULT_MAX_PENDING: Final = 10_000


class KeyUsageRecorder:
    """Uses of keys since the last drain, by (key ID, principal, via-service).

    Holds at most ``max_pending`` distinct combinations; uses of a new
    combination beyond that are counted in ``dropped`` and logged, never
    stored. Used from the event loop only.
    """

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: dict[tuple[str, str, str], tuple[datetime, datetime, int]] = {}

    def __repr__(self) -> str:
        return f"KeyUsageRecorder(pending={len(self._pending)}, dropped={self.dropped})"

    def record(self, key_id: str, principal: str, via_service: str, when: datetime) -> None:
        entry = (key_id, principal, via_service)
        found = self._pending.get(entry)
        if found is not None:
            self._pending[entry] = (min(found[0], when), max(found[1], when), found[2] + 1)
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "key usage: more than %d principals and keys since the last flush; further "
                    "new ones are not recorded until it runs",
                    self.max_pending,
                )
            return
        self._pending[entry] = (when, when, 1)

    def drain(self) -> list[UsageCount]:
        """Return and forget the counts gathered so far."""
        pending, self._pending = self._pending, {}
        return [
            UsageCount(key_id, principal, via, first, last, count)
            for (key_id, principal, via), (first, last, count) in pending.items()
        ]

    def restore(self, counts: Iterable[UsageCount]) -> None:
        """Put back counts that could not be stored, merging them with newer ones."""
        for count in counts:
            entry = (count.key_id, count.principal, count.via_service)
            found = self._pending.get(entry)
            if found is None:
                self._pending[entry] = (count.first_used_at, count.last_used_at, count.count)
            else:
                self._pending[entry] = (
                    min(found[0], count.first_used_at),
                    max(found[1], count.last_used_at),
                    found[2] + count.count,
                )
