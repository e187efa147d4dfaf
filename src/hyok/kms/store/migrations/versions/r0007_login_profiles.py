"""Add console passwords: login profiles of RAM users and the console password of each account root.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10

New tables, the same on SQLite and PostgreSQL:

- ``ram_login_profiles``, one row per RAM user that may sign in to the
  console, with the scrypt hash of the password. It refers to the user
  without ON DELETE CASCADE, because DeleteUser rejects a user that still has
  a login profile, as it does for AccessKeys.
- ``account_console_passwords``, at most one row per account with the hash
  of the account root's console password. A table of its own, not a column
  on ``accounts``: SQLite can add a column with a CHECK constraint only by
  rebuilding ``accounts``, which many tables refer to, and account rows are
  read on every request while the hash is read only at sign-in.

Each hash is a PHC string ``$scrypt$ln=..,r=..,p=..$<salt>$<hash>``, so the
cost parameters go with the hash and can be raised later.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HASH_FORMAT_CHECK: Final = (
    "substr(password_hash, 1, 8) = '$scrypt$' AND length(password_hash) BETWEEN 9 AND 256"
)


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ram_login_profiles",
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column(
            "password_reset_required",
            sa.Boolean(
                create_constraint=True, name="ck_ram_login_profiles_password_reset_required_boolean"
            ),
            nullable=False,
        ),
        sa.Column(
            "mfa_bind_required",
            sa.Boolean(
                create_constraint=True, name="ck_ram_login_profiles_mfa_bind_required_boolean"
            ),
            nullable=False,
        ),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "user_name", name="pk_ram_login_profiles"),
        sa.ForeignKeyConstraint(
            ["account_id", "user_name"],
            ["ram_users.account_id", "ram_users.user_name"],
            name="fk_ram_login_profiles_user",
        ),
        sa.CheckConstraint(
            f"length(user_name) BETWEEN 1 AND 64 AND ltrim(user_name, '{_ALNUM}._-') = ''",
            name="ck_ram_login_profiles_user_name",
        ),
        sa.CheckConstraint(_HASH_FORMAT_CHECK, name="ck_ram_login_profiles_password_hash"),
        # hyok has no MFA, so no profile may claim that it requires one.
        sa.CheckConstraint("NOT mfa_bind_required", name="ck_ram_login_profiles_mfa_bind_required"),
    )
    op.create_table(
        "account_console_passwords",
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_console_passwords"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_account_console_passwords_account_id"
        ),
        sa.CheckConstraint(_HASH_FORMAT_CHECK, name="ck_account_console_passwords_password_hash"),
    )


def downgrade() -> None:
    op.drop_table("account_console_passwords")
    op.drop_table("ram_login_profiles")
