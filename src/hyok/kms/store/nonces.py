"""A replay cache of signature nonces in the KMS database, shared by every KMS node.

Each accepted request stores ``(access key ID, nonce)`` under the primary key
of the ``signature_nonces`` table, with the time the entry expires. One
upsert statement does the check and the store::

    INSERT … ON CONFLICT (access_key_id, nonce)
    DO UPDATE SET expires_at = excluded.expires_at WHERE signature_nonces.expires_at <= now

It writes a row when the nonce is new, or replaces an entry that has
expired, and writes nothing when an unexpired entry exists, which makes the
request a replay. The ``RETURNING`` clause returns a row only when the
statement wrote one. PostgreSQL and SQLite 3.35 or later run this form, and
both decide it atomically when two nodes send the same nonce at once.

Expired rows are deleted in batches of at most ``sweep_batch_size`` rows, each
in its own short transaction. With the default settings a request starts a
sweep at most every ``sweep_interval``, after its own nonce is stored; pass
``sweep_interval=None`` to leave sweeping to a background job that calls
:meth:`DatabaseNonceCache.sweep`. On PostgreSQL, concurrent sweeps skip
each other's locked rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from hyok.common.acs_signature import NonceCache, SignatureError, SignatureErrorCode
from hyok.kms.store.db import Database
from hyok.kms.store.errors import StoreError
from hyok.kms.store.tables import signature_nonces

__all__ = ["DEFAULT_SWEEP_BATCH_SIZE", "DEFAULT_SWEEP_INTERVAL", "DatabaseNonceCache"]

logger = logging.getLogger(__name__)

DEFAULT_SWEEP_INTERVAL: Final = timedelta(seconds=10)
DEFAULT_SWEEP_BATCH_SIZE: Final = 1_000
# Batches in one automatic sweep. 50 batches of 1,000 rows every 10 seconds
# remove up to 5,000 expired nonces per second, that is 5,000 requests per
# second across all nodes.
_MAX_SWEEP_BATCHES: Final = 50
_MAX_COLUMN_LENGTH: Final = 128


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DatabaseNonceCache(NonceCache):
    """A :class:`NonceCache` in the KMS database, so that every node checks the nonces of all nodes.

    ``clock`` must be the clock of the verifier that passes ``expires_at``.
    A database failure while storing a nonce raises SignatureError with code
    ``Throttling``, so the request is rejected and the client retries later.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime] = _utc_now,
        sweep_interval: timedelta | None = DEFAULT_SWEEP_INTERVAL,
        sweep_batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    ) -> None:
        if sweep_batch_size < 1:
            raise ValueError(f"sweep_batch_size must be at least 1, got {sweep_batch_size}")
        if sweep_interval is not None and sweep_interval <= timedelta(0):
            raise ValueError("sweep_interval must be positive, or None to turn sweeping off")
        self._database = database
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._sweep_batch_size = sweep_batch_size
        self._next_sweep: datetime | None = None
        self._sweep_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DatabaseNonceCache({self._database!r}, sweep_interval={self._sweep_interval!r})"

    def check_and_store(self, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
        # The verifier accepts at most 128 characters for each, as the columns do.
        for name, value in (("access_key_id", access_key_id), ("nonce", nonce)):
            if len(value) > _MAX_COLUMN_LENGTH:
                raise ValueError(f"{name} is longer than {_MAX_COLUMN_LENGTH} characters")
        now = self._clock()
        if expires_at <= now:
            # The verifier rejects the request time before a replay could reach this.
            return True
        try:
            with self._database.session() as connection:
                statement = self._upsert(access_key_id, nonce, expires_at, now)
                stored = connection.execute(statement).first() is not None
        except StoreError as exc:
            logger.warning(
                "cannot store a signature nonce of access key ID %s: %s", access_key_id, exc
            )
            raise SignatureError(
                SignatureErrorCode.THROTTLING,
                "the signature nonce cannot be stored because the KMS database is unavailable: "
                "retry later",
            ) from exc
        self._sweep_if_due(now)
        return stored

    def _upsert(self, access_key_id: str, nonce: str, expires_at: datetime, now: datetime) -> Any:
        values = {"access_key_id": access_key_id, "nonce": nonce, "expires_at": expires_at}
        if self._database.dialect == "postgresql":
            pg_statement = postgresql.insert(signature_nonces).values(**values)
            return pg_statement.on_conflict_do_update(
                index_elements=["access_key_id", "nonce"],
                set_={"expires_at": pg_statement.excluded.expires_at},
                where=signature_nonces.c.expires_at <= now,
            ).returning(signature_nonces.c.nonce)
        sqlite_statement = sqlite.insert(signature_nonces).values(**values)
        return sqlite_statement.on_conflict_do_update(
            index_elements=["access_key_id", "nonce"],
            set_={"expires_at": sqlite_statement.excluded.expires_at},
            where=signature_nonces.c.expires_at <= now,
        ).returning(signature_nonces.c.nonce)

    def _sweep_if_due(self, now: datetime) -> None:
        if self._sweep_interval is None:
            return
        # One sweep at a time per process; other threads carry on.
        if not self._sweep_lock.acquire(blocking=False):
            return
        try:
            if self._next_sweep is not None and now < self._next_sweep:
                return
            self._next_sweep = now + self._sweep_interval
            try:
                self.sweep(now, max_batches=_MAX_SWEEP_BATCHES)
            except StoreError as exc:
                # The nonce is stored; expired rows wait for the next sweep.
                logger.warning("sweeping expired signature nonces failed: %s", exc)
        finally:
            self._sweep_lock.release()

    def sweep(self, now: datetime | None = None, *, max_batches: int | None = None) -> int:
        """Delete nonces that expired at or before ``now``, and return how many were deleted.

        Deletes batches of ``sweep_batch_size`` rows, each in its own
        transaction, until a batch is not full or ``max_batches`` batches ran.
        """
        now = self._clock() if now is None else now
        deleted = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            expired = (
                select(signature_nonces.c.access_key_id, signature_nonces.c.nonce)
                .where(signature_nonces.c.expires_at <= now)
                .limit(self._sweep_batch_size)
                .with_for_update(skip_locked=True)
            )
            statement = delete(signature_nonces).where(
                tuple_(signature_nonces.c.access_key_id, signature_nonces.c.nonce).in_(expired)
            )
            with self._database.session() as connection:
                count = connection.execute(statement).rowcount
            deleted += count
            batches += 1
            if count < self._sweep_batch_size:
                break
        if deleted:
            logger.debug("deleted %d expired signature nonces", deleted)
        return deleted
