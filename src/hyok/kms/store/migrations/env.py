"""The Alembic environment of the KMS database, run by :func:`hyok.kms.store.migrations.upgrade`.

Alembic imports this file for every migration command. It runs only online,
on the connection that ``upgrade`` opens and passes in ``config.attributes``,
so that the caller's transaction and locks cover the whole migration.
"""

from __future__ import annotations

from alembic import context

from hyok.kms.store.migrations import VERSION_TABLE
from hyok.kms.store.tables import metadata

if context.is_offline_mode():
    raise RuntimeError(
        "hyok's KMS migrations run only online: call hyok.kms.store.migrations.upgrade()"
    )

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "no database connection was passed to the migration environment: call "
        "hyok.kms.store.migrations.upgrade() instead of the alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
)
with context.begin_transaction():
    context.run_migrations()
