"""Add RAM users, roles, custom policies and their attachments, user AccessKeys and STS credentials.

Revision ID: 0003
Revises: 0002
Create Date: 2026-06-03

New tables:

- ram_users and ram_roles, with names unique per account;
- ram_policies, custom identity policies named per account, with one version;
- ram_user_policies and ram_role_policies, the attachments, which refer to
  the user or role and the policy by account and name;
- sts_credentials, the temporary credentials of role sessions, with the
  secret sealed by the SecretBox and only the SHA-256 of the security
  token. Deleting a role deletes its credentials.

access_keys gains the nullable column user_name, with a foreign key to the
RAM user (account_id, user_name). Existing AccessKeys keep NULL: they remain
AccessKeys of the account root. PostgreSQL adds the column and constraint in
place. SQLite cannot add a table constraint, so the table is rebuilt in the
migration's transaction: no table refers to access_keys, so copying the rows
out, dropping the table and creating it again loses nothing.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DIGITS: Final = "0123456789"
_ACCESS_KEY_COLUMNS: Final = (
    "access_key_id",
    "account_id",
    "status",
    "secret_ciphertext",
    "created_at",
)
_COPY_TABLE: Final = "hyok_r0003_access_keys_copy"


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _numeric_id(column: str) -> str:
    return f"length({column}) BETWEEN 15 AND 19 AND ltrim({column}, '{_DIGITS}') = ''"


def _user_name(column: str) -> str:
    return f"length({column}) BETWEEN 1 AND 64 AND ltrim({column}, '{_ALNUM}._-') = ''"


def _role_name(column: str) -> str:
    return f"length({column}) BETWEEN 1 AND 64 AND ltrim({column}, '{_ALNUM}.-') = ''"


def _access_keys_definition(*, with_user: bool) -> list[Any]:
    """Return the columns and constraints of access_keys in 0003, or in 0002."""
    user: list[Any] = (
        [
            sa.Column("user_name", sa.String(64), nullable=True),
            sa.ForeignKeyConstraint(
                ["account_id", "user_name"],
                ["ram_users.account_id", "ram_users.user_name"],
                name="fk_access_keys_user",
            ),
        ]
        if with_user
        else []
    )
    return [
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
        *user,
    ]


def _rebuild_sqlite_access_keys(*, with_user: bool) -> None:
    """Rebuild access_keys on SQLite with the definition of 0003 or 0002, keeping its rows."""
    # The statements are built from this module's constants only.
    columns = ", ".join(_ACCESS_KEY_COLUMNS)
    op.execute(f"CREATE TEMP TABLE {_COPY_TABLE} AS SELECT {columns} FROM access_keys")  # noqa: S608
    op.drop_table("access_keys")
    op.create_table("access_keys", *_access_keys_definition(with_user=with_user))
    op.create_index("ix_access_keys_account_id", "access_keys", ["account_id"])
    op.execute(
        f"INSERT INTO access_keys ({columns}) SELECT {columns} FROM {_COPY_TABLE}"  # noqa: S608
    )
    op.execute(f"DROP TABLE {_COPY_TABLE}")


def _create_identity_tables() -> None:
    op.create_table(
        "ram_users",
        sa.Column("user_id", sa.String(19), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("comments", sa.String(128), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_ram_users"),
        sa.UniqueConstraint("account_id", "user_name", name="uq_ram_users_account_id_user_name"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_ram_users_account_id"
        ),
        sa.CheckConstraint(_numeric_id("user_id"), name="ck_ram_users_user_id"),
        sa.CheckConstraint(_user_name("user_name"), name="ck_ram_users_user_name"),
        sa.CheckConstraint("length(display_name) <= 128", name="ck_ram_users_display_name"),
        sa.CheckConstraint("length(comments) <= 128", name="ck_ram_users_comments"),
    )
    op.create_table(
        "ram_roles",
        sa.Column("role_id", sa.String(19), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("role_name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("trust_policy", sa.Text(), nullable=False),
        sa.Column("max_session_duration", sa.Integer(), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("role_id", name="pk_ram_roles"),
        sa.UniqueConstraint("account_id", "role_name", name="uq_ram_roles_account_id_role_name"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_ram_roles_account_id"
        ),
        sa.CheckConstraint(_numeric_id("role_id"), name="ck_ram_roles_role_id"),
        sa.CheckConstraint(_role_name("role_name"), name="ck_ram_roles_role_name"),
        sa.CheckConstraint("length(description) <= 1024", name="ck_ram_roles_description"),
        sa.CheckConstraint(
            "length(trust_policy) BETWEEN 2 AND 2048", name="ck_ram_roles_trust_policy"
        ),
        sa.CheckConstraint(
            "max_session_duration BETWEEN 3600 AND 43200",
            name="ck_ram_roles_max_session_duration",
        ),
    )
    op.create_table(
        "ram_policies",
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("policy_name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "policy_name", name="pk_ram_policies"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_ram_policies_account_id"
        ),
        sa.CheckConstraint(
            f"length(policy_name) BETWEEN 1 AND 128 AND ltrim(policy_name, '{_ALNUM}-') = ''",
            name="ck_ram_policies_policy_name",
        ),
        sa.CheckConstraint("length(description) <= 1024", name="ck_ram_policies_description"),
        sa.CheckConstraint("length(document) BETWEEN 2 AND 6144", name="ck_ram_policies_document"),
    )
    for kind, name_column, name_check in (
        ("user", "user_name", _user_name("user_name")),
        ("role", "role_name", _role_name("role_name")),
    ):
        table = f"ram_{kind}_policies"
        op.create_table(
            table,
            sa.Column("account_id", sa.String(16), nullable=False),
            sa.Column(name_column, sa.String(64), nullable=False),
            sa.Column("policy_name", sa.String(128), nullable=False),
            sa.Column("attached_at", _datetime(), nullable=False),
            sa.PrimaryKeyConstraint("account_id", name_column, "policy_name", name=f"pk_{table}"),
            sa.ForeignKeyConstraint(
                ["account_id", name_column],
                [f"ram_{kind}s.account_id", f"ram_{kind}s.{name_column}"],
                name=f"fk_{table}_{kind}",
            ),
            sa.ForeignKeyConstraint(
                ["account_id", "policy_name"],
                ["ram_policies.account_id", "ram_policies.policy_name"],
                name=f"fk_{table}_policy",
            ),
            sa.CheckConstraint(name_check, name=f"ck_{table}_{name_column}"),
        )
        op.create_index(f"ix_{table}_account_id_policy_name", table, ["account_id", "policy_name"])


def _create_sts_credentials() -> None:
    op.create_table(
        "sts_credentials",
        sa.Column("access_key_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("role_name", sa.String(64), nullable=False),
        sa.Column("session_name", sa.String(64), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("source_arn", sa.String(256), nullable=False),
        sa.Column("expires_at", _datetime(), nullable=False),
        sa.Column(
            "revoked",
            sa.Boolean(create_constraint=True, name="ck_sts_credentials_revoked_boolean"),
            nullable=False,
        ),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_sts_credentials"),
        sa.ForeignKeyConstraint(
            ["account_id", "role_name"],
            ["ram_roles.account_id", "ram_roles.role_name"],
            name="fk_sts_credentials_role",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "substr(access_key_id, 1, 4) = 'STS.' AND length(access_key_id) BETWEEN 20 AND 128 "
            f"AND ltrim(substr(access_key_id, 5), '{_ALNUM}') = ''",
            name="ck_sts_credentials_access_key_id",
        ),
        sa.CheckConstraint(
            f"length(session_name) BETWEEN 2 AND 64 AND ltrim(session_name, '{_ALNUM}.@_-') = ''",
            name="ck_sts_credentials_session_name",
        ),
        sa.CheckConstraint("length(token_hash) = 32", name="ck_sts_credentials_token_hash"),
        sa.CheckConstraint(
            "length(source_arn) BETWEEN 1 AND 256", name="ck_sts_credentials_source_arn"
        ),
    )
    op.create_index(
        "ix_sts_credentials_account_id_role_name", "sts_credentials", ["account_id", "role_name"]
    )
    op.create_index("ix_sts_credentials_expires_at", "sts_credentials", ["expires_at"])


def upgrade() -> None:
    _create_identity_tables()
    _create_sts_credentials()

    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_access_keys(with_user=True)
    else:
        op.add_column("access_keys", sa.Column("user_name", sa.String(64), nullable=True))
        op.create_foreign_key(
            "fk_access_keys_user",
            "access_keys",
            "ram_users",
            ["account_id", "user_name"],
            ["account_id", "user_name"],
        )
    op.create_index(
        "ix_access_keys_account_id_user_name", "access_keys", ["account_id", "user_name"]
    )


def downgrade() -> None:
    users = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM access_keys WHERE user_name IS NOT NULL")
    )
    if users:
        raise RuntimeError(
            f"{users} AccessKey(s) belong to RAM users, which revision 0002 cannot store: delete "
            "them (DeleteAccessKey) before downgrading"
        )

    op.drop_index("ix_access_keys_account_id_user_name", "access_keys")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_access_keys(with_user=False)
    else:
        op.drop_constraint("fk_access_keys_user", "access_keys", type_="foreignkey")
        op.drop_column("access_keys", "user_name")
    for table in (
        "sts_credentials",
        "ram_role_policies",
        "ram_user_policies",
        "ram_policies",
        "ram_roles",
        "ram_users",
    ):
        op.drop_table(table)
