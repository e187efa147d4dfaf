"""Create the KMS tables: accounts, AccessKeys, instances, keys, key versions, signature nonces.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

The same statements run on SQLite and PostgreSQL, except for the foreign key
from a key to its primary key version. Keys and key versions refer to each
other, so PostgreSQL gets that constraint after both tables exist, while
SQLite, which cannot add a constraint to an existing table, gets it inline:
SQLite accepts a reference to a table that does not exist yet.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_REGION_CHECK = f"length(region) BETWEEN 1 AND 64 AND ltrim(region, '{_LOWER_ALNUM}-') = ''"


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
        sa.CheckConstraint(
            "length(account_id) BETWEEN 12 AND 16 AND ltrim(account_id, '0123456789') = ''",
            name="ck_accounts_account_id",
        ),
    )

    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_access_keys_account_id"
        ),
        sa.CheckConstraint(
            f"length(access_key_id) BETWEEN 16 AND 128 AND ltrim(access_key_id, '{_ALNUM}') = ''",
            name="ck_access_keys_access_key_id",
        ),
        sa.CheckConstraint("status IN ('Active', 'Inactive')", name="ck_access_keys_status"),
    )
    op.create_index("ix_access_keys_account_id", "access_keys", ["account_id"])

    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("connectivity", sa.String(16), nullable=False),
        sa.Column("proxy_endpoint", sa.String(2048), nullable=False),
        sa.Column("proxy_uri_path", sa.String(128), nullable=False),
        sa.Column("vpc_endpoint_service", sa.String(255), nullable=True),
        sa.Column("proxy_access_key_id", sa.String(30), nullable=False),
        sa.Column("proxy_secret_ciphertext", sa.LargeBinary(), nullable=False),
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
        sa.CheckConstraint(_REGION_CHECK, name="ck_instances_region"),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 128", name="ck_instances_name"),
        sa.CheckConstraint("connectivity IN ('public', 'vpc')", name="ck_instances_connectivity"),
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
    )
    op.create_index("ix_instances_account_id_region", "instances", ["account_id", "region"])

    primary_version_reference = sa.ForeignKeyConstraint(
        ["key_id", "primary_key_version_id"],
        ["key_versions.key_id", "key_versions.key_version_id"],
        name="fk_keys_primary_key_version",
        deferrable=True,
        initially="DEFERRED",
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("external_key_id", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("key_spec", sa.String(32), nullable=False),
        sa.Column("key_usage", sa.String(32), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("protection_level", sa.String(16), nullable=False),
        sa.Column("creator", sa.String(64), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("primary_key_version_id", sa.String(36), nullable=False),
        sa.Column(
            "deletion_protection",
            sa.Boolean(create_constraint=True, name="ck_keys_deletion_protection_boolean"),
            nullable=False,
        ),
        sa.Column("deletion_protection_description", sa.String(1024), nullable=False),
        sa.Column("delete_date", _datetime(), nullable=True),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_keys"),
        sa.UniqueConstraint("primary_key_version_id", name="uq_keys_primary_key_version_id"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name="fk_keys_account_id"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.instance_id"], name="fk_keys_instance_id"
        ),
        *([primary_version_reference] if sqlite else []),
        sa.CheckConstraint(
            "substr(key_id, 1, 4) = 'key-' AND length(key_id) BETWEEN 5 AND 128 "
            f"AND ltrim(substr(key_id, 5), '{_LOWER_ALNUM}') = ''",
            name="ck_keys_key_id",
        ),
        sa.CheckConstraint(_REGION_CHECK, name="ck_keys_region"),
        sa.CheckConstraint(
            "length(external_key_id) BETWEEN 1 AND 128 "
            f"AND ltrim(external_key_id, '{_ALNUM}._-') = ''",
            name="ck_keys_external_key_id",
        ),
        sa.CheckConstraint("length(description) <= 8192", name="ck_keys_description"),
        sa.CheckConstraint(
            "state IN ('Enabled', 'Disabled', 'PendingDeletion')", name="ck_keys_state"
        ),
        sa.CheckConstraint("key_spec IN ('Aliyun_AES_256')", name="ck_keys_key_spec"),
        sa.CheckConstraint("key_usage IN ('ENCRYPT/DECRYPT')", name="ck_keys_key_usage"),
        sa.CheckConstraint("origin IN ('Aliyun_KMS', 'EXTERNAL')", name="ck_keys_origin"),
        sa.CheckConstraint(
            "protection_level IN ('SOFTWARE', 'HSM')", name="ck_keys_protection_level"
        ),
        sa.CheckConstraint("length(creator) BETWEEN 1 AND 64", name="ck_keys_creator"),
        sa.CheckConstraint(
            "length(primary_key_version_id) = 36 "
            "AND ltrim(primary_key_version_id, '0123456789abcdef-') = ''",
            name="ck_keys_primary_key_version_id",
        ),
        sa.CheckConstraint(
            "length(deletion_protection_description) <= 1024 "
            "AND (deletion_protection OR deletion_protection_description = '')",
            name="ck_keys_deletion_protection_description",
        ),
        sa.CheckConstraint(
            "(state = 'PendingDeletion' AND delete_date IS NOT NULL) "
            "OR (state <> 'PendingDeletion' AND delete_date IS NULL)",
            name="ck_keys_delete_date",
        ),
        sa.CheckConstraint(
            "NOT (deletion_protection AND state = 'PendingDeletion')",
            name="ck_keys_deletion_protection_state",
        ),
        sa.CheckConstraint("length(policy) BETWEEN 2 AND 32768", name="ck_keys_policy"),
    )
    op.create_index(
        "ix_keys_account_id_region_created_at",
        "keys",
        ["account_id", "region", "created_at", "key_id"],
    )
    op.create_index("ix_keys_instance_id", "keys", ["instance_id"])

    op.create_table(
        "key_versions",
        sa.Column("key_version_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("key_version_id", name="pk_key_versions"),
        sa.UniqueConstraint(
            "key_id", "key_version_id", name="uq_key_versions_key_id_key_version_id"
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_key_versions_key_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "length(key_version_id) = 36 AND ltrim(key_version_id, '0123456789abcdef-') = ''",
            name="ck_key_versions_key_version_id",
        ),
    )
    if not sqlite:
        op.create_foreign_key(
            "fk_keys_primary_key_version",
            "keys",
            "key_versions",
            ["key_id", "primary_key_version_id"],
            ["key_id", "key_version_id"],
            deferrable=True,
            initially="DEFERRED",
        )

    op.create_table(
        "signature_nonces",
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", "nonce", name="pk_signature_nonces"),
    )
    op.create_index("ix_signature_nonces_expires_at", "signature_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_table("signature_nonces")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_keys_primary_key_version", "keys", type_="foreignkey")
    op.drop_table("key_versions")
    op.drop_table("keys")
    op.drop_table("instances")
    op.drop_table("access_keys")
    op.drop_table("accounts")
