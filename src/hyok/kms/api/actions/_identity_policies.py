"""The identity policies attached to each RAM user and role, cached for the access checks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from hyok.kms.domain.policy_document import PolicyDocument
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.ram.permissions import attached_policies
from hyok.kms.store import KmsStore

if TYPE_CHECKING:
    from hyok.kms.api.actions._services import Services

__all__ = ["DEFAULT_IDENTITY_POLICY_SECONDS", "IdentityPolicyCache"]

DEFAULT_IDENTITY_POLICY_SECONDS: Final = 5.0
_MAX_IDENTITIES: Final = 10_000


class IdentityPolicyCache:
    """The identity policies attached to each RAM user and role, kept ``ttl`` seconds.

    A policy attached or detached through another node, or changed in the
    database, takes effect here within ``ttl`` seconds. Used from the event
    loop only.
    """

    def __init__(self, ttl: float = DEFAULT_IDENTITY_POLICY_SECONDS) -> None:
        if ttl < 0:
            raise ValueError(f"ttl must be 0 or more seconds, got {ttl}")
        self.ttl = ttl
        self._entries: dict[RamIdentity, tuple[float, tuple[PolicyDocument, ...]]] = {}

    def __repr__(self) -> str:
        return f"IdentityPolicyCache(ttl={self.ttl}, identities={len(self._entries)})"

    async def policies(
        self, services: Services, identity: RamIdentity
    ) -> tuple[PolicyDocument, ...]:
        """Return the parsed identity policies of ``identity`` (none for an account root)."""
        if identity.kind is CallerKind.ROOT:
            return ()
        entry = self._entries.get(identity)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        policies = await services.run(_load_identity_policies, services.store, identity)
        if self.ttl > 0:
            if len(self._entries) >= _MAX_IDENTITIES:
                self._entries.clear()
            self._entries[identity] = (now + self.ttl, policies)
        return policies

    def forget(self) -> None:
        """Drop every entry, after a policy or an attachment changed through this node."""
        self._entries.clear()


def _load_identity_policies(store: KmsStore, identity: RamIdentity) -> tuple[PolicyDocument, ...]:
    with store.session(read_only=True) as session:
        return tuple(attached_policies(session, identity))
