"""Add key aliases.

Revision ID: 0005
Revises: 0004
Create Date: 2026-06-12

New table ``aliases``, the same on SQLite and PostgreSQL: one row per alias,
with its account, region, name, the key it points to, and the times it was
created and last pointed to another key. The primary key (account_id,
region, alias_name) keeps a name unique per account and region, and the
foreign key to ``keys`` deletes a key's aliases with the key.

The downgrade refuses while an alias exists, because 0004 has no place for
aliases: delete them (DeleteAlias) first.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_DIGITS: Final = "0123456789"
_LOWER_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("alias_name", sa.String(255), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region", "alias_name", name="pk_aliases"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_aliases_account_id"
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_aliases_key_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            f"length(account_id) BETWEEN 12 AND 16 AND ltrim(account_id, '{_DIGITS}') = ''",
            name="ck_aliases_account_id",
        ),
        sa.CheckConstraint(
            f"length(region) BETWEEN 1 AND 64 AND ltrim(region, '{_LOWER_ALNUM}-') = ''",
            name="ck_aliases_region",
        ),
        sa.CheckConstraint(
            "substr(alias_name, 1, 6) = 'alias/' AND length(alias_name) BETWEEN 7 AND 255 "
            f"AND ltrim(substr(alias_name, 7), '{_ALNUM}_/-') = '' "
            "AND lower(substr(alias_name, 1, 9)) <> 'alias/acs'",
            name="ck_aliases_alias_name",
        ),
    )
    op.create_index("ix_aliases_key_id", "aliases", ["key_id"])


def downgrade() -> None:
    count = op.get_bind().scalar(sa.text("SELECT count(*) FROM aliases"))
    if count:
        raise RuntimeError(
            f"{count} alias(es) exist, which revision 0004 cannot store: delete them "
            "(DeleteAlias) before downgrading"
        )
    op.drop_index("ix_aliases_key_id", "aliases")
    op.drop_table("aliases")
