"""Let an instance exist without a proxy configuration, and add the key_tags table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-27

Instances: the columns proxy_endpoint, proxy_uri_path, proxy_access_key_id
and proxy_secret_ciphertext become nullable, and the CHECK constraint
ck_instances_proxy_configuration requires all four or none. An instance
without them has no VPC endpoint service or TLS fingerprint and is
Uninitialized or Disconnected. Every row that revision 0001 allowed
passes this constraint, because all four columns were NOT NULL.

Key tags: one row per tag of a key, at most 128 characters per tag key and
value, deleted with the key.

PostgreSQL changes the instances table in place. SQLite cannot change a
column's NULL constraint or add a CHECK constraint to a table, so the
table is rebuilt in the migration's transaction:

1. ``PRAGMA defer_foreign_keys`` makes every foreign key check wait for the
   commit. ``PRAGMA foreign_keys`` cannot be turned off inside a transaction.
2. The rows are copied to a temporary table, and the old table is dropped.
   SQLite deletes the rows first, which counts one foreign key violation for
   each key of a dropped instance.
3. The new table is created under the final name and the rows are copied
   back. Each inserted instance removes the violations of its keys, so the
   commit succeeds exactly when every key still has its instance.

Alembic's batch mode is not used because it creates the new table under a
temporary name and renames it after the drop. Renaming inserts no rows, so
the violations counted by the drop remain, and the commit fails as soon as
one key exists.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_LOWER_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_PROXY_COLUMNS: Final[dict[str, sa.types.TypeEngine[Any]]] = {
    "proxy_endpoint": sa.String(2048),
    "proxy_uri_path": sa.String(128),
    "proxy_access_key_id": sa.String(30),
    "proxy_secret_ciphertext": sa.LargeBinary(),
}
_PROXY_CONFIGURATION_CHECK: Final = (
    "(proxy_endpoint IS NOT NULL AND proxy_uri_path IS NOT NULL "
    "AND proxy_access_key_id IS NOT NULL AND proxy_secret_ciphertext IS NOT NULL) "
    "OR (proxy_endpoint IS NULL AND proxy_uri_path IS NULL "
    "AND proxy_access_key_id IS NULL AND proxy_secret_ciphertext IS NULL "
    "AND vpc_endpoint_service IS NULL AND tls_fingerprint IS NULL "
    "AND status IN ('Uninitialized', 'Disconnected'))"
)
_INSTANCE_COLUMNS: Final = (
    "instance_id",
    "account_id",
    "region",
    "name",
    "connectivity",
    "proxy_endpoint",
    "proxy_uri_path",
    "vpc_endpoint_service",
    "proxy_access_key_id",
    "proxy_secret_ciphertext",
    "tls_fingerprint",
    "status",
    "error_reason",
    "error_detail",
    "last_health_check_at",
    "created_at",
)
_COPY_TABLE: Final = "hyok_r0002_instances_copy"


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _instances_definition(*, optional_proxy: bool) -> list[Any]:
    """Return the columns and constraints of the instances table of 0002, or of 0001."""
    proxy_nullable = optional_proxy
    extra_checks = (
        [sa.CheckConstraint(_PROXY_CONFIGURATION_CHECK, name="ck_instances_proxy_configuration")]
        if optional_proxy
        else []
    )
    return [
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("connectivity", sa.String(16), nullable=False),
        sa.Column("proxy_endpoint", sa.String(2048), nullable=proxy_nullable),
        sa.Column("proxy_uri_path", sa.String(128), nullable=proxy_nullable),
        sa.Column("vpc_endpoint_service", sa.String(255), nullable=True),
        sa.Column("proxy_access_key_id", sa.String(30), nullable=proxy_nullable),
        sa.Column("proxy_secret_ciphertext", sa.LargeBinary(), nullable=proxy_nullable),
        sa.Column("tls_fingerprint", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_reason", sa.String(32), nullable=True),
        sa.Column("error_detail", sa.String(1024), nullable=False),
        sa.Column("last_health_check_at", _datetime(), nullable=True),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name="pk_instances"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_instances_account_id"
        ),
        sa.CheckConstraint(
            "substr(instance_id, 1, 4) = 'kst-' AND length(instance_id) BETWEEN 5 AND 64 "
            f"AND ltrim(substr(instance_id, 5), '{_LOWER_ALNUM}') = ''",
            name="ck_instances_instance_id",
        ),
        sa.CheckConstraint(
            f"length(region) BETWEEN 1 AND 64 AND ltrim(region, '{_LOWER_ALNUM}-') = ''",
            name="ck_instances_region",
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 128", name="ck_instances_name"),
        sa.CheckConstraint("connectivity IN ('public', 'vpc')", name="ck_instances_connectivity"),
        *extra_checks,
        sa.CheckConstraint(
            "substr(proxy_endpoint, 1, 8) = 'https://' "
            "AND length(proxy_endpoint) BETWEEN 9 AND 2048",
            name="ck_instances_proxy_endpoint",
        ),
        sa.CheckConstraint(
            "length(proxy_uri_path) BETWEEN 11 AND 128 "
            "AND substr(proxy_uri_path, length(proxy_uri_path) - 10) = '/kms/xks/v1'",
            name="ck_instances_proxy_uri_path",
        ),
        sa.CheckConstraint(
            "(connectivity = 'vpc' AND vpc_endpoint_service IS NOT NULL "
            "AND length(vpc_endpoint_service) BETWEEN 1 AND 255) "
            "OR (connectivity <> 'vpc' AND vpc_endpoint_service IS NULL)",
            name="ck_instances_vpc_endpoint_service",
        ),
        sa.CheckConstraint(
            "length(proxy_access_key_id) BETWEEN 20 AND 30 "
            "AND ltrim(proxy_access_key_id, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567') = ''",
            name="ck_instances_proxy_access_key_id",
        ),
        sa.CheckConstraint(
            "length(tls_fingerprint) = 64 AND ltrim(tls_fingerprint, '0123456789abcdef') = ''",
            name="ck_instances_tls_fingerprint",
        ),
        sa.CheckConstraint(
            "status IN ('Uninitialized', 'Connecting', 'Connected', 'Disconnected', 'Error')",
            name="ck_instances_status",
        ),
        sa.CheckConstraint(
            "error_reason IN ('CredentialsRejected', 'UriPathInvalid', 'ProxyUnreachable', "
            "'TimedOut', 'InvalidResponse', 'TlsFailure', 'ProxyFailure')",
            name="ck_instances_error_reason",
        ),
        sa.CheckConstraint(
            "(status = 'Error' AND error_reason IS NOT NULL) OR status = 'Disconnected' "
            "OR (status NOT IN ('Error', 'Disconnected') AND error_reason IS NULL)",
            name="ck_instances_error_reason_status",
        ),
        sa.CheckConstraint(
            "length(error_detail) <= 1024 AND (error_detail = '' OR error_reason IS NOT NULL)",
            name="ck_instances_error_detail",
        ),
    ]


def _rebuild_sqlite_instances(*, optional_proxy: bool) -> None:
    """Rebuild the instances table on SQLite with the definition of 0002 or 0001.

    The module docstring explains the order of the steps.
    """
    # The statements are built from this module's constants only.
    columns = ", ".join(_INSTANCE_COLUMNS)
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(f"CREATE TEMP TABLE {_COPY_TABLE} AS SELECT {columns} FROM instances")  # noqa: S608
    op.drop_table("instances")
    op.create_table("instances", *_instances_definition(optional_proxy=optional_proxy))
    op.create_index("ix_instances_account_id_region", "instances", ["account_id", "region"])
    op.execute(
        f"INSERT INTO instances ({columns}) SELECT {columns} FROM {_COPY_TABLE}"  # noqa: S608
    )
    op.execute(f"DROP TABLE {_COPY_TABLE}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_instances(optional_proxy=True)
    else:
        for column, column_type in _PROXY_COLUMNS.items():
            op.alter_column("instances", column, existing_type=column_type, nullable=True)
        op.create_check_constraint(
            "ck_instances_proxy_configuration", "instances", _PROXY_CONFIGURATION_CHECK
        )

    op.create_table(
        "key_tags",
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("tag_key", sa.String(128), nullable=False),
        sa.Column("tag_value", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "tag_key", name="pk_key_tags"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_key_tags_key_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("length(tag_key) BETWEEN 1 AND 128", name="ck_key_tags_tag_key"),
        sa.CheckConstraint("length(tag_value) <= 128", name="ck_key_tags_tag_value"),
    )


def downgrade() -> None:
    unconfigured = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM instances WHERE proxy_endpoint IS NULL")
    )
    if unconfigured:
        raise RuntimeError(
            f"{unconfigured} instance(s) have no XKI proxy configuration, which revision 0001 "
            "cannot store: configure their proxies (UpdateXkiProxyConfiguration) before "
            "downgrading"
        )

    op.drop_table("key_tags")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_instances(optional_proxy=False)
    else:
        op.drop_constraint("ck_instances_proxy_configuration", "instances", type_="check")
        for column, column_type in _PROXY_COLUMNS.items():
            op.alter_column("instances", column, existing_type=column_type, nullable=False)
