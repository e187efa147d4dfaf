"""Identity-policy checks of RAM and STS actions, such as ``sts:AssumeRole`` and ``ram:ListUsers``.

These actions have no key policy: the identity policies attached to the
caller decide, by the rules of :func:`hyok.kms.domain.policy_eval.evaluate`.
The account root is always allowed in its own account.

Resource ARNs have the forms RAM documents, with the region left empty:
``acs:ram::<account>:user/<name>``, ``…:role/<name>``, ``…:policy/<name>``,
and ``…:user/*`` or ``…:role/*`` for a listing. A policy resource such as
``acs:ram:*:<account>:user/*`` matches them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from hyok.kms.domain.policy_conditions import IpAddress
from hyok.kms.domain.policy_document import PolicyDocument, parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_eval import AccessRequest, Decision, evaluate
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.store import StoreSession

__all__ = ["attached_policies", "identity_decision", "ram_arn"]

logger = logging.getLogger("hyok.kms.access")


def ram_arn(account_id: str, kind: str, name: str) -> str:
    """Return the ARN of a RAM user, role or policy, or with ``name`` ``*`` of all of a kind."""
    return f"acs:ram::{account_id}:{kind}/{name}"


def identity_decision(
    session: StoreSession,
    caller: RamIdentity,
    action: str,
    resource_arn: str,
    *,
    now: datetime,
    secure_transport: bool,
    source_ip: IpAddress | None,
) -> Decision:
    """Decide ``action`` on ``resource_arn`` by the identity policies of ``caller``."""
    return evaluate(
        AccessRequest(
            action=action,
            resource_arn=resource_arn,
            caller=caller,
            addressed_by_arn=True,
            current_time=now,
            secure_transport=secure_transport,
            source_ip=source_ip,
        ),
        identity_policies=attached_policies(session, caller),
        key_policy=None,
        key_tags={},
        # The identity side of the check: the caller's own account decides.
        resource_owner=caller.account_id,
    )


def attached_policies(session: StoreSession, caller: RamIdentity) -> list[PolicyDocument]:
    """Return the parsed identity policies of ``caller``; one that does not parse grants nothing."""
    if caller.kind is CallerKind.ROOT or caller.name is None:
        return []
    kind = "user" if caller.kind is CallerKind.USER else "role"
    documents = []
    for entry in session.ram_policies.list_attached(caller.account_id, kind, caller.name):
        try:
            documents.append(parse_policy(entry.policy.document, PolicyKind.IDENTITY))
        except PolicyDocumentError:
            # CreatePolicy checks every document, so only a changed database gets here.
            logger.error(
                "identity policy %s of account %s does not parse; it grants nothing",
                entry.policy.policy_name,
                caller.account_id,
            )
    return documents
