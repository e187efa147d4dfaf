"""The repository of shared instances and of the bookkeeping of the access management quota.

:class:`InstanceSharingRepository` is ``StoreSession.sharing``. It stores:

- the member accounts of each shared instance (``instance_shares``);
- the quota of an instance that has one set (``instance_share_quotas``);
- the foreign accounts that each key's policy grants (``key_grant_accounts``);
- the foreign accounts whose last grant in an instance was revoked, with the
  time (``instance_quota_releases``).

:mod:`hyok.kms.domain.share_quota` defines which accounts count. A change
that checks the quota must first call :meth:`lock_instance` in the same
session, so that concurrent changes in one instance run one after another.
PostgreSQL locks the instance row, and SQLite write transactions hold the
database lock from their start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, func, insert, or_, select, update

from hyok.kms.domain.models import Page, PageRequest
from hyok.kms.domain.share_quota import (
    DEFAULT_SHARE_QUOTA,
    RELEASE_DELAY,
    ShareQuotaUsage,
)
from hyok.kms.store._rows import select_page, writing
from hyok.kms.store.tables import (
    instance_quota_releases,
    instance_share_quotas,
    instance_shares,
    instances,
    key_grant_accounts,
    keys,
)

__all__ = ["InstanceMember", "InstanceSharingRepository", "VisibleInstance"]


@dataclass(frozen=True)
class InstanceMember:
    """A member account of a shared instance, and when the owner shared the instance."""

    account_id: str
    shared_at: datetime


@dataclass(frozen=True)
class VisibleInstance:
    """An instance that an account may see: one it owns or one shared with it."""

    instance_id: str
    owner_account_id: str
    region: str
    created_at: datetime


def _visible(row: RowMapping) -> VisibleInstance:
    return VisibleInstance(
        instance_id=row["instance_id"],
        owner_account_id=row["account_id"],
        region=row["region"],
        created_at=row["created_at"],
    )


class InstanceSharingRepository:
    """Members of shared instances, instance quotas, and the foreign accounts keys grant."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # --- Locking ------------------------------------------------------------------

    def lock_instance(self, instance_id: str) -> str | None:
        """Lock an instance row until the session ends; return its owner account, or None.

        The lock (``FOR NO KEY UPDATE`` on PostgreSQL) does not block keys
        being written elsewhere in the instance, only other sessions that
        lock the same instance, including status updates.
        """
        query = (
            select(instances.c.account_id)
            .where(instances.c.instance_id == instance_id)
            .with_for_update(key_share=True)
        )
        owner: str | None = self._connection.scalar(query)
        return owner

    # --- Members ------------------------------------------------------------------

    def add_member(self, instance_id: str, account_id: str, shared_at: datetime) -> bool:
        """Share an instance with an account; return False when it already was shared with it.

        Raises MissingReferenceError for an unknown instance or account.
        """
        if self.is_member(instance_id, account_id):
            return False
        with writing(
            self._connection,
            f"sharing instance {instance_id!r} with account {account_id!r}",
            {"instance": instance_id, "account": account_id},
        ):
            self._connection.execute(
                insert(instance_shares).values(
                    instance_id=instance_id, account_id=account_id, shared_at=shared_at
                )
            )
        return True

    def remove_member(self, instance_id: str, account_id: str) -> bool:
        """Stop sharing an instance with an account; return False when it was not shared."""
        with writing(
            self._connection, f"unsharing instance {instance_id!r} with account {account_id!r}"
        ):
            result = self._connection.execute(
                delete(instance_shares).where(
                    instance_shares.c.instance_id == instance_id,
                    instance_shares.c.account_id == account_id,
                )
            )
        return bool(result.rowcount)

    def is_member(self, instance_id: str, account_id: str) -> bool:
        """Return whether the instance is shared with the account."""
        query = select(instance_shares.c.account_id).where(
            instance_shares.c.instance_id == instance_id,
            instance_shares.c.account_id == account_id,
        )
        return self._connection.execute(query).first() is not None

    def members(self, instance_id: str) -> list[InstanceMember]:
        """Return the member accounts of an instance, by the time it was shared with them."""
        query = (
            select(instance_shares.c.account_id, instance_shares.c.shared_at)
            .where(instance_shares.c.instance_id == instance_id)
            .order_by(instance_shares.c.shared_at, instance_shares.c.account_id)
        )
        return [
            InstanceMember(row.account_id, row.shared_at) for row in self._connection.execute(query)
        ]

    def count_account_keys(self, instance_id: str, account_id: str) -> int:
        """Return the number of keys that an account has in an instance, in every state."""
        query = (
            select(func.count())
            .select_from(keys)
            .where(keys.c.instance_id == instance_id, keys.c.account_id == account_id)
        )
        return self._connection.scalar(query) or 0

    def list_visible(
        self, account_id: str, region: str, page: PageRequest
    ) -> Page[VisibleInstance]:
        """Return one page of the instances an account owns or that are shared with it.

        The order is creation time, then instance ID.
        """
        shared_with = select(instance_shares.c.instance_id).where(
            instance_shares.c.account_id == account_id
        )
        conditions = [
            instances.c.region == region,
            or_(instances.c.account_id == account_id, instances.c.instance_id.in_(shared_with)),
        ]
        query = select(
            instances.c.instance_id,
            instances.c.account_id,
            instances.c.region,
            instances.c.created_at,
        ).order_by(instances.c.created_at, instances.c.instance_id)
        return select_page(self._connection, query, conditions, instances, page, _visible)

    # --- Quota ----------------------------------------------------------------------

    def quota(self, instance_id: str) -> int:
        """Return the access management quota of an instance (the default when none is set)."""
        query = select(instance_share_quotas.c.share_quota).where(
            instance_share_quotas.c.instance_id == instance_id
        )
        value = self._connection.scalar(query)
        return DEFAULT_SHARE_QUOTA if value is None else int(value)

    def set_quota(self, instance_id: str, quota: int) -> None:
        """Set the access management quota of an instance.

        Raises ConstraintViolationError for a quota outside 0 to 1,000 and
        MissingReferenceError for an unknown instance.
        """
        with writing(
            self._connection,
            f"setting the quota of instance {instance_id!r}",
            {"instance": instance_id},
        ):
            changed = self._connection.execute(
                update(instance_share_quotas)
                .where(instance_share_quotas.c.instance_id == instance_id)
                .values(share_quota=quota)
            )
            if not changed.rowcount:
                self._connection.execute(
                    insert(instance_share_quotas).values(instance_id=instance_id, share_quota=quota)
                )

    def key_grants(self, key_id: str) -> frozenset[str]:
        """Return the foreign accounts that a key's policy grants."""
        query = select(key_grant_accounts.c.account_id).where(key_grant_accounts.c.key_id == key_id)
        return frozenset(self._connection.scalars(query))

    def counted_accounts(self, instance_id: str, now: datetime) -> frozenset[str]:
        """Return the foreign accounts that take a unit of an instance's quota at ``now``.

        These are the accounts that some key policy in the instance grants,
        and those whose last grant was revoked less than 5 minutes before.
        """
        granted = select(key_grant_accounts.c.account_id).where(
            key_grant_accounts.c.instance_id == instance_id
        )
        released = select(instance_quota_releases.c.account_id).where(
            instance_quota_releases.c.instance_id == instance_id,
            instance_quota_releases.c.revoked_at > now - RELEASE_DELAY,
        )
        return frozenset(self._connection.scalars(granted)) | frozenset(
            self._connection.scalars(released)
        )

    def usage(self, instance_id: str, now: datetime) -> ShareQuotaUsage:
        """Return the quota of an instance and the accounts counted against it at ``now``."""
        return ShareQuotaUsage(self.quota(instance_id), self.counted_accounts(instance_id, now))

    def replace_key_grants(
        self, key_id: str, instance_id: str, accounts: Iterable[str], now: datetime
    ) -> None:
        """Store the foreign accounts that a key's policy grants from now on.

        An account that loses its last grant in the instance gets the
        revocation time ``now``, and an account granted again loses its
        revocation time. Revocations older than 5 minutes are deleted.
        """
        wanted = frozenset(accounts)
        current = self.key_grants(key_id)
        removed, added = current - wanted, wanted - current
        with writing(self._connection, f"storing the grants of key {key_id!r}"):
            if removed:
                self._connection.execute(
                    delete(key_grant_accounts).where(
                        key_grant_accounts.c.key_id == key_id,
                        key_grant_accounts.c.account_id.in_(sorted(removed)),
                    )
                )
            if added:
                self._connection.execute(
                    insert(key_grant_accounts),
                    [
                        {"key_id": key_id, "account_id": account, "instance_id": instance_id}
                        for account in sorted(added)
                    ],
                )
                self._clear_releases(instance_id, added)
            self.record_revocations(instance_id, removed, now)

    def record_revocations(self, instance_id: str, accounts: Iterable[str], now: datetime) -> None:
        """Record the revocation time ``now`` of ``accounts`` that no key in the instance grants.

        Call it after a key's grants are removed, such as when the key is
        deleted. Revocations older than 5 minutes are deleted.
        """
        candidates = frozenset(accounts)
        with writing(self._connection, f"recording revoked grants of instance {instance_id!r}"):
            revoked = candidates - self._granted_in_instance(instance_id, candidates)
            if revoked:
                self._clear_releases(instance_id, revoked)
                self._connection.execute(
                    insert(instance_quota_releases),
                    [
                        {"instance_id": instance_id, "account_id": account, "revoked_at": now}
                        for account in sorted(revoked)
                    ],
                )
            self._connection.execute(
                delete(instance_quota_releases).where(
                    instance_quota_releases.c.instance_id == instance_id,
                    instance_quota_releases.c.revoked_at <= now - RELEASE_DELAY,
                )
            )

    def _granted_in_instance(self, instance_id: str, accounts: frozenset[str]) -> frozenset[str]:
        query = select(key_grant_accounts.c.account_id).where(
            key_grant_accounts.c.instance_id == instance_id,
            key_grant_accounts.c.account_id.in_(sorted(accounts)),
        )
        return frozenset(self._connection.scalars(query))

    def _clear_releases(self, instance_id: str, accounts: frozenset[str]) -> None:
        self._connection.execute(
            delete(instance_quota_releases).where(
                instance_quota_releases.c.instance_id == instance_id,
                instance_quota_releases.c.account_id.in_(sorted(accounts)),
            )
        )
