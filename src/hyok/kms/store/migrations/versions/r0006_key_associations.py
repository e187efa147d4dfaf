"""Add key associations: who used each key, and the resources registered with it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

New tables, the same on SQLite and PostgreSQL. ``key_usage`` keeps one row
per key, principal ARN and via-service, with the first and last use and a
count. ``key_resources`` keeps the resources that integrating services
registered as using a key. Both go with their key (ON DELETE CASCADE).

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "key_usage",
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("principal", sa.String(512), nullable=False),
        sa.Column("via_service", sa.String(64), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("use_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "principal", "via_service", name="pk_key_usage"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_key_usage_key_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("use_count >= 1", name="ck_key_usage_use_count"),
    )
    op.create_table(
        "key_resources",
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(512), nullable=False),
        sa.Column("registered_by", sa.String(512), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "service", "resource_id", name="pk_key_resources"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_key_resources_key_id", ondelete="CASCADE"
        ),
        sa.CheckConstraint("length(service) BETWEEN 1 AND 64", name="ck_key_resources_service"),
        sa.CheckConstraint(
            "length(resource_id) BETWEEN 1 AND 512", name="ck_key_resources_resource_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("key_resources")
    op.drop_table("key_usage")
