"""Add shared instances and the bookkeeping of the access management quota.

Revision ID: 0004
Revises: 0003
Create Date: 2026-06-10

New tables, the same on SQLite and PostgreSQL:

- instance_shares, the member accounts that an instance owner shares an
  instance with;
- instance_share_quotas, the access management quota of an instance that
  has one set (an instance without a row has the default, 10);
- key_grant_accounts, the foreign accounts that each key's policy grants;
- instance_quota_releases, the foreign accounts whose last grant in an
  instance was revoked, with the time, because they keep counting for 5
  minutes.

The upgrade fills key_grant_accounts from the policies of existing keys.
Before this revision no instance was shared, so a key's foreign accounts are
the accounts other than its own that the principals of its Allow statements
name. Every stored policy passed the key policy checks when it was written,
so each principal is ``acs:ram::<account ID>:<rest>``.

The downgrade refuses while an instance is shared, because 0003 has no
place for members. Quotas, grants and revocation times are dropped.

This revision is frozen: a later schema change is a new revision, even
where hyok.kms.store.tables changes.
"""

from __future__ import annotations

import json
from typing import Any, Final

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_DIGITS: Final = "0123456789"
_ACCOUNT_CHECK: Final = (
    f"length(account_id) BETWEEN 12 AND 16 AND ltrim(account_id, '{_DIGITS}') = ''"
)
_PRINCIPAL_PREFIX: Final = "acs:ram::"
_TABLES: Final = (
    "instance_quota_releases",
    "key_grant_accounts",
    "instance_share_quotas",
    "instance_shares",
)


def _datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _instance_reference(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["instance_id"],
        ["instances.instance_id"],
        name=f"fk_{table}_instance_id",
        ondelete="CASCADE",
    )


def _create_tables() -> None:
    op.create_table(
        "instance_shares",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("shared_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "account_id", name="pk_instance_shares"),
        _instance_reference("instance_shares"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_instance_shares_account_id"
        ),
    )
    op.create_index("ix_instance_shares_account_id", "instance_shares", ["account_id"])

    op.create_table(
        "instance_share_quotas",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("share_quota", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name="pk_instance_share_quotas"),
        _instance_reference("instance_share_quotas"),
        sa.CheckConstraint(
            "share_quota BETWEEN 0 AND 1000", name="ck_instance_share_quotas_share_quota"
        ),
    )

    op.create_table(
        "key_grant_accounts",
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "account_id", name="pk_key_grant_accounts"),
        sa.ForeignKeyConstraint(
            ["key_id"], ["keys.key_id"], name="fk_key_grant_accounts_key_id", ondelete="CASCADE"
        ),
        _instance_reference("key_grant_accounts"),
        sa.CheckConstraint(_ACCOUNT_CHECK, name="ck_key_grant_accounts_account_id"),
    )
    op.create_index(
        "ix_key_grant_accounts_instance_id_account_id",
        "key_grant_accounts",
        ["instance_id", "account_id"],
    )

    op.create_table(
        "instance_quota_releases",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(16), nullable=False),
        sa.Column("revoked_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "account_id", name="pk_instance_quota_releases"),
        _instance_reference("instance_quota_releases"),
        sa.CheckConstraint(_ACCOUNT_CHECK, name="ck_instance_quota_releases_account_id"),
    )


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal", {})
    value = principal.get("RAM", []) if isinstance(principal, dict) else []
    return [value] if isinstance(value, str) else [item for item in value if isinstance(item, str)]


def _policy_accounts(policy: str, key_account: str) -> set[str]:
    """Return the accounts other than ``key_account`` named by the Allow statements of a policy."""
    try:
        document = json.loads(policy)
    except ValueError:
        return set()
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    if isinstance(statements, dict):
        statements = [statements]
    accounts: set[str] = set()
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        for principal in _principals(statement):
            if not principal.startswith(_PRINCIPAL_PREFIX):
                continue
            account = principal[len(_PRINCIPAL_PREFIX) :].split(":", 1)[0]
            if account != key_account and 12 <= len(account) <= 16 and account.isdigit():
                accounts.add(account)
    return accounts


def _fill_grants() -> None:
    connection = op.get_bind()
    keys = sa.table(
        "keys",
        sa.column("key_id", sa.String()),
        sa.column("account_id", sa.String()),
        sa.column("instance_id", sa.String()),
        sa.column("policy", sa.Text()),
    )
    grants = sa.table(
        "key_grant_accounts",
        sa.column("key_id", sa.String()),
        sa.column("account_id", sa.String()),
        sa.column("instance_id", sa.String()),
    )
    rows = connection.execute(
        sa.select(keys.c.key_id, keys.c.account_id, keys.c.instance_id, keys.c.policy)
    )
    values = [
        {"key_id": row.key_id, "account_id": account, "instance_id": row.instance_id}
        for row in rows
        for account in sorted(_policy_accounts(row.policy, row.account_id))
    ]
    if values:
        connection.execute(sa.insert(grants), values)


def upgrade() -> None:
    _create_tables()
    _fill_grants()


def downgrade() -> None:
    shared = op.get_bind().scalar(
        sa.text("SELECT count(DISTINCT instance_id) FROM instance_shares")
    )
    if shared:
        raise RuntimeError(
            f"{shared} instance(s) are shared with other accounts, which revision 0003 cannot "
            "store: unshare them (UnshareKmsInstance) before downgrading"
        )
    op.drop_index("ix_key_grant_accounts_instance_id_account_id", "key_grant_accounts")
    op.drop_index("ix_instance_shares_account_id", "instance_shares")
    for table in _TABLES:
        op.drop_table(table)
