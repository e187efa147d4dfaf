"""hyok.kms.api.actions._cache.KeyCache: expiry, forgetting, the size bound and shared reads."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from hyok.kms.api.actions._cache import KeyCache, KeyContext
from hyok.kms.domain import Instance, Key, KeyOrigin, ProtectionLevel

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def instance(instance_id: str = "kst-abc") -> Instance:
    return Instance(
        instance_id=instance_id,
        account_id="1234567890123456",
        region="cn-hangzhou",
        name="i",
        created_at=NOW,
    )


def key(key_id: str, instance_id: str = "kst-abc") -> Key:
    return Key(
        key_id=key_id,
        account_id="1234567890123456",
        region="cn-hangzhou",
        instance_id=instance_id,
        external_key_id="app-1",
        origin=KeyOrigin.EXTERNAL,
        protection_level=ProtectionLevel.SOFTWARE,
        creator="1234567890123456",
        created_at=NOW,
        primary_key_version_id="00000000-0000-4000-8000-000000000000",
        policy="{}",
    )


def test_found_until_expiry() -> None:
    cache = KeyCache(ttl=0.05)
    cache.put(KeyContext(key("key-a"), instance()))
    assert cache.get("key-a") is not None
    time.sleep(0.06)
    assert cache.get("key-a") is None


def test_zero_ttl_keeps_nothing() -> None:
    cache = KeyCache(ttl=0)
    cache.put(KeyContext(key("key-a"), instance()))
    assert cache.get("key-a") is None


def test_forget_key_and_instance() -> None:
    cache = KeyCache(ttl=60)
    cache.put(KeyContext(key("key-a"), instance("kst-one")))
    cache.put(KeyContext(key("key-b", "kst-one"), instance("kst-one")))
    cache.put(KeyContext(key("key-c", "kst-two"), instance("kst-two")))
    cache.forget_key("key-a")
    assert cache.get("key-a") is None
    cache.forget_instance("kst-one")
    assert cache.get("key-b") is None
    assert cache.get("key-c") is not None


def test_negative_ttl_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        KeyCache(ttl=-1)


class Reader:
    """A loader that counts its reads and returns once ``release`` is set."""

    def __init__(self, result: KeyContext | None) -> None:
        self.result = result
        self.reads = 0
        self.release = asyncio.Event()
        self.failure: Exception | None = None

    async def __call__(self) -> KeyContext | None:
        self.reads += 1
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return self.result


async def _waiters(cache: KeyCache, reader: Reader, count: int) -> list[asyncio.Task[object]]:
    tasks: list[asyncio.Task[object]] = [
        asyncio.create_task(cache.load("key-a", reader)) for _ in range(count)
    ]
    await asyncio.sleep(0)
    return tasks


def test_concurrent_misses_share_one_read() -> None:
    async def scenario() -> None:
        cache = KeyCache(ttl=60)
        reader = Reader(KeyContext(key("key-a"), instance()))
        tasks = await _waiters(cache, reader, 10)
        reader.release.set()
        results = await asyncio.gather(*tasks)
        assert reader.reads == 1
        assert all(result == reader.result for result in results)
        # The read filled the cache, so the next load reads nothing.
        assert await cache.load("key-a", reader) == reader.result
        assert reader.reads == 1

    asyncio.run(scenario())


def test_key_forgotten_during_the_read_is_not_cached() -> None:
    async def scenario() -> None:
        cache = KeyCache(ttl=60)
        reader = Reader(KeyContext(key("key-a"), instance()))
        tasks = await _waiters(cache, reader, 2)
        cache.forget_key("key-a")
        reader.release.set()
        await asyncio.gather(*tasks)
        assert cache.get("key-a") is None

    asyncio.run(scenario())


def test_failed_read_reaches_every_waiter_and_caches_nothing() -> None:
    async def scenario() -> None:
        cache = KeyCache(ttl=60)
        reader = Reader(KeyContext(key("key-a"), instance()))
        reader.failure = RuntimeError("store down")
        tasks = await _waiters(cache, reader, 3)
        reader.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, RuntimeError) for result in results)
        assert cache.get("key-a") is None
        # The next miss reads again.
        reader.failure = None
        assert await cache.load("key-a", reader) == reader.result
        assert reader.reads == 2

    asyncio.run(scenario())


def test_cancelled_waiter_does_not_cancel_the_read() -> None:
    async def scenario() -> None:
        cache = KeyCache(ttl=60)
        reader = Reader(KeyContext(key("key-a"), instance()))
        first, second = await _waiters(cache, reader, 2)
        first.cancel()
        reader.release.set()
        assert await second == reader.result
        assert first.cancelled()
        assert cache.get("key-a") == reader.result

    asyncio.run(scenario())


def test_missing_key_is_not_cached() -> None:
    async def scenario() -> None:
        cache = KeyCache(ttl=60)
        reader = Reader(None)
        reader.release.set()
        assert await cache.load("key-a", reader) is None
        assert await cache.load("key-a", reader) is None
        assert reader.reads == 2

    asyncio.run(scenario())
