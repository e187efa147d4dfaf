"""hyok.kms.api.actions._cache.KeyCache: expiry, forgetting, and the size bound."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from hyok.kms.api.actions._cache import KeyCache
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
    cache.put(key("key-a"), instance())
    assert cache.get("key-a") is not None
    time.sleep(0.06)
    assert cache.get("key-a") is None


def test_zero_ttl_keeps_nothing() -> None:
    cache = KeyCache(ttl=0)
    cache.put(key("key-a"), instance())
    assert cache.get("key-a") is None


def test_forget_key_and_instance() -> None:
    cache = KeyCache(ttl=60)
    cache.put(key("key-a"), instance("kst-one"))
    cache.put(key("key-b", "kst-one"), instance("kst-one"))
    cache.put(key("key-c", "kst-two"), instance("kst-two"))
    cache.forget_key("key-a")
    assert cache.get("key-a") is None
    cache.forget_instance("kst-one")
    assert cache.get("key-b") is None
    assert cache.get("key-c") is not None


def test_negative_ttl_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        KeyCache(ttl=-1)
