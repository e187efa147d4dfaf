"""The access decision for one permission check: identity policies, the key policy, the caller.

Pure code, no I/O: :func:`evaluate` reads only its arguments, and the
current time arrives in the request.

The rules, in order:

1. The root of the account that owns the resource may always run
   ``kms:GetKeyPolicy`` and ``kms:SetKeyPolicy``, even against an explicit
   Deny, so that no policy can lock the owner out of a key for good.
2. An explicit Deny wins: a matching Deny statement in the key policy (one
   that names the caller) or in any of the caller's identity policies denies
   the request.
3. Same account (the caller belongs to the resource owner's account): the
   account root is allowed. A RAM user or role is allowed when the key policy
   or one of its identity policies allows the action.
4. Another account: allowed only when three conditions hold. The key policy
   has an Allow statement that names the caller (its user or role, its
   account root, or ``acs:ram::<account>:*``). The caller's own identity
   policies allow the action on the key ARN, and a foreign account root
   counts as allowing itself. The request addressed the key by its ARN.

Everything else is an implicit deny. A statement matches when its action
patterns cover the ``kms:`` action (case-insensitive), its resources cover the
resource ARN (``"*"`` in a key policy is the key itself), and all its
conditions hold. Identity policies do not apply to an account root, which has
none. Aliases must be resolved to their key before the call, so the key
policy and tags are those of the key.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hyok.kms.domain.policy_conditions import ConditionContext, IpAddress
from hyok.kms.domain.policy_document import Effect, PolicyDocument, Statement
from hyok.kms.domain.policy_errors import PolicyKind
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity

__all__ = [
    "AccessRequest",
    "Decision",
    "DenyType",
    "PolicyType",
    "evaluate",
]

_POLICY_ACTIONS = frozenset({"kms:getkeypolicy", "kms:setkeypolicy"})


@enum.unique
class PolicyType(enum.StrEnum):
    """The policy that decided a denial, as ``AccessDeniedDetail.PolicyType`` reports it."""

    IDENTITY = "AccountLevelIdentityBasedPolicy"
    """The caller's RAM identity policies."""
    # NOTE: RAM's DecodeDiagnosticMessage documents AccountLevelIdentityBasedPolicy;
    # the value for a resource policy such as a key policy is hyok's choice.
    KEY = "ResourceBasedPolicy"
    """The key policy."""


@enum.unique
class DenyType(enum.StrEnum):
    """Explicit or implicit denial, as ``AccessDeniedDetail.NoPermissionType`` reports it."""

    IMPLICIT = "ImplicitDeny"
    """No statement allowed the request."""
    EXPLICIT = "ExplicitDeny"
    """A Deny statement matched the request."""


# NOTE: SubUser is the documented AuthPrincipalType of a RAM user; the other two values are hyok's.
_PRINCIPAL_TYPES: dict[CallerKind, str] = {
    CallerKind.ROOT: "Account",
    CallerKind.USER: "SubUser",
    CallerKind.ROLE: "AssumedRoleUser",
}


@dataclass(frozen=True, kw_only=True)
class AccessRequest:
    """One permission check of a request.

    ``action`` is the ``kms:`` action (from :mod:`hyok.kms.domain.kms_actions`)
    and ``resource_arn`` the ARN it is checked on, a key ARN after alias
    resolution. ``addressed_by_arn`` is True when the request named the key
    by its ARN (not by key ID or alias). ``current_time`` must be
    timezone-aware.
    """

    action: str
    resource_arn: str
    caller: RamIdentity
    addressed_by_arn: bool
    current_time: datetime
    secure_transport: bool
    source_ip: IpAddress | None = None


@dataclass(frozen=True)
class Decision:
    """The result of :func:`evaluate`.

    ``policy_type`` and ``deny_type`` are None when the request is allowed.
    ``reason`` is a sentence for logs and error messages that gives the cause,
    with the caller's ARN, the action and the resource, and no secret.
    """

    allowed: bool
    reason: str
    policy_type: PolicyType | None = None
    deny_type: DenyType | None = None

    def access_denied_detail(self, request: AccessRequest) -> dict[str, str]:
        """Build the ``AccessDeniedDetail`` object of a ``Forbidden.NoPermission`` response.

        Raises ValueError for an allowed decision, which has no detail.
        """
        if self.allowed or self.policy_type is None or self.deny_type is None:
            raise ValueError("an allowed request has no AccessDeniedDetail")
        caller = request.caller
        return {
            "AuthAction": request.action,
            "AuthResource": request.resource_arn,
            "AuthPrincipalType": _PRINCIPAL_TYPES[caller.kind],
            "AuthPrincipalOwnerId": caller.account_id,
            "AuthPrincipalDisplayName": caller.name or caller.account_id,
            "PolicyType": self.policy_type.value,
            "NoPermissionType": self.deny_type.value,
        }


@dataclass(frozen=True)
class _Matches:
    """The statements of one policy type that match the request."""

    allow: bool = False
    deny: bool = False
    sids: tuple[str, ...] = field(default=())


def evaluate(
    request: AccessRequest,
    *,
    identity_policies: Sequence[PolicyDocument],
    key_policy: PolicyDocument | None,
    key_tags: Mapping[str, str],
    resource_owner: str,
) -> Decision:
    """Decide whether ``request`` is allowed. The module docstring gives the rules.

    ``identity_policies`` are the policies attached to the caller (ignored
    for an account root). ``key_policy`` is the policy of the key that
    ``request.resource_arn`` names, or None for a resource that is not a key.
    ``key_tags`` feed the ``kms:tag/<key>`` conditions, and ``resource_owner``
    is the account ID that owns the resource.
    """
    _check_kinds(identity_policies, key_policy)
    caller = request.caller
    subject = f"{caller.arn} may not perform {request.action} on {request.resource_arn}"
    same_account = caller.account_id == resource_owner
    is_root = caller.kind is CallerKind.ROOT
    if same_account and is_root and request.action.lower() in _POLICY_ACTIONS:
        return Decision(True, "the account root always manages the policies of its own keys")

    context = ConditionContext(
        current_time=request.current_time,
        secure_transport=request.secure_transport,
        source_ip=request.source_ip,
        tags=key_tags,
    )
    key = _match_key_policy(request, key_policy, context)
    identity = _Matches() if is_root else _match_identity(request, identity_policies, context)

    if key.deny:
        return _deny(
            f"{subject}: the key policy denies it explicitly ({_sids(key)})",
            PolicyType.KEY,
            DenyType.EXPLICIT,
        )
    if identity.deny:
        return _deny(
            f"{subject}: an identity policy of the caller denies it explicitly ({_sids(identity)})",
            PolicyType.IDENTITY,
            DenyType.EXPLICIT,
        )
    if same_account:
        return _decide_same_account(subject, is_root=is_root, key=key, identity=identity)
    return _decide_cross_account(request, subject, is_root=is_root, key=key, identity=identity)


def _decide_same_account(
    subject: str, *, is_root: bool, key: _Matches, identity: _Matches
) -> Decision:
    if is_root:
        return Decision(True, "the account root owns the resource")
    if key.allow:
        return Decision(True, f"the key policy allows it ({_sids(key)})")
    if identity.allow:
        return Decision(True, f"an identity policy allows it ({_sids(identity)})")
    return _deny(
        f"{subject}: no identity policy of the caller and no key policy statement allows it. "
        "Attach an identity policy that allows the action, or name the caller in the key policy",
        PolicyType.IDENTITY,
        DenyType.IMPLICIT,
    )


def _decide_cross_account(
    request: AccessRequest, subject: str, *, is_root: bool, key: _Matches, identity: _Matches
) -> Decision:
    if not request.addressed_by_arn:
        return _deny(
            f"{subject}: another account's key must be addressed by its ARN, not by key ID or "
            "alias. Pass the key ARN",
            PolicyType.KEY,
            DenyType.IMPLICIT,
        )
    if not key.allow:
        return _deny(
            f"{subject}: the key belongs to another account, and its key policy does not allow "
            "the caller. Ask the key owner to name the caller in the key policy",
            PolicyType.KEY,
            DenyType.IMPLICIT,
        )
    if not is_root and not identity.allow:
        return _deny(
            f"{subject}: the key policy allows it, but the caller's own account does not grant "
            "it. Attach an identity policy in the caller's account that allows the action on "
            "the key ARN",
            PolicyType.IDENTITY,
            DenyType.IMPLICIT,
        )
    return Decision(True, f"the key policy ({_sids(key)}) and the caller's account allow it")


def _deny(reason: str, policy_type: PolicyType, deny_type: DenyType) -> Decision:
    return Decision(False, reason, policy_type, deny_type)


def _check_kinds(
    identity_policies: Sequence[PolicyDocument], key_policy: PolicyDocument | None
) -> None:
    if key_policy is not None and key_policy.kind is not PolicyKind.KEY:
        raise ValueError("key_policy must be a key policy document")
    if any(policy.kind is not PolicyKind.IDENTITY for policy in identity_policies):
        raise ValueError("identity_policies must be identity policy documents")


def _match_key_policy(
    request: AccessRequest, policy: PolicyDocument | None, context: ConditionContext
) -> _Matches:
    if policy is None:
        return _Matches()
    matching = [
        statement
        for statement in policy.statements
        if statement.names(request.caller)
        and statement.matches_action(request.action)
        and statement.conditions_hold(context)
    ]
    return _summarise(matching)


def _match_identity(
    request: AccessRequest, policies: Iterable[PolicyDocument], context: ConditionContext
) -> _Matches:
    matching = [
        statement
        for policy in policies
        for statement in policy.statements
        if statement.matches_action(request.action)
        and statement.matches_resource(request.resource_arn)
        and statement.conditions_hold(context)
    ]
    return _summarise(matching)


def _summarise(statements: list[Statement]) -> _Matches:
    deny = [s for s in statements if s.effect is Effect.DENY]
    allow = [s for s in statements if s.effect is Effect.ALLOW]
    # The Sids of the deciding statements: the Deny ones when there are any.
    deciding = deny or allow
    return _Matches(
        allow=bool(allow),
        deny=bool(deny),
        sids=tuple(s.sid for s in deciding if s.sid is not None),
    )


def _sids(matches: _Matches) -> str:
    if not matches.sids:
        return "a statement without Sid"
    return "Sid " + ", ".join(repr(sid) for sid in matches.sids[:3])
