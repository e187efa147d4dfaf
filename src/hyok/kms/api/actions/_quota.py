"""Writing key policies within the access management quota of their instance.

CreateKey and SetKeyPolicy write a key policy and the foreign accounts it
grants in one store transaction that first locks the key's instance, so two
concurrent requests in one instance cannot both take the last unit of the
quota. :mod:`hyok.kms.domain.share_quota` defines the count. A refused
change raises ``Rejected.ShareQuotaExceedLimit`` and writes nothing.

These functions block: run them with :meth:`Services.run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hyok.kms.api.errors import (
    ForbiddenInstanceNotFoundError,
    RejectedShareQuotaExceedLimitError,
)
from hyok.kms.domain import Key, KeyVersion
from hyok.kms.domain.policy_document import PolicyDocument
from hyok.kms.domain.share_quota import (
    ShareQuotaExceededError,
    check_share_quota,
    granted_accounts,
)
from hyok.kms.store import KmsStore
from hyok.kms.store.repositories import StoreSession

__all__ = ["check_key_within_quota", "insert_key_within_quota", "replace_policy_within_quota"]


def _check(session: StoreSession, instance_id: str, grants: frozenset[str], now: datetime) -> None:
    """Raise Rejected.ShareQuotaExceedLimit when ``grants`` would pass the instance's quota."""
    if not grants:
        return
    counted = session.sharing.counted_accounts(instance_id, now)
    if grants <= counted:
        return
    quota = session.sharing.quota(instance_id)
    try:
        check_share_quota(counted, grants, quota)
    except ShareQuotaExceededError as exc:
        listed = ", ".join(sorted(exc.added))
        raise RejectedShareQuotaExceedLimitError(
            f"The key policy grants {len(exc.added)} account(s) that instance {instance_id} "
            f"does not count yet ({listed}), but its access management quota of {quota} "
            f"foreign accounts has {max(quota - len(exc.used), 0)} unit(s) left. Remove "
            "cross-account principals from the policy, wait until revoked grants return their "
            "units (5 minutes after the revocation), or ask the instance owner to raise the "
            "quota with UpdateKmsInstanceShareQuota."
        ) from None


def insert_key_within_quota(
    store: KmsStore,
    key: Key,
    version: KeyVersion,
    tags: Sequence[tuple[str, str]],
    document: PolicyDocument,
    now: datetime,
) -> None:
    """Insert a key with its version, tags and grants, within its instance's quota.

    The key's account must own the instance or be one of its members when the
    transaction runs, else Forbidden.DKMSInstanceNotFound: an owner may have
    stopped sharing the instance since the caller's first check.
    """
    with store.session() as session:
        owner = session.sharing.lock_instance(key.instance_id)
        if owner is None or (
            owner != key.account_id
            and not session.sharing.is_member(key.instance_id, key.account_id)
        ):
            raise ForbiddenInstanceNotFoundError(
                f"The instance {key.instance_id} is not found in account {key.account_id} in "
                f"region {key.region}, or is no longer shared with it. Check the ID with "
                "ListKmsInstances."
            )
        grants = granted_accounts(document, key_account=key.account_id, instance_owner=owner)
        _check(session, key.instance_id, grants, now)
        session.keys.create(key, version, tags=tags)
        session.sharing.replace_key_grants(key.key_id, key.instance_id, grants, now)


def check_key_within_quota(
    store: KmsStore, key: Key, document: PolicyDocument, owner: str, now: datetime
) -> None:
    """Check a new key's policy against the quota of the instance ``owner`` owns; store nothing.

    A CreateKey DryRun calls it. Nothing is locked, so a concurrent request
    may still take the last unit before the real CreateKey.
    """
    with store.session(read_only=True) as session:
        grants = granted_accounts(document, key_account=key.account_id, instance_owner=owner)
        _check(session, key.instance_id, grants, now)


def replace_policy_within_quota(
    store: KmsStore, key: Key, document: PolicyDocument, now: datetime
) -> None:
    """Replace a key's policy and its grants, within its instance's quota."""
    with store.session() as session:
        owner = session.sharing.lock_instance(key.instance_id) or key.account_id
        grants = granted_accounts(document, key_account=key.account_id, instance_owner=owner)
        _check(session, key.instance_id, grants, now)
        session.keys.update_policy(key.key_id, document.text)
        session.sharing.replace_key_grants(key.key_id, key.instance_id, grants, now)
