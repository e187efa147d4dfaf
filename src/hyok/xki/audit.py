"""The proxy's audit log: one JSON line per request.

Lines carry request metadata, the outcome and the latency, never plaintext,
AAD, ciphertext, keys, credentials or tokens: callers pass only the fields
listed in the log format (docs/xki-proxy.md). Each line is written with one
``write`` call on a file opened with O_APPEND, so lines from several worker
processes never interleave.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

__all__ = ["AuditLog"]

_MAX_VALUE: Final = 2_048
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


class AuditLog:
    """Append-only JSON-lines writer; ``"-"`` writes to standard output."""

    def __init__(self, destination: str) -> None:
        self._destination = destination
        self._lock = threading.Lock()
        self._fd = self._open()

    def _open(self) -> int:
        if self._destination == "-":
            return sys.stdout.fileno()
        path = self._destination
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def reopen(self) -> None:
        """Open the destination again, after log rotation moved the file away."""
        if self._destination == "-":
            return
        with self._lock:
            old, self._fd = self._fd, self._open()
            os.close(old)

    def write(self, event: Mapping[str, object]) -> None:
        record: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds")
        }
        for key, value in event.items():
            record[key] = value[:_MAX_VALUE] + "..." if (
                isinstance(value, str) and len(value) > _MAX_VALUE) else value
        line = _ENCODER.encode(record) + "\n"
        os.write(self._fd, line.encode("ascii"))

    def __call__(self, event: Mapping[str, object]) -> None:
        self.write(event)

    def close(self) -> None:
        if self._destination != "-":
            os.close(self._fd)
