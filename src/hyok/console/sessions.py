"""Console sessions: start, resume with the idle timeout and the absolute lifetime, end.

The browser keeps a random token in an HttpOnly cookie, and the database
(:mod:`hyok.kms.store.console_sessions`) stores only its SHA-256, so every
KMS node on the same database sees a sign-out or an expiry at once.

A session ends ``idle_timeout`` after its last request and at most
``lifetime`` after sign-in. To spare a database write per request, the last
use is recorded only when it moved by :attr:`SessionManager.touch_interval`
(a tenth of the idle timeout, 30 seconds at most), so a session may end up
to that much before its idle timeout, never after it.

The methods block on the database: run them in a worker thread.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from hyok.console.csrf import session_csrf_token, valid_token_shape
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.store.console_sessions import ConsoleSessionRow, ConsoleSessionStore

__all__ = ["ActiveSession", "SessionManager", "SessionState", "sign_in_name"]

logger = logging.getLogger("hyok.console")

_TOKEN_BYTES: Final = 32
_MAX_TOUCH_INTERVAL: Final = timedelta(seconds=30)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SessionState(enum.Enum):
    """The outcome of resuming a session from its cookie."""

    ACTIVE = "active"
    """The session is valid; its last use is now."""
    IDLE = "idle"
    """The session ended because it was unused for the idle timeout."""
    ENDED = "ended"
    """The session is unknown, signed out, or past its absolute lifetime."""


def sign_in_name(principal: RamIdentity) -> str:
    """Return the name a principal signs in with: the account ID, or ``<user>@<account ID>``."""
    if principal.kind is CallerKind.ROOT:
        return principal.account_id
    return f"{principal.name}@{principal.account_id}"


@dataclass(frozen=True)
class ActiveSession:
    """A valid session and its principal. ``token`` is the cookie value."""

    token: str = field(repr=False)
    principal: RamIdentity
    created_at: datetime
    expires_at: datetime

    @property
    def csrf_token(self) -> str:
        """The CSRF token that this session's forms carry."""
        return session_csrf_token(self.token)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class SessionManager:
    """Starts, resumes and ends console sessions in ``store``."""

    def __init__(
        self,
        store: ConsoleSessionStore,
        *,
        idle_timeout: timedelta,
        lifetime: timedelta,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if idle_timeout <= timedelta(0) or lifetime <= timedelta(0):
            raise ValueError("the idle timeout and the session lifetime must be positive")
        self._store = store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.touch_interval = min(_MAX_TOUCH_INTERVAL, idle_timeout / 10)
        self._clock = clock

    def __repr__(self) -> str:
        return f"SessionManager(idle_timeout={self.idle_timeout}, lifetime={self.lifetime})"

    def start(self, principal: RamIdentity) -> ActiveSession:
        """Start a session for a principal who has just signed in, with a new token."""
        if principal.kind not in (CallerKind.ROOT, CallerKind.USER):
            raise ValueError("only an account root or a RAM user can sign in to the console")
        now = self._clock()
        # Sign-in is rare enough to sweep ended sessions of every principal here.
        self._store.delete_expired(now, now - self.idle_timeout)
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        expires_at = now + self.lifetime
        self._store.create(
            ConsoleSessionRow(
                token_hash=_token_hash(token),
                account_id=principal.account_id,
                user_name=principal.name if principal.kind is CallerKind.USER else None,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
            )
        )
        return ActiveSession(token, principal, now, expires_at)

    def resume(self, token: str) -> tuple[SessionState, ActiveSession | None]:
        """Find the session of a cookie value, record its use, and return whether it is valid."""
        if not valid_token_shape(token):
            return SessionState.ENDED, None
        token_hash = _token_hash(token)
        row = self._store.get(token_hash)
        if row is None:
            return SessionState.ENDED, None
        now = self._clock()
        if now >= row.expires_at:
            self._store.delete(token_hash)
            return SessionState.ENDED, None
        if now >= row.last_seen_at + self.idle_timeout:
            self._store.delete(token_hash)
            return SessionState.IDLE, None
        if now - row.last_seen_at >= self.touch_interval and not self._store.touch(token_hash, now):
            # Signed out on another node between the two statements.
            return SessionState.ENDED, None
        principal = (
            RamIdentity(row.account_id, CallerKind.ROOT)
            if row.user_name is None
            else RamIdentity(row.account_id, CallerKind.USER, row.user_name)
        )
        return SessionState.ACTIVE, ActiveSession(token, principal, row.created_at, row.expires_at)

    def end(self, token: str) -> None:
        """End a session (sign-out); an unknown token changes nothing."""
        if valid_token_shape(token):
            self._store.delete(_token_hash(token))
