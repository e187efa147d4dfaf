"""The lifespan hooks of KmsApp: startup hooks run in order, a failing one stops the start,
and every shutdown hook runs even after one fails."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyok.kms.api.app import KmsApp, LifespanHook
from hyok.kms.store import KmsStore, SecretBox, open_database


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KmsStore]:
    database = open_database(f"sqlite:///{tmp_path / 'kms.db'}")
    yield KmsStore(database, SecretBox(bytes(32)))
    database.dispose()


def run_lifespan(app: KmsApp, *, shutdown: bool) -> list[dict[str, Any]]:
    """Drive one lifespan cycle as an ASGI server does and return the app's messages."""
    incoming: list[dict[str, Any]] = [{"type": "lifespan.startup"}]
    if shutdown:
        incoming.append({"type": "lifespan.shutdown"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return sent


def recorder(calls: list[str], name: str, *, fail: bool = False) -> LifespanHook:
    async def hook() -> None:
        calls.append(name)
        if fail:
            raise RuntimeError(f"{name} failed")

    return hook


def test_hooks_run_in_order(store: KmsStore) -> None:
    calls: list[str] = []
    app = KmsApp(
        store,
        region="cn-hangzhou",
        on_startup=[recorder(calls, "start-1"), recorder(calls, "start-2")],
        on_shutdown=[recorder(calls, "stop-1"), recorder(calls, "stop-2")],
    )
    sent = run_lifespan(app, shutdown=True)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert calls == ["start-1", "start-2", "stop-1", "stop-2"]


def test_failing_startup_hook_stops_start(store: KmsStore) -> None:
    calls: list[str] = []
    app = KmsApp(
        store,
        region="cn-hangzhou",
        on_startup=[recorder(calls, "start-1", fail=True), recorder(calls, "start-2")],
    )
    sent = run_lifespan(app, shutdown=False)
    assert len(sent) == 1
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert sent[0]["message"] == "KMS startup failed: RuntimeError: start-1 failed"
    assert calls == ["start-1"]


def test_failing_shutdown_hook_runs_rest(store: KmsStore) -> None:
    calls: list[str] = []
    app = KmsApp(
        store,
        region="cn-hangzhou",
        on_shutdown=[recorder(calls, "stop-1", fail=True), recorder(calls, "stop-2")],
    )
    sent = run_lifespan(app, shutdown=True)
    assert sent[1]["type"] == "lifespan.shutdown.failed"
    assert "1 KMS shutdown step(s) failed" in sent[1]["message"]
    assert calls == ["stop-1", "stop-2"]
