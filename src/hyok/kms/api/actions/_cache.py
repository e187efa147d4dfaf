"""A short-lived cache of keys and their instances for the cryptographic path.

Every cryptographic call needs the key and its instance. Reading both from
the store costs more than the rest of the KMS's own work, so a found pair is
kept for ``ttl`` seconds. Changes made through this process drop the
affected entries at once (:meth:`KeyCache.forget_key`,
:meth:`KeyCache.forget_instance`). A change made by another KMS node (or
directly in the database) takes effect here within ``ttl`` seconds: for
that long, a key disabled elsewhere can still be used on this node.

When an entry expires under load, the requests that miss it share one store
read (:meth:`KeyCache.load`) instead of each making their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from hyok.kms.domain import Instance, Key

__all__ = ["DEFAULT_KEY_CACHE_SECONDS", "KeyCache", "KeyContext"]

DEFAULT_KEY_CACHE_SECONDS: Final = 1.0
_MAX_ENTRIES: Final = 10_000


@dataclass(frozen=True, slots=True)
class KeyContext:
    """A key that a request names, with its instance and its tags (tag key to value)."""

    key: Key
    instance: Instance
    tags: dict[str, str] = field(default_factory=dict)


_Loader = Callable[[], Awaitable[KeyContext | None]]


class KeyCache:
    """Keys with their instances and tags, by key ID, each kept ``ttl`` seconds (0: off).

    Used from the event loop only, so it needs no lock.
    """

    def __init__(self, ttl: float = DEFAULT_KEY_CACHE_SECONDS) -> None:
        if ttl < 0:
            raise ValueError(f"ttl must be 0 or more seconds, got {ttl}")
        self.ttl = ttl
        self._entries: dict[str, tuple[float, KeyContext]] = {}
        self._loading: dict[str, asyncio.Future[KeyContext | None]] = {}

    def __repr__(self) -> str:
        return f"KeyCache(ttl={self.ttl}, entries={len(self._entries)})"

    def get(self, key_id: str) -> KeyContext | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key_id]
            return None
        return entry[1]

    async def load(self, key_id: str, loader: _Loader) -> KeyContext | None:
        """Return the cached entry of ``key_id``, or read it with ``loader`` and cache it.

        Callers that miss while a read of the same key is in flight wait for
        that read. A caller that is cancelled does not cancel the read.
        """
        cached = self.get(key_id)
        if cached is not None:
            return cached
        pending = self._loading.get(key_id)
        if pending is None:
            pending = asyncio.ensure_future(loader())
            self._loading[key_id] = pending
            pending.add_done_callback(lambda done: self._loaded(key_id, done))
        return await asyncio.shield(pending)

    def _loaded(self, key_id: str, done: asyncio.Future[KeyContext | None]) -> None:
        if self._loading.get(key_id) is not done:
            # Forgotten while in flight: what it read may predate the change.
            return
        del self._loading[key_id]
        if done.cancelled() or done.exception() is not None:
            return
        found = done.result()
        if found is not None:
            self.put(found)

    def put(self, found: KeyContext) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= _MAX_ENTRIES:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
        self._entries[found.key.key_id] = (time.monotonic() + self.ttl, found)

    def forget_key(self, key_id: str) -> None:
        """Drop a key, after a change to it."""
        self._entries.pop(key_id, None)
        # A read that started before the change must not cache what it read.
        self._loading.pop(key_id, None)

    def forget_instance(self, instance_id: str) -> None:
        """Drop every key of an instance, after a change to the instance."""
        self._entries = {
            key_id: entry
            for key_id, entry in self._entries.items()
            if entry[1].instance.instance_id != instance_id
        }
        # Reads in flight may carry the instance as it was before the change.
        self._loading.clear()
