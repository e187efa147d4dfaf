"""Schema migrations of the KMS database (Alembic), run from Python with :func:`upgrade`.

The Alembic environment and revisions ship inside the hyok package, so no
``alembic.ini`` is needed. :func:`upgrade` runs every migration in one
transaction: on SQLite under ``BEGIN IMMEDIATE``, and on PostgreSQL under an
advisory lock, so that nodes starting together migrate once and a failed
migration leaves the schema as it was. Both databases have transactional DDL.

The revision that the schema is at is stored in the table ``kms_schema_version``.

Example::

    database = open_database(url)
    upgrade(database)
    check_current(database)  # at every start, before serving requests
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, text

from hyok.kms.store.db import Database, open_database
from hyok.kms.store.errors import SchemaVersionError

__all__ = [
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "check_current",
    "current_revision",
    "head_revision",
    "upgrade",
]

SCRIPT_LOCATION: Final = "hyok.kms.store:migrations"
VERSION_TABLE: Final = "kms_schema_version"
# The key of the PostgreSQL advisory lock that serializes migrations: the
# ASCII bytes of "hyok-mig" as a big-endian 64-bit integer.
_MIGRATION_LOCK_KEY: Final = int.from_bytes(b"hyok-mig", "big", signed=True)
_MIGRATION_LOCK_TIMEOUT: Final = timedelta(minutes=5)

MigrationTarget = Database | Engine | URL | str


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


@contextmanager
def _transaction(target: MigrationTarget) -> Iterator[Connection]:
    """Open one transaction on the target. A URL gets a Database that is disposed afterwards."""
    if isinstance(target, Database):
        with target.session() as connection:
            yield connection
        return
    if isinstance(target, Engine):
        with target.begin() as connection:
            yield connection
        return
    database = open_database(target)
    try:
        with database.session() as connection:
            yield connection
    finally:
        database.dispose()


def upgrade(target: MigrationTarget, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (the latest by default) in one transaction.

    ``target`` is a :class:`Database`, an Engine or a URL. For a PostgreSQL
    :class:`Database` with a schema, the schema is created when it does not
    exist. Raises StoreUnavailableError when the database cannot be reached.

    NOTE: pass a Database or a URL for SQLite, not an Engine. On a plain
    SQLite Engine the sqlite3 module runs DDL outside the transaction, so a
    failed migration could leave some tables behind.
    """
    if isinstance(target, Database) and target.dialect == "postgresql" and target.schema:
        with target.session() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"')

    config = _config()
    with _transaction(target) as connection:
        if connection.dialect.name == "postgresql":
            timeout_ms = int(_MIGRATION_LOCK_TIMEOUT.total_seconds() * 1000)
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str:
    """Return the latest revision that this version of hyok ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("hyok ships no KMS migrations")
    return head


def current_revision(target: MigrationTarget) -> str | None:
    """Return the revision the database is at, or None when it was never migrated."""
    with _transaction(target) as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def check_current(target: MigrationTarget) -> None:
    """Raise SchemaVersionError unless the database is at this version's latest revision."""
    current = current_revision(target)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaVersionError(
            "the KMS database has no schema yet: run the migrations (hyok.kms.store.migrations."
            "upgrade) before starting the KMS"
        )
    raise SchemaVersionError(
        f"the KMS database schema is at revision {current!r}, and this hyok needs {head!r}: "
        "run the migrations, or run the hyok version that wrote this schema"
    )
