"""hyok.kms.http11: the transport that joins the writes of one event-loop pass."""

from __future__ import annotations

import asyncio
from typing import Any

from hyok.kms.http11 import _CoalescingTransport


class RecordingTransport:
    """Records what reaches the socket side."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def wrap(inner: RecordingTransport) -> _CoalescingTransport:
    return _CoalescingTransport(inner)  # type: ignore[arg-type]


def test_writes_of_one_pass_leave_as_one() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = wrap(inner)
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"{}")
        assert inner.writes == []
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert inner.writes[-1] == b"next"

    asyncio.run(scenario())


def test_close_sends_what_waits_first() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = wrap(inner)
        transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        transport.close()
        assert inner.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
        assert inner.closed
        await asyncio.sleep(0)
        assert len(inner.writes) == 1

    asyncio.run(scenario())


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = wrap(inner)
        transport.write(b"late")
        inner.closed = True
        await asyncio.sleep(0)
        assert inner.writes == []

    asyncio.run(scenario())


def test_other_attributes_pass_through() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = wrap(inner)
        assert transport.get_extra_info("peername") == "info:peername"
        assert transport.is_closing() is False

    asyncio.run(scenario())
