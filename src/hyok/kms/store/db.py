"""Connections to the KMS database: an embedded SQLite file, or PostgreSQL through psycopg 3.

:func:`open_database` builds a :class:`Database` from a URL:

- ``sqlite:///path/to/kms.db`` (a file; in-memory databases are rejected
  because each pooled connection would see its own empty database). Every
  connection turns on foreign keys, WAL journaling and a busy timeout. A
  transaction that may write starts with ``BEGIN IMMEDIATE``, so writers
  queue on the database lock for up to the busy timeout instead of failing
  when a read lock cannot be upgraded. Read-only sessions use ``BEGIN`` and
  do not wait for writers.
- ``postgresql://…`` or ``postgresql+psycopg://…`` (psycopg 3). ``schema``
  puts every table in that schema through the connection's ``search_path``,
  so tests and deployments can share one database. Read-only sessions run
  at REPEATABLE READ, so a count and a page read in one session agree.

Engines are created with ``hide_parameters=True``: SQL logs and SQLAlchemy
error messages never contain the values of a statement.

Example::

    database = open_database("sqlite:///var/lib/hyok/kms.db")
    with database.session() as connection:
        connection.execute(...)
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from hyok.common.errors import ConfigError
from hyok.kms.store.errors import StoreUnavailableError, integrity_error

__all__ = ["DEFAULT_BUSY_TIMEOUT", "Database", "open_database"]

DEFAULT_BUSY_TIMEOUT: Final = timedelta(seconds=5)
_CONNECT_TIMEOUT_SECONDS: Final = 10
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SQLITE_BEGIN_OPTION: Final = "hyok_sqlite_begin"


class Database:
    """An engine on the KMS database, and sessions with one transaction each.

    Build one with :func:`open_database`. A Database is safe to share between
    threads, and :meth:`dispose` closes its pooled connections.
    """

    def __init__(self, engine: Engine, *, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self.engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        schema = f", schema={self.schema!r}" if self.schema else ""
        return f"Database({self.url!r}{schema})"

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Connection]:
        """Open a connection in one transaction, commit it on exit, and roll it back on an error.

        Raises StoreUnavailableError when the database cannot be reached, a
        lock wait times out or a transaction is chosen as a deadlock victim,
        and IntegrityViolationError when a constraint that is checked at
        commit fails. Either way nothing of the transaction remains.
        """
        try:
            with self.engine.connect() as connection:
                if read_only:
                    self._make_read_only(connection)
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            raise StoreUnavailableError(
                f"the database {self.url} is unavailable, or a lock or statement timed out "
                f"({type(exc.orig).__name__}): retry later, and check the database if this "
                "persists"
            ) from exc
        except IntegrityError as exc:
            raise integrity_error(exc, "the transaction") from exc

    def _make_read_only(self, connection: Connection) -> None:
        if self.dialect == "sqlite":
            connection.execution_options(**{_SQLITE_BEGIN_OPTION: "BEGIN"})
        else:
            connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )

    def dispose(self) -> None:
        """Close every pooled connection. Sessions opened later reconnect."""
        self.engine.dispose()


def _seconds(value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"busy_timeout must not be negative, got {seconds} seconds")
    return seconds


def open_database(
    url: str | URL,
    *,
    schema: str | None = None,
    busy_timeout: timedelta | float = DEFAULT_BUSY_TIMEOUT,
    pool_size: int = 5,
    max_overflow: int = 10,
) -> Database:
    """Create a :class:`Database` for a SQLite file or a PostgreSQL URL. Nothing connects yet.

    ``busy_timeout`` (a timedelta or seconds) is how long a SQLite
    connection waits for the database lock before it gives up, and is the
    PostgreSQL ``lock_timeout``. ``schema`` applies only to PostgreSQL, and
    the schema must exist before tables are created in it, or
    :func:`hyok.kms.store.migrations.upgrade` creates it.

    Raises ConfigError, naming the problem, for a URL that hyok cannot use.
    The message masks the password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "the KMS database URL is not a valid URL: write sqlite:///path/to/kms.db or "
            "postgresql://user@host:5432/database"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    timeout = _seconds(busy_timeout)
    backend = parsed.get_backend_name()

    if backend == "sqlite":
        if schema is not None:
            raise ConfigError(
                f"the database URL {shown} is SQLite, which has no schemas: remove the schema "
                "setting or use PostgreSQL"
            )
        return Database(_sqlite_engine(parsed, shown, timeout))
    if backend == "postgresql":
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"invalid schema name {schema!r}: use 1 to 63 lower-case letters, digits and "
                "'_', starting with a letter or '_'"
            )
        engine = _postgresql_engine(parsed, shown, schema, timeout, pool_size, max_overflow)
        return Database(engine, schema=schema)
    raise ConfigError(
        f"the database URL {shown} names {backend!r}: hyok stores KMS data in SQLite "
        "(sqlite:///path) or PostgreSQL (postgresql://...)"
    )


def _create_private(path: Path) -> None:
    """Create a missing SQLite file for its owner only; SQLite gives its WAL files that mode."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError:
        # SQLite reports a missing directory or a permission problem itself, with its own words.
        return
    os.close(descriptor)


def _sqlite_engine(url: URL, shown: str, timeout: float) -> Engine:
    if url.get_driver_name() != "pysqlite":
        raise ConfigError(f"the database URL {shown} names a SQLite driver other than sqlite3")
    database = url.database or ""
    mode = url.query.get("mode")
    if database in ("", ":memory:") or database.startswith("file::memory:") or mode == "memory":
        raise ConfigError(
            f"the database URL {shown} is an in-memory SQLite database, which each connection "
            "would see empty: give a file path, such as sqlite:///var/lib/hyok/kms.db"
        )
    if not database.startswith("file:"):
        _create_private(Path(database))
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"check_same_thread": False},
    )
    busy_timeout_ms = round(timeout * 1000)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: the "begin" hook below issues BEGIN
        # itself, because the sqlite3 module would otherwise start transactions
        # late and never as IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            journal_mode = _enable_wal(cursor, timeout)
        finally:
            cursor.close()
        if str(journal_mode).lower() != "wal":
            raise ConfigError(
                f"the SQLite database {shown} cannot use WAL journaling (mode is "
                f"{journal_mode!r}): "
                "put it on a local file system"
            )

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        begin = connection.get_execution_options().get(_SQLITE_BEGIN_OPTION, "BEGIN IMMEDIATE")
        connection.exec_driver_sql(begin)

    return engine


def _enable_wal(cursor: Any, timeout: float) -> str:
    """Switch a SQLite file to WAL journaling and return the journal mode it ends in.

    WAL is stored in the file, so only the first connection switches. That
    switch needs an exclusive lock, and SQLite may report "database is locked"
    at once instead of waiting when several processes open a new file
    together, so it is retried until the busy timeout.
    """
    cursor.execute("PRAGMA journal_mode")
    mode = str(cursor.fetchone()[0])
    deadline = time.monotonic() + timeout
    delay = 0.005
    while mode.lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            mode = str(cursor.fetchone()[0])
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    return mode


def _postgresql_engine(
    url: URL,
    shown: str,
    schema: str | None,
    timeout: float,
    pool_size: int,
    max_overflow: int,
) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif url.get_driver_name() != "psycopg":
        raise ConfigError(
            f"the database URL {shown} names a PostgreSQL driver other than psycopg 3: write "
            "postgresql:// or postgresql+psycopg://"
        )
    # Server settings for every connection, as libpq "-c name=value" options.
    options = [f"-c lock_timeout={round(timeout * 1000)}"]
    if schema is not None:
        options.append(f"-c search_path={schema}")
    return create_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={
            "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
            "application_name": "hyok-kms",
            "options": " ".join(options),
        },
    )
