"""STS AssumeRole: temporary credentials for a session of a RAM role.

A caller may assume a role when all of these hold:

1. the caller is a RAM user or a role session, not an account root
   (STS refuses roots with ``NoPermission``);
2. the role's trust policy trusts the caller (its user or role, or its
   whole account through ``acs:ram::<account>:root``);
3. the caller's own identity policies allow ``sts:AssumeRole`` on the role
   ARN, with no explicit Deny.

The credentials are an AccessKey ID ``STS.…``, a secret and a security
token. The store keeps the secret sealed and only the SHA-256 of the token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from hyok.common.secrets import Secret
from hyok.kms.domain import new_access_key_secret
from hyok.kms.domain.ids import RandomBytes
from hyok.kms.domain.policy_conditions import ConditionContext, IpAddress
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.domain.ram import (
    MIN_SESSION_DURATION,
    SESSION_NAME,
    RamRole,
    StsCredential,
    new_security_token,
    new_sts_access_key_id,
    security_token_hash,
)
from hyok.kms.domain.trust_policy import ASSUME_ROLE_ACTION, parse_trust_policy
from hyok.kms.ram.errors import NO_PERMISSION, RamError, invalid_parameter, not_found
from hyok.kms.ram.permissions import identity_decision
from hyok.kms.store import KmsStore

__all__ = ["DEFAULT_SESSION_DURATION", "AssumedRole", "StsService"]

DEFAULT_SESSION_DURATION: Final = 3_600
"""The session length when AssumeRole has no ``DurationSeconds``, in seconds."""
_ROLE_ARN: Final = re.compile(r"acs:ram::([0-9]{12,16}):role/([A-Za-z0-9.-]{1,64})")


@dataclass(frozen=True)
class AssumedRole:
    """The result of AssumeRole: the stored credentials, the token and the role."""

    credential: StsCredential
    security_token: Secret
    role: RamRole


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StsService:
    """The STS actions on one store. ``clock`` and ``random_bytes`` are injectable for tests."""

    def __init__(
        self,
        store: KmsStore,
        *,
        clock: Callable[[], datetime] = _utc_now,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random_bytes = random_bytes

    def __repr__(self) -> str:
        return f"StsService({self.store!r})"

    def assume_role(
        self,
        caller: RamIdentity,
        *,
        caller_arn: str,
        role_arn: str,
        session_name: str,
        duration_seconds: int | None,
        source_ip: IpAddress | None,
        secure_transport: bool,
    ) -> AssumedRole:
        """Issue credentials for a session of the role ``role_arn``, by the rules above.

        Raises RamError: ``NoPermission`` (403), ``InvalidParameter.RoleArn``,
        ``InvalidParameter.RoleSessionName``, ``InvalidParameter.DurationSeconds``
        (400) or ``EntityNotExist.Role`` (404).
        """
        if caller.kind is CallerKind.ROOT:
            raise RamError(
                NO_PERMISSION,
                403,
                "roles may not be assumed by an account root: sign AssumeRole with the AccessKey "
                "of a RAM user, and allow that user sts:AssumeRole on the role",
            )
        match = _ROLE_ARN.fullmatch(role_arn)
        if match is None:
            raise invalid_parameter(
                "InvalidParameter.RoleArn",
                f"the parameter RoleArn {role_arn[:128]!r} is wrongly formed: write "
                "acs:ram::<account ID>:role/<role name>",
            )
        if SESSION_NAME.fullmatch(session_name) is None:
            raise invalid_parameter(
                "InvalidParameter.RoleSessionName",
                f"the parameter RoleSessionName {session_name[:64]!r} is wrongly formed: use 2 to "
                "64 letters, digits, '.', '@', '_' or '-'",
            )
        role_account, role_name = match.groups()
        now = self.clock()

        with self.store.session() as session:
            role = session.ram_roles.get(role_account, role_name)
            if role is None:
                raise not_found(
                    "EntityNotExist.Role",
                    f"the role {role_arn!r} does not exist: check the account ID and role name "
                    "in RoleArn",
                )
            duration = DEFAULT_SESSION_DURATION if duration_seconds is None else duration_seconds
            if not MIN_SESSION_DURATION <= duration <= role.max_session_duration:
                raise invalid_parameter(
                    "InvalidParameter.DurationSeconds",
                    f"the parameter DurationSeconds {duration} is out of range: use "
                    f"{MIN_SESSION_DURATION} to {role.max_session_duration} seconds, the "
                    f"MaxSessionDuration of role {role_name!r}",
                )

            context = ConditionContext(
                current_time=now, secure_transport=secure_transport, source_ip=source_ip
            )
            if not parse_trust_policy(role.trust_policy).trusts(caller, context):
                raise RamError(
                    NO_PERMISSION,
                    403,
                    f"{caller.arn} is not trusted by role {role_arn!r}: its trust policy must "
                    f"allow {ASSUME_ROLE_ACTION} for the caller, its role or its account",
                )
            decision = identity_decision(
                session,
                caller,
                ASSUME_ROLE_ACTION,
                role.arn,
                now=now,
                secure_transport=secure_transport,
                source_ip=source_ip,
            )
            if not decision.allowed:
                raise RamError(
                    NO_PERMISSION,
                    403,
                    f"{caller.arn} is not authorized to perform {ASSUME_ROLE_ACTION} on "
                    f"{role.arn}: attach an identity policy to the caller that allows it",
                )

            token = new_security_token(self.random_bytes)
            credential = StsCredential(
                access_key_id=new_sts_access_key_id(self.random_bytes),
                account_id=role.account_id,
                role_name=role.role_name,
                session_name=session_name,
                secret=new_access_key_secret(self.random_bytes),
                token_hash=security_token_hash(token.reveal()),
                source_arn=caller_arn,
                expires_at=now + timedelta(seconds=duration),
                created_at=now,
            )
            session.sts_credentials.create(credential)
        return AssumedRole(credential, token, role)
