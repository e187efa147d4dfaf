"""Add web console sessions.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-10

A new table, the same on SQLite and PostgreSQL. ``console_sessions`` keeps
one row per signed-in console session, keyed by the SHA-256 of the session
token (the token itself is never stored), with the principal and the times
that the idle timeout and the absolute lifetime are checked against. Rows go
with their account and, for a RAM user, with the user (ON DELETE CASCADE).

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_console_sessions"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_console_sessions_account_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "user_name"],
            ["ram_users.account_id", "ram_users.user_name"],
            name="fk_console_sessions_user",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("length(token_hash) = 32", name="ck_console_sessions_token_hash"),
        sa.CheckConstraint(
            "last_seen_at >= created_at AND expires_at > created_at",
            name="ck_console_sessions_times",
        ),
    )
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    op.create_index(
        "ix_console_sessions_account_id_user_name", "console_sessions", ["account_id", "user_name"]
    )


def downgrade() -> None:
    op.drop_index("ix_console_sessions_account_id_user_name", table_name="console_sessions")
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_table("console_sessions")
