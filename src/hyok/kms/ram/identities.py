"""RAM users, their AccessKeys, roles and custom policies: the rules of the RAM API actions.

:class:`RamService` runs each action in one store transaction and raises
:class:`~hyok.kms.ram.errors.RamError` with the RAM code of each fault. Its
methods block, so an async caller runs them in a worker thread. Every method
acts inside one account, so names never reach another account's identities.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from hyok.kms.domain import AccessKey, new_access_key_id, new_access_key_secret
from hyok.kms.domain.ids import RandomBytes
from hyok.kms.domain.policy_conditions import IpAddress
from hyok.kms.domain.policy_document import parse_policy
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.domain.ram import (
    DEFAULT_MAX_SESSION_DURATION,
    MAX_ACCESS_KEYS_PER_USER,
    MAX_COMMENTS_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_POLICIES_PER_IDENTITY,
    MAX_POLICY_DESCRIPTION_LENGTH,
    MAX_ROLE_DESCRIPTION_LENGTH,
    AttachedPolicy,
    RamPolicy,
    RamRole,
    RamUser,
    new_role_id,
    new_user_id,
)
from hyok.kms.domain.trust_policy import parse_trust_policy
from hyok.kms.ram.errors import (
    NO_PERMISSION,
    RamError,
    already_exists,
    delete_conflict,
    invalid_parameter,
    not_found,
)
from hyok.kms.ram.permissions import identity_decision
from hyok.kms.store import (
    DuplicateRowError,
    KmsStore,
    MissingReferenceError,
    RowNotFoundError,
    StoreSession,
)

__all__ = [
    "CUSTOM_POLICY_TYPE",
    "SYSTEM_POLICY_TYPE",
    "USER_NAME_RULE",
    "NameRule",
    "RamService",
    "check_name",
]

CUSTOM_POLICY_TYPE: Final = "Custom"
SYSTEM_POLICY_TYPE: Final = "System"


class NameRule:
    """The rule of one name parameter: its wire name, length and characters."""

    def __init__(self, parameter: str, pattern: str, max_length: int, allowed: str) -> None:
        self.parameter = parameter
        self.characters = re.compile(pattern)
        self.max_length = max_length
        self.allowed = allowed


_USER_NAME: Final = NameRule("UserName", r"[A-Za-z0-9._-]+", 64, "letters, digits, '.', '_', '-'")
USER_NAME_RULE: Final = _USER_NAME
_ROLE_NAME: Final = NameRule("RoleName", r"[A-Za-z0-9.-]+", 64, "letters, digits, '.', '-'")
_POLICY_NAME: Final = NameRule("PolicyName", r"[A-Za-z0-9-]+", 128, "letters, digits, '-'")


def check_name(rule: NameRule, value: str) -> str:
    """Check a name parameter: ``InvalidParameter.<Parameter>.Length`` or ``.InvalidChars``."""
    if not 1 <= len(value) <= rule.max_length:
        raise invalid_parameter(
            f"InvalidParameter.{rule.parameter}.Length",
            f"the parameter {rule.parameter} has {len(value)} characters: use 1 to "
            f"{rule.max_length}",
        )
    if rule.characters.fullmatch(value) is None:
        raise invalid_parameter(
            f"InvalidParameter.{rule.parameter}.InvalidChars",
            f"the parameter {rule.parameter} {value!r} contains invalid characters: use only "
            f"{rule.allowed}",
        )
    return value


def _check_length(parameter: str, value: str, max_length: int) -> str:
    if len(value) > max_length or "\x00" in value:
        raise invalid_parameter(
            f"InvalidParameter.{parameter}.Length",
            f"the parameter {parameter} has {len(value)} characters: use at most {max_length}, "
            "without NUL characters",
        )
    return value


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _user_missing(user_name: str) -> RamError:
    return not_found(
        "EntityNotExist.User",
        f"the RAM user {user_name!r} does not exist in this account: check the name, or create "
        "the user with CreateUser",
    )


def _role_missing(role_name: str) -> RamError:
    return not_found(
        "EntityNotExist.Role",
        f"the RAM role {role_name!r} does not exist in this account: check the name, or create "
        "the role with CreateRole",
    )


def _policy_missing(policy_name: str) -> RamError:
    return not_found(
        "EntityNotExist.Policy",
        f"the custom policy {policy_name!r} does not exist in this account: check the name, or "
        "create the policy with CreatePolicy",
    )


def _policy_error(exc: PolicyDocumentError) -> RamError:
    return invalid_parameter(exc.code, exc.message)


class RamService:
    """The RAM actions on one store. ``clock`` and ``random_bytes`` are injectable for tests."""

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
        return f"RamService({self.store!r})"

    def check_permission(
        self,
        caller: RamIdentity,
        caller_arn: str,
        action: str,
        resource_arn: str,
        secure_transport: bool,
        source_ip: IpAddress | None,
    ) -> None:
        """Raise ``NoPermission`` unless the identity policies of ``caller`` allow ``action``.

        The account root is always allowed. ``caller_arn`` names the caller
        in the message, with the session of an assumed role.
        """
        if caller.kind is CallerKind.ROOT:
            return
        with self.store.session(read_only=True) as session:
            decision = identity_decision(
                session,
                caller,
                action,
                resource_arn,
                now=self.clock(),
                secure_transport=secure_transport,
                source_ip=source_ip,
            )
        if not decision.allowed:
            raise RamError(
                NO_PERMISSION,
                403,
                f"{caller_arn} is not authorized to perform {action} on {resource_arn}: attach "
                f"an identity policy to the caller that allows {action} on that resource",
            )

    # --- Users ---------------------------------------------------------------------

    def create_user(
        self, account_id: str, user_name: str, *, display_name: str = "", comments: str = ""
    ) -> RamUser:
        """Create a RAM user. Raises ``EntityAlreadyExists.User`` for a used name."""
        check_name(_USER_NAME, user_name)
        _check_length("DisplayName", display_name, MAX_DISPLAY_NAME_LENGTH)
        _check_length("Comments", comments, MAX_COMMENTS_LENGTH)
        user = RamUser(
            account_id=account_id,
            user_id=new_user_id(self.random_bytes),
            user_name=user_name,
            display_name=display_name,
            comments=comments,
            created_at=self.clock(),
        )
        try:
            with self.store.session() as session:
                session.ram_users.create(user)
        except DuplicateRowError:
            raise already_exists(
                "EntityAlreadyExists.User",
                f"a RAM user named {user_name!r} already exists in this account: choose another "
                "name",
            ) from None
        return user

    def get_user(self, account_id: str, user_name: str) -> RamUser:
        """Return a RAM user. Raises ``EntityNotExist.User``."""
        check_name(_USER_NAME, user_name)
        with self.store.session(read_only=True) as session:
            user = session.ram_users.get(account_id, user_name)
        if user is None:
            raise _user_missing(user_name)
        return user

    def list_users(
        self, account_id: str, *, after: str | None, limit: int
    ) -> tuple[list[RamUser], bool]:
        """Return up to ``limit`` users by name, after ``after``, and whether more follow."""
        with self.store.session(read_only=True) as session:
            return session.ram_users.list(account_id, after=after, limit=limit)

    def delete_user(self, account_id: str, user_name: str) -> None:
        """Delete a user that has no AccessKeys, no attached policies and no login profile.

        Raises ``EntityNotExist.User``, ``DeleteConflict.User.AccessKey``,
        ``DeleteConflict.User.Policy`` or ``DeleteConflict.User.LoginProfile``.
        """
        check_name(_USER_NAME, user_name)
        with self.store.session() as session:
            if session.ram_users.get(account_id, user_name, for_update=True) is None:
                raise _user_missing(user_name)
            self._check_user_unused(session, account_id, user_name)
            try:
                session.ram_users.delete(account_id, user_name)
            except MissingReferenceError:
                # An AccessKey or an attachment was added after the checks above.
                self._check_user_unused(session, account_id, user_name)
                raise

    @staticmethod
    def _check_user_unused(session: StoreSession, account_id: str, user_name: str) -> None:
        keys = session.access_keys.list_for_user(account_id, user_name)
        if keys:
            raise delete_conflict(
                "DeleteConflict.User.AccessKey",
                f"the RAM user {user_name!r} still has {len(keys)} AccessKey(s): delete them with "
                "DeleteAccessKey before deleting the user",
            )
        attached = session.ram_policies.list_attached(account_id, "user", user_name)
        if attached:
            raise delete_conflict(
                "DeleteConflict.User.Policy",
                f"the RAM user {user_name!r} still has {len(attached)} attached policy(ies): "
                "detach them with DetachPolicyFromUser before deleting the user",
            )
        if session.login_profiles.get(account_id, user_name) is not None:
            # NOTE: the code is hyok's, in the form of RAM's DeleteConflict.User.* codes.
            raise delete_conflict(
                "DeleteConflict.User.LoginProfile",
                f"the RAM user {user_name!r} still has a login profile: delete it with "
                "DeleteLoginProfile before deleting the user",
            )

    # --- AccessKeys of users ---------------------------------------------------------

    def create_access_key(self, account_id: str, user_name: str) -> AccessKey:
        """Create an AccessKey for a RAM user, at most two per user.

        Raises ``EntityNotExist.User`` or ``LimitExceeded.User.AccessKey``.
        """
        check_name(_USER_NAME, user_name)
        access_key = AccessKey(
            access_key_id=new_access_key_id(self.random_bytes),
            account_id=account_id,
            secret=new_access_key_secret(self.random_bytes),
            created_at=self.clock(),
            user_name=user_name,
        )
        with self.store.session() as session:
            # The lock serializes concurrent creations, so the limit holds.
            if session.ram_users.get(account_id, user_name, for_update=True) is None:
                raise _user_missing(user_name)
            existing = session.access_keys.list_for_user(account_id, user_name)
            if len(existing) >= MAX_ACCESS_KEYS_PER_USER:
                raise already_exists(
                    "LimitExceeded.User.AccessKey",
                    f"the RAM user {user_name!r} already has {len(existing)} AccessKeys, the "
                    f"maximum is {MAX_ACCESS_KEYS_PER_USER}: delete one with DeleteAccessKey "
                    "first",
                )
            session.access_keys.create(access_key)
        return access_key

    def list_access_keys(self, account_id: str, user_name: str) -> list[AccessKey]:
        """Return the AccessKeys of a RAM user. Raises ``EntityNotExist.User``."""
        check_name(_USER_NAME, user_name)
        with self.store.session(read_only=True) as session:
            if session.ram_users.get(account_id, user_name) is None:
                raise _user_missing(user_name)
            return session.access_keys.list_for_user(account_id, user_name)

    def delete_access_key(self, account_id: str, user_name: str, access_key_id: str) -> None:
        """Delete an AccessKey of a RAM user.

        Raises ``EntityNotExist.User`` or ``EntityNotExist.User.AccessKey``
        (also for an AccessKey of another user or of the root).
        """
        check_name(_USER_NAME, user_name)
        with self.store.session() as session:
            if session.ram_users.get(account_id, user_name) is None:
                raise _user_missing(user_name)
            found = session.access_keys.get(access_key_id)
            if found is None or found.account_id != account_id or found.user_name != user_name:
                raise not_found(
                    "EntityNotExist.User.AccessKey",
                    f"the RAM user {user_name!r} has no AccessKey {access_key_id[:64]!r}: list its "
                    "AccessKeys with ListAccessKeys",
                )
            session.access_keys.delete(access_key_id)

    # --- Roles ---------------------------------------------------------------------

    def create_role(
        self,
        account_id: str,
        role_name: str,
        trust_policy: str,
        *,
        description: str = "",
        max_session_duration: int = DEFAULT_MAX_SESSION_DURATION,
    ) -> RamRole:
        """Create a role. Raises ``MalformedPolicyDocument`` or ``EntityAlreadyExists.Role``."""
        check_name(_ROLE_NAME, role_name)
        _check_length("Description", description, MAX_ROLE_DESCRIPTION_LENGTH)
        try:
            parse_trust_policy(trust_policy)
        except PolicyDocumentError as exc:
            raise _policy_error(exc) from None
        role = RamRole(
            account_id=account_id,
            role_id=new_role_id(self.random_bytes),
            role_name=role_name,
            description=description,
            trust_policy=trust_policy,
            max_session_duration=max_session_duration,
            created_at=self.clock(),
        )
        try:
            with self.store.session() as session:
                session.ram_roles.create(role)
        except DuplicateRowError:
            raise already_exists(
                "EntityAlreadyExists.Role",
                f"a RAM role named {role_name!r} already exists in this account: choose another "
                "name",
            ) from None
        return role

    def get_role(self, account_id: str, role_name: str) -> RamRole:
        """Return a role. Raises ``EntityNotExist.Role``."""
        check_name(_ROLE_NAME, role_name)
        with self.store.session(read_only=True) as session:
            role = session.ram_roles.get(account_id, role_name)
        if role is None:
            raise _role_missing(role_name)
        return role

    def list_roles(
        self, account_id: str, *, after: str | None, limit: int
    ) -> tuple[list[RamRole], bool]:
        """Return up to ``limit`` roles by name, after ``after``, and whether more follow."""
        with self.store.session(read_only=True) as session:
            return session.ram_roles.list(account_id, after=after, limit=limit)

    def delete_role(self, account_id: str, role_name: str) -> None:
        """Delete a role without attached policies; its STS credentials go with it.

        Raises ``EntityNotExist.Role`` or ``DeleteConflict.Role.Policy``.
        """
        check_name(_ROLE_NAME, role_name)
        with self.store.session() as session:
            if session.ram_roles.get(account_id, role_name, for_update=True) is None:
                raise _role_missing(role_name)
            attached = session.ram_policies.list_attached(account_id, "role", role_name)
            if attached:
                raise delete_conflict(
                    "DeleteConflict.Role.Policy",
                    f"the RAM role {role_name!r} still has {len(attached)} attached policy(ies): "
                    "detach them with DetachPolicyFromRole before deleting the role",
                )
            session.ram_roles.delete(account_id, role_name)

    # --- Custom policies --------------------------------------------------------------

    def create_policy(
        self, account_id: str, policy_name: str, document: str, *, description: str = ""
    ) -> RamPolicy:
        """Create a custom policy with one version.

        Raises ``MalformedPolicyDocument``,
        ``InvalidParameter.PolicyDocument.Length`` or ``EntityAlreadyExists.Policy``.
        """
        check_name(_POLICY_NAME, policy_name)
        _check_length("Description", description, MAX_POLICY_DESCRIPTION_LENGTH)
        try:
            parse_policy(document, PolicyKind.IDENTITY)
        except PolicyDocumentError as exc:
            raise _policy_error(exc) from None
        policy = RamPolicy(
            account_id=account_id,
            policy_name=policy_name,
            description=description,
            document=document,
            created_at=self.clock(),
        )
        try:
            with self.store.session() as session:
                session.ram_policies.create(policy)
        except DuplicateRowError:
            raise already_exists(
                "EntityAlreadyExists.Policy",
                f"a custom policy named {policy_name!r} already exists in this account: choose "
                "another name",
            ) from None
        return policy

    def get_policy(
        self, account_id: str, policy_name: str, policy_type: str
    ) -> tuple[RamPolicy, int]:
        """Return a custom policy and the number of users and roles it is attached to."""
        check_name(_POLICY_NAME, policy_name)
        _check_policy_type(policy_type, policy_name)
        with self.store.session(read_only=True) as session:
            policy = session.ram_policies.get(account_id, policy_name)
            if policy is None:
                raise _policy_missing(policy_name)
            count = sum(
                session.ram_policies.count_attachments(account_id, policy_name, kind)
                for kind in ("user", "role")
            )
        return policy, count

    def delete_policy(self, account_id: str, policy_name: str) -> None:
        """Delete a custom policy that is attached to no user or role.

        Raises ``EntityNotExist.Policy``, ``DeleteConflict.Policy.User`` or
        ``DeleteConflict.Role.Policy``.
        """
        check_name(_POLICY_NAME, policy_name)
        with self.store.session() as session:
            if session.ram_policies.get(account_id, policy_name) is None:
                raise _policy_missing(policy_name)
            users = session.ram_policies.count_attachments(account_id, policy_name, "user")
            if users:
                raise delete_conflict(
                    "DeleteConflict.Policy.User",
                    f"the policy {policy_name!r} is attached to {users} RAM user(s): detach it "
                    "with DetachPolicyFromUser before deleting it",
                )
            roles = session.ram_policies.count_attachments(account_id, policy_name, "role")
            if roles:
                # NOTE: RAM's error table lists no code for a policy attached to a role;
                # DeleteConflict.Role.Policy is what clients such as the Terraform provider expect.
                raise delete_conflict(
                    "DeleteConflict.Role.Policy",
                    f"the policy {policy_name!r} is attached to {roles} RAM role(s): detach it "
                    "with DetachPolicyFromRole before deleting it",
                )
            session.ram_policies.delete(account_id, policy_name)

    def attach_policy(
        self, account_id: str, kind: str, name: str, policy_type: str, policy_name: str
    ) -> None:
        """Attach a custom policy to a user (``kind`` ``"user"``) or a role (``"role"``).

        Raises ``EntityNotExist.User``/``.Role``/``.Policy``,
        ``EntityAlreadyExists.User.Policy``/``.Role.Policy`` or
        ``LimitExceeded.User.Policy``/``.Role.Policy``.
        """
        label = kind.capitalize()
        check_name(_USER_NAME if kind == "user" else _ROLE_NAME, name)
        check_name(_POLICY_NAME, policy_name)
        _check_policy_type(policy_type, policy_name)
        with self.store.session() as session:
            self._lock_identity(session, account_id, kind, name)
            if session.ram_policies.get(account_id, policy_name) is None:
                raise _policy_missing(policy_name)
            attached = session.ram_policies.list_attached(account_id, kind, name)
            if any(item.policy.policy_name == policy_name for item in attached):
                raise already_exists(
                    f"EntityAlreadyExists.{label}.Policy",
                    f"the policy {policy_name!r} is already attached to the RAM {kind} {name!r}",
                )
            if len(attached) >= MAX_POLICIES_PER_IDENTITY:
                raise already_exists(
                    f"LimitExceeded.{label}.Policy",
                    f"the RAM {kind} {name!r} already has {len(attached)} custom policies "
                    f"attached, the maximum is {MAX_POLICIES_PER_IDENTITY}: detach one first",
                )
            session.ram_policies.attach(account_id, kind, name, policy_name, self.clock())

    def detach_policy(
        self, account_id: str, kind: str, name: str, policy_type: str, policy_name: str
    ) -> None:
        """Detach a custom policy from a user or role.

        Raises ``EntityNotExist.User``/``.Role``/``.Policy`` or
        ``EntityNotExist.User.Policy``/``.Role.Policy``.
        """
        check_name(_USER_NAME if kind == "user" else _ROLE_NAME, name)
        check_name(_POLICY_NAME, policy_name)
        _check_policy_type(policy_type, policy_name)
        with self.store.session() as session:
            self._lock_identity(session, account_id, kind, name)
            if session.ram_policies.get(account_id, policy_name) is None:
                raise _policy_missing(policy_name)
            try:
                session.ram_policies.detach(account_id, kind, name, policy_name)
            except RowNotFoundError:
                raise not_found(
                    f"EntityNotExist.{kind.capitalize()}.Policy",
                    f"the policy {policy_name!r} is not attached to the RAM {kind} {name!r}",
                ) from None

    def list_policies_for_user(self, account_id: str, user_name: str) -> list[AttachedPolicy]:
        """Return the policies attached to a user. Raises ``EntityNotExist.User``."""
        check_name(_USER_NAME, user_name)
        with self.store.session(read_only=True) as session:
            if session.ram_users.get(account_id, user_name) is None:
                raise _user_missing(user_name)
            return session.ram_policies.list_attached(account_id, "user", user_name)

    @staticmethod
    def _lock_identity(session: StoreSession, account_id: str, kind: str, name: str) -> None:
        if kind == "user":
            if session.ram_users.get(account_id, name, for_update=True) is None:
                raise _user_missing(name)
        elif session.ram_roles.get(account_id, name, for_update=True) is None:
            raise _role_missing(name)


def _check_policy_type(policy_type: str, policy_name: str) -> None:
    if policy_type == SYSTEM_POLICY_TYPE:
        raise not_found(
            "EntityNotExist.Policy",
            f"the system policy {policy_name!r} does not exist: hyok has no system policies, so "
            "create a custom policy and pass PolicyType Custom",
        )
    if policy_type != CUSTOM_POLICY_TYPE:
        raise invalid_parameter(
            "InvalidParameter.PolicyType",
            f"the parameter PolicyType {policy_type[:64]!r} is invalid: use Custom or System",
        )
