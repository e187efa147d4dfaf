"""Web console sessions in the KMS database, shared by every KMS node.

A row is keyed by the SHA-256 of the session token, so the database never
contains a token that a cookie could replay. It records the signed-in
principal (an account root when ``user_name`` is None, else a RAM user), when
the session began, when it was last used and when it ends at the latest.
The idle timeout is a setting of each node, so rows store ``last_seen_at``
and the caller decides.

Deleting an account or a RAM user deletes its sessions (ON DELETE CASCADE).

Example::

    sessions = ConsoleSessionStore(database)
    sessions.create(ConsoleSessionRow(token_hash, "1234567890123456", None, now, now, end))
    row = sessions.get(token_hash)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import delete, insert, or_, select, update

from hyok.kms.store.db import Database
from hyok.kms.store.tables import console_sessions

__all__ = ["TOKEN_HASH_LENGTH", "ConsoleSessionRow", "ConsoleSessionStore"]

TOKEN_HASH_LENGTH: Final = 32
"""Bytes of a session token hash (SHA-256)."""


@dataclass(frozen=True)
class ConsoleSessionRow:
    """One console session. ``user_name`` is None for the account root."""

    token_hash: bytes = field(repr=False)
    account_id: str
    user_name: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class ConsoleSessionStore:
    """The ``console_sessions`` table. Every method runs one short transaction and blocks."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __repr__(self) -> str:
        return f"ConsoleSessionStore({self._database!r})"

    def create(self, row: ConsoleSessionRow) -> None:
        """Insert a session; raises DuplicateRowError for a token hash that exists already."""
        _check_hash(row.token_hash)
        with self._database.session() as connection:
            connection.execute(
                insert(console_sessions).values(
                    token_hash=row.token_hash,
                    account_id=row.account_id,
                    user_name=row.user_name,
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    expires_at=row.expires_at,
                )
            )

    def get(self, token_hash: bytes) -> ConsoleSessionRow | None:
        """Return the session with this token hash, or None when there is none."""
        _check_hash(token_hash)
        with self._database.session(read_only=True) as connection:
            found = connection.execute(
                select(console_sessions).where(console_sessions.c.token_hash == token_hash)
            ).first()
        if found is None:
            return None
        return ConsoleSessionRow(
            token_hash=found.token_hash,
            account_id=found.account_id,
            user_name=found.user_name,
            created_at=found.created_at,
            last_seen_at=found.last_seen_at,
            expires_at=found.expires_at,
        )

    def touch(self, token_hash: bytes, last_seen_at: datetime) -> bool:
        """Move a session's last use forward; return False when the session no longer exists."""
        _check_hash(token_hash)
        with self._database.session() as connection:
            result = connection.execute(
                update(console_sessions)
                .where(console_sessions.c.token_hash == token_hash)
                .where(console_sessions.c.last_seen_at < last_seen_at)
                .values(last_seen_at=last_seen_at)
            )
            if result.rowcount:
                return True
            # No row moved: either the session is gone or another node touched it later.
            exists = connection.execute(
                select(console_sessions.c.account_id).where(
                    console_sessions.c.token_hash == token_hash
                )
            ).first()
        return exists is not None

    def delete(self, token_hash: bytes) -> None:
        """Delete a session; deleting one that does not exist changes nothing."""
        _check_hash(token_hash)
        with self._database.session() as connection:
            connection.execute(
                delete(console_sessions).where(console_sessions.c.token_hash == token_hash)
            )

    def delete_expired(self, now: datetime, idle_since: datetime) -> int:
        """Delete sessions past their end, or unused since ``idle_since``; return how many."""
        with self._database.session() as connection:
            result = connection.execute(
                delete(console_sessions).where(
                    or_(
                        console_sessions.c.expires_at <= now,
                        console_sessions.c.last_seen_at <= idle_since,
                    )
                )
            )
        return int(result.rowcount)


def _check_hash(token_hash: bytes) -> None:
    if len(token_hash) != TOKEN_HASH_LENGTH:
        raise ValueError(
            f"a console session token hash has {TOKEN_HASH_LENGTH} bytes, got {len(token_hash)}"
        )
