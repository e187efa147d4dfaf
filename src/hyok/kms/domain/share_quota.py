"""The access management quota of an instance: how many foreign accounts its keys may grant.

Pure code, no I/O.

A key policy grants a *foreign* account when an Allow statement names a
principal of an account that is neither the key's own account nor the
instance owner. Each distinct foreign account across all key policies of the
keys in an instance takes one unit of the instance's quota. Administrators
and users of the key's own account cost nothing, and neither does the
instance owner named in the default policy of a member's key.

A foreign account whose last grant in the instance is revoked keeps its unit
for :data:`RELEASE_DELAY` (5 minutes), then the unit returns. The store
keeps the revocation time of each such account.

A change that adds a foreign account is refused when the number of counted
accounts would then pass the quota. A change that adds no new account is
never refused, even when the quota was lowered below the current usage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from hyok.kms.domain.key_policy import foreign_accounts
from hyok.kms.domain.policy_document import PolicyDocument

__all__ = [
    "DEFAULT_SHARE_QUOTA",
    "MAX_SHARE_QUOTA",
    "RELEASE_DELAY",
    "ShareQuotaExceededError",
    "ShareQuotaUsage",
    "check_share_quota",
    "granted_accounts",
    "still_counted",
]

DEFAULT_SHARE_QUOTA: Final = 10
"""The quota of an instance that was never given one: 10 foreign accounts."""
MAX_SHARE_QUOTA: Final = 1_000
"""The largest quota an instance may have."""
RELEASE_DELAY: Final = timedelta(minutes=5)
"""How long a foreign account keeps counting after its last grant is revoked."""


class ShareQuotaExceededError(Exception):
    """A policy change would grant more foreign accounts than the instance's quota allows.

    ``added`` lists the accounts the change adds, ``used`` the accounts
    counted before it, and ``quota`` the instance's quota.
    """

    def __init__(self, *, added: frozenset[str], used: frozenset[str], quota: int) -> None:
        self.added = added
        self.used = used
        self.quota = quota
        super().__init__(
            f"granting {len(added)} more foreign account(s) would count "
            f"{len(added | used)} of a quota of {quota}"
        )


@dataclass(frozen=True)
class ShareQuotaUsage:
    """The quota of an instance and the foreign accounts counted against it."""

    quota: int
    accounts: frozenset[str]

    @property
    def used(self) -> int:
        """The number of units in use."""
        return len(self.accounts)


def granted_accounts(
    document: PolicyDocument, *, key_account: str, instance_owner: str
) -> frozenset[str]:
    """Return the foreign accounts that a key policy grants, as the quota counts them."""
    return foreign_accounts(document, key_account) - {instance_owner}


def still_counted(revoked_at: datetime, now: datetime) -> bool:
    """Return whether an account whose last grant was revoked at ``revoked_at`` takes a unit."""
    return now < revoked_at + RELEASE_DELAY


def check_share_quota(
    counted: Iterable[str], requested: Iterable[str], quota: int
) -> frozenset[str]:
    """Check that granting ``requested`` accounts fits the quota; return the accounts it adds.

    ``counted`` are the accounts that take a unit now, including those
    revoked within :data:`RELEASE_DELAY`. Raises ShareQuotaExceededError
    when the change adds an account and the count would pass ``quota``.
    """
    used = frozenset(counted)
    added = frozenset(requested) - used
    if added and len(used) + len(added) > quota:
        raise ShareQuotaExceededError(added=added, used=used, quota=quota)
    return added
