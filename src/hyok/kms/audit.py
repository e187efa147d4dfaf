"""The KMS audit trail: one hash-chained JSON line per API call, allowed or not.

Each event records the time, request ID, account, principal ARN, AccessKey
ID, source IP, API version and action, the key IDs and alias names the
call named, the via-service it declared (``ViaService``), the
outcome (``success``, ``denied``, ``unauthenticated`` or ``failed``), the
error code and the latency. No parameter value is ever recorded: no
plaintext, ciphertext, policy or credential.

Chaining: every event carries ``chain`` (a random ID of the writing
process), ``seq`` (1, 2, … within the chain), ``prev`` (the hash of the
event before it) and ``hash``, the SHA-256 of ``prev`` followed by the
event's canonical JSON without ``hash``. A process continues from the last
hash in the file when it starts, so the chains of successive runs link up.
:func:`verify` recomputes every hash: an edited, removed or reordered event
breaks the chain at that line. Removing the newest events of a chain is
only visible against an outside record of the last hash (``tail -1``), as
with any hash chain.

Lines go to a file opened with O_APPEND and mode 0600. The lines of the
requests that end in one pass of the event loop leave in one ``write`` at
the end of that pass (a crash loses at most those), so the lines of several
worker processes never interleave; each worker keeps its own chain. The
request ID is the ``kmsRequestId`` that the XKI proxy receives and writes to
its own audit log, so one call can be followed from the KMS into the proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ChainProblem",
    "KmsAuditTrail",
    "read_events",
    "verify",
]

GENESIS: Final = "0" * 64
"""The ``prev`` of the first event of a new trail."""

_TAIL_BYTES: Final = 64 * 1024
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, sort_keys=True)


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """The report of one API call that the KMS app passes to the trail."""

    request_id: str
    account_id: str
    principal: str
    access_key_id: str
    source_ip: str
    version: str
    action: str
    key_ids: Sequence[str] = field(default=())
    via_service: str = ""
    outcome: str
    code: str
    latency_ms: float


def _hash(prev: str, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{body}".encode("ascii")).hexdigest()


class KmsAuditTrail:
    """Append-only, hash-chained JSON-lines writer of :class:`AuditEvent`.

    Raises OSError when ``path`` cannot be opened for appending.
    """

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._chain = secrets.token_hex(8)
        self._seq = 0
        self._prev = _last_hash(path)

    def __repr__(self) -> str:
        return f"KmsAuditTrail(path={str(self.path)!r}, chain={self._chain!r}, seq={self._seq})"

    def record(self, event: AuditEvent) -> None:
        """Append one event. Thread-safe; the caller's order is the chain's order."""
        record: dict[str, Any] = {
            "time": self._clock().astimezone(UTC).isoformat(timespec="milliseconds"),
            "request_id": event.request_id,
            "account_id": event.account_id,
            "principal": event.principal,
            "access_key_id": event.access_key_id,
            "source_ip": event.source_ip,
            "version": event.version,
            "action": event.action,
            "key_ids": list(dict.fromkeys(event.key_ids)),
            "via_service": event.via_service,
            "outcome": event.outcome,
            "code": event.code,
            "latency_ms": round(event.latency_ms, 1),
            "chain": self._chain,
        }
        with self._lock:
            self._seq += 1
            record["seq"] = self._seq
            record["prev"] = self._prev
            body = _ENCODER.encode(record)
            digest = _hash(self._prev, body)
            self._pending.append(f'{body[:-1]},"hash":"{digest}"}}\n'.encode("ascii"))
            self._prev = digest
            if len(self._pending) > 1:
                return
        try:
            # Lines of requests that end in the same pass of the event loop
            # leave in one write at its end.
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        """Write the lines recorded so far."""
        with self._lock:
            if self._pending:
                os.write(self._fd, b"".join(self._pending))
                self._pending.clear()

    def close(self) -> None:
        self.flush()
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)


def _last_hash(path: Path) -> str:
    """Return the hash of the last complete event in ``path``, or GENESIS."""
    with path.open("rb") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(0, size - _TAIL_BYTES))
        tail = stream.read()
    for line in reversed(tail.split(b"\n")):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("hash"), str):
            return str(value["hash"])
    return GENESIS


def read_events(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, event) for every line of ``path`` that is a JSON object."""
    with path.open("r", encoding="ascii", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                value = json.loads(line)
            except ValueError:
                yield number, {}
                continue
            yield number, value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ChainProblem:
    """One place where the trail does not verify."""

    line: int
    reason: str


def verify(path: Path) -> tuple[int, int, list[ChainProblem]]:
    """Check every hash and link of the trail in ``path``.

    Returns (events checked, chains seen, problems). A chain must start
    with ``seq`` 1 and a ``prev`` that is GENESIS or the hash of an earlier
    event, and continue with ``seq`` + 1 and the hash of its previous event.
    """
    problems: list[ChainProblem] = []
    seen_hashes: set[str] = {GENESIS}
    chains: dict[str, tuple[int, str]] = {}
    count = 0
    for number, event in read_events(path):
        count += 1
        stated = event.pop("hash", None)
        chain, seq, prev = event.get("chain"), event.get("seq"), event.get("prev")
        if not (
            isinstance(stated, str)
            and isinstance(chain, str)
            and isinstance(seq, int)
            and isinstance(prev, str)
        ):
            problems.append(ChainProblem(number, "the line is not an audit event"))
            continue
        if _hash(prev, _ENCODER.encode(event)) != stated:
            problems.append(
                ChainProblem(number, "the event does not match its hash: it was edited")
            )
        last = chains.get(chain)
        if last is None:
            if seq != 1 or prev not in seen_hashes:
                problems.append(
                    ChainProblem(
                        number,
                        f"chain {chain} starts at event {seq} or after an "
                        "unknown event: earlier events were removed",
                    )
                )
        elif seq != last[0] + 1 or prev != last[1]:
            problems.append(
                ChainProblem(
                    number,
                    f"chain {chain} jumps from event {last[0]} to {seq}: "
                    "events were removed or reordered",
                )
            )
        chains[chain] = (seq, stated)
        seen_hashes.add(stated)
    return count, len(chains), problems
