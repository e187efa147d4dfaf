"""The limit of failed console sign-ins, per source IP address and per sign-in name.

After ``max_failures`` failures of one key within ``window`` seconds, sign-in
for that key is refused, without checking the password, until the oldest of
those failures leaves the window. Both the address and the name are keys, so
guessing many passwords of one name from many addresses is limited, and so
is trying many names from one address.

NOTE: the counts are kept in the memory of each KMS process, so with
several nodes or workers an attacker gets the limit once per process, and a
restart clears them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["FailedSignInLimiter"]

_DEFAULT_MAX_KEYS: Final = 100_000


class FailedSignInLimiter:
    """Counts failed sign-ins per key in a sliding window. Thread-safe.

    ``clock`` returns seconds from a monotonic clock. At most ``max_keys``
    keys are kept: when more fail, the keys whose failures have all left the
    window go first, then the least recently failed ones.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = _DEFAULT_MAX_KEYS,
    ) -> None:
        if max_failures < 1 or window <= 0 or max_keys < 1:
            raise ValueError("max_failures, window and max_keys must be positive")
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FailedSignInLimiter(max_failures={self.max_failures}, window={self.window}, "
            f"keys={len(self._failures)})"
        )

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Return the seconds until every key may try again, or None when none is limited."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if failures is not None and len(failures) >= self.max_failures:
                    wait = max(wait, failures[-self.max_failures] + self.window - now)
        return wait if wait > 0 else None

    def record_failure(self, keys: Iterable[str]) -> None:
        """Count one failed sign-in against each key."""
        now = self._clock()
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if failures is None:
                    if len(self._failures) >= self._max_keys:
                        self._make_room(now)
                    failures = self._failures[key] = deque(maxlen=self.max_failures)
                else:
                    # Move the key to the end: the dict keeps the least recent failures first.
                    del self._failures[key]
                    self._failures[key] = failures
                failures.append(now)

    def reset(self, key: str) -> None:
        """Forget the failures of a key, after a successful sign-in."""
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _make_room(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if v[-1] <= now - self.window]:
            del self._failures[key]
        while len(self._failures) >= self._max_keys:
            del self._failures[next(iter(self._failures))]
