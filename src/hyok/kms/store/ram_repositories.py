"""Repositories of the RAM identities: users, roles, policies, STS credentials, console passwords.

They follow the conventions of :mod:`hyok.kms.store.repositories`: ``get``
returns None for a missing row, ``delete`` raises RowNotFoundError, each
write runs in a savepoint and a broken constraint raises an
:class:`~hyok.kms.store.errors.IntegrityViolationError` subclass (a duplicate
name raises DuplicateRowError). Names are unique per account, so users,
roles and policies are addressed by (account ID, name).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Connection, RowMapping, Table, delete, func, insert, select, update

from hyok.kms.domain.login_profiles import LoginProfile
from hyok.kms.domain.ram import AttachedPolicy, RamPolicy, RamRole, RamUser, StsCredential
from hyok.kms.store._rows import writing
from hyok.kms.store.errors import RowNotFoundError
from hyok.kms.store.secretbox import SecretBox
from hyok.kms.store.tables import (
    account_console_passwords,
    ram_login_profiles,
    ram_policies,
    ram_role_policies,
    ram_roles,
    ram_user_policies,
    ram_users,
    sts_credentials,
)

__all__ = [
    "ConsolePasswordRepository",
    "LoginProfileRepository",
    "RamPolicyRepository",
    "RamRoleRepository",
    "RamUserRepository",
    "StsCredentialRepository",
]

_STS_CIPHERTEXT_COLUMN: Final = "secret_ciphertext"


# --- Users --------------------------------------------------------------------------


def _user(row: RowMapping) -> RamUser:
    return RamUser(
        account_id=row["account_id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        display_name=row["display_name"],
        comments=row["comments"],
        created_at=row["created_at"],
    )


class RamUserRepository:
    """RAM users, unique by name in an account."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, user: RamUser) -> None:
        """Insert a user. Raises DuplicateRowError when the account has a user of that name."""
        with writing(
            self._connection,
            f"creating RAM user {user.user_name!r}",
            {"account": user.account_id},
        ):
            self._connection.execute(
                insert(ram_users).values(
                    user_id=user.user_id,
                    account_id=user.account_id,
                    user_name=user.user_name,
                    display_name=user.display_name,
                    comments=user.comments,
                    created_at=user.created_at,
                )
            )

    def get(self, account_id: str, user_name: str, *, for_update: bool = False) -> RamUser | None:
        """Return the user, or None. ``for_update`` locks the row until the session ends."""
        query = select(ram_users).where(
            ram_users.c.account_id == account_id, ram_users.c.user_name == user_name
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _user(row)

    def list(self, account_id: str, *, after: str | None, limit: int) -> tuple[list[RamUser], bool]:
        """Return up to ``limit`` users by name, those after ``after``, and whether more follow."""
        query = select(ram_users).where(ram_users.c.account_id == account_id)
        if after is not None:
            query = query.where(ram_users.c.user_name > after)
        rows = self._connection.execute(
            query.order_by(ram_users.c.user_name).limit(limit + 1)
        ).mappings()
        users = [_user(row) for row in rows]
        return users[:limit], len(users) > limit

    def delete(self, account_id: str, user_name: str) -> None:
        """Delete a user. Raises MissingReferenceError while AccessKeys or attachments remain."""
        with writing(self._connection, f"deleting RAM user {user_name!r}"):
            result = self._connection.execute(
                delete(ram_users).where(
                    ram_users.c.account_id == account_id, ram_users.c.user_name == user_name
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"RAM user {user_name!r} does not exist")


# --- Roles --------------------------------------------------------------------------


def _role(row: RowMapping) -> RamRole:
    return RamRole(
        account_id=row["account_id"],
        role_id=row["role_id"],
        role_name=row["role_name"],
        description=row["description"],
        trust_policy=row["trust_policy"],
        max_session_duration=row["max_session_duration"],
        created_at=row["created_at"],
    )


class RamRoleRepository:
    """RAM roles, unique by name in an account."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, role: RamRole) -> None:
        """Insert a role. Raises DuplicateRowError when the account has a role of that name."""
        with writing(
            self._connection, f"creating RAM role {role.role_name!r}", {"account": role.account_id}
        ):
            self._connection.execute(
                insert(ram_roles).values(
                    role_id=role.role_id,
                    account_id=role.account_id,
                    role_name=role.role_name,
                    description=role.description,
                    trust_policy=role.trust_policy,
                    max_session_duration=role.max_session_duration,
                    created_at=role.created_at,
                )
            )

    def get(self, account_id: str, role_name: str, *, for_update: bool = False) -> RamRole | None:
        """Return the role, or None. ``for_update`` locks the row until the session ends."""
        query = select(ram_roles).where(
            ram_roles.c.account_id == account_id, ram_roles.c.role_name == role_name
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _role(row)

    def list(self, account_id: str, *, after: str | None, limit: int) -> tuple[list[RamRole], bool]:
        """Return up to ``limit`` roles by name, those after ``after``, and whether more follow."""
        query = select(ram_roles).where(ram_roles.c.account_id == account_id)
        if after is not None:
            query = query.where(ram_roles.c.role_name > after)
        rows = self._connection.execute(
            query.order_by(ram_roles.c.role_name).limit(limit + 1)
        ).mappings()
        roles = [_role(row) for row in rows]
        return roles[:limit], len(roles) > limit

    def delete(self, account_id: str, role_name: str) -> None:
        """Delete a role and, through the foreign key, the STS credentials of its sessions."""
        with writing(self._connection, f"deleting RAM role {role_name!r}"):
            result = self._connection.execute(
                delete(ram_roles).where(
                    ram_roles.c.account_id == account_id, ram_roles.c.role_name == role_name
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"RAM role {role_name!r} does not exist")


# --- Policies and attachments --------------------------------------------------------


def _policy(row: RowMapping) -> RamPolicy:
    return RamPolicy(
        account_id=row["account_id"],
        policy_name=row["policy_name"],
        description=row["description"],
        document=row["document"],
        created_at=row["created_at"],
    )


class RamPolicyRepository:
    """Custom identity policies, unique by name in an account, and their attachments.

    An attachment names the user or role (``kind`` ``"user"`` or ``"role"``)
    and the policy by name in the same account.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, policy: RamPolicy) -> None:
        """Insert a policy. Raises DuplicateRowError when the account has a policy of that name."""
        with writing(
            self._connection,
            f"creating policy {policy.policy_name!r}",
            {"account": policy.account_id},
        ):
            self._connection.execute(
                insert(ram_policies).values(
                    account_id=policy.account_id,
                    policy_name=policy.policy_name,
                    description=policy.description,
                    document=policy.document,
                    created_at=policy.created_at,
                )
            )

    def get(self, account_id: str, policy_name: str) -> RamPolicy | None:
        """Return the policy, or None."""
        query = select(ram_policies).where(
            ram_policies.c.account_id == account_id, ram_policies.c.policy_name == policy_name
        )
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _policy(row)

    def delete(self, account_id: str, policy_name: str) -> None:
        """Delete a policy. Raises MissingReferenceError while it is attached."""
        with writing(self._connection, f"deleting policy {policy_name!r}"):
            result = self._connection.execute(
                delete(ram_policies).where(
                    ram_policies.c.account_id == account_id,
                    ram_policies.c.policy_name == policy_name,
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"policy {policy_name!r} does not exist")

    def count_attachments(self, account_id: str, policy_name: str, kind: str) -> int:
        """Return the number of users (``kind`` ``"user"``) or roles the policy is attached to."""
        table = _attachment_table(kind)
        query = (
            select(func.count())
            .select_from(table)
            .where(table.c.account_id == account_id, table.c.policy_name == policy_name)
        )
        return self._connection.scalar(query) or 0

    def attach(
        self, account_id: str, kind: str, name: str, policy_name: str, attached_at: datetime
    ) -> None:
        """Attach a policy to a user or role.

        Raises DuplicateRowError when it is attached already, and
        MissingReferenceError when the user, role or policy does not exist.
        """
        table = _attachment_table(kind)
        with writing(
            self._connection,
            f"attaching policy {policy_name!r} to RAM {kind} {name!r}",
            {f"RAM {kind}": name, "policy": policy_name},
        ):
            self._connection.execute(
                insert(table).values(
                    {
                        "account_id": account_id,
                        f"{kind}_name": name,
                        "policy_name": policy_name,
                        "attached_at": attached_at,
                    }
                )
            )

    def detach(self, account_id: str, kind: str, name: str, policy_name: str) -> None:
        """Detach a policy from a user or role. Raises RowNotFoundError when it is not attached."""
        table = _attachment_table(kind)
        with writing(
            self._connection, f"detaching policy {policy_name!r} from RAM {kind} {name!r}"
        ):
            result = self._connection.execute(
                delete(table).where(
                    table.c.account_id == account_id,
                    table.c[f"{kind}_name"] == name,
                    table.c.policy_name == policy_name,
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"policy {policy_name!r} is not attached to {kind} {name!r}")

    def list_attached(self, account_id: str, kind: str, name: str) -> list[AttachedPolicy]:
        """Return the policies attached to a user or role, by attachment time."""
        table = _attachment_table(kind)
        query = (
            select(ram_policies, table.c.attached_at)
            .join(
                table,
                (table.c.account_id == ram_policies.c.account_id)
                & (table.c.policy_name == ram_policies.c.policy_name),
            )
            .where(table.c.account_id == account_id, table.c[f"{kind}_name"] == name)
            .order_by(table.c.attached_at, table.c.policy_name)
        )
        return [
            AttachedPolicy(_policy(row), row["attached_at"])
            for row in self._connection.execute(query).mappings()
        ]


def _attachment_table(kind: str) -> Table:
    if kind == "user":
        return ram_user_policies
    if kind == "role":
        return ram_role_policies
    raise ValueError(f"kind must be 'user' or 'role', not {kind!r}")


# --- STS credentials ------------------------------------------------------------------


class StsCredentialRepository:
    """Temporary credentials of role sessions. The secret is sealed by the SecretBox."""

    def __init__(self, connection: Connection, secretbox: SecretBox) -> None:
        self._connection = connection
        self._secretbox = secretbox

    def _from_row(self, row: RowMapping) -> StsCredential:
        secret = self._secretbox.decrypt_secret(
            row[_STS_CIPHERTEXT_COLUMN],
            table=sts_credentials.name,
            column=_STS_CIPHERTEXT_COLUMN,
            row_id=row["access_key_id"],
        )
        return StsCredential(
            access_key_id=row["access_key_id"],
            account_id=row["account_id"],
            role_name=row["role_name"],
            session_name=row["session_name"],
            secret=secret,
            token_hash=bytes(row["token_hash"]),
            source_arn=row["source_arn"],
            expires_at=row["expires_at"],
            revoked=bool(row["revoked"]),
            created_at=row["created_at"],
        )

    def create(self, credential: StsCredential) -> None:
        """Insert credentials. Raises MissingReferenceError when the role does not exist."""
        ciphertext = self._secretbox.encrypt_secret(
            credential.secret,
            table=sts_credentials.name,
            column=_STS_CIPHERTEXT_COLUMN,
            row_id=credential.access_key_id,
        )
        with writing(
            self._connection,
            f"creating STS credentials {credential.access_key_id!r}",
            {"RAM role": credential.role_name},
        ):
            self._connection.execute(
                insert(sts_credentials).values(
                    access_key_id=credential.access_key_id,
                    account_id=credential.account_id,
                    role_name=credential.role_name,
                    session_name=credential.session_name,
                    secret_ciphertext=ciphertext,
                    token_hash=credential.token_hash,
                    source_arn=credential.source_arn,
                    expires_at=credential.expires_at,
                    revoked=credential.revoked,
                    created_at=credential.created_at,
                )
            )

    def get(self, access_key_id: str) -> StsCredential | None:
        """Return the credentials with their decrypted secret, or None."""
        query = select(sts_credentials).where(sts_credentials.c.access_key_id == access_key_id)
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else self._from_row(row)

    def revoke(self, access_key_id: str) -> None:
        """Mark credentials revoked, so that they sign no more requests."""
        with writing(self._connection, f"revoking STS credentials {access_key_id!r}"):
            result = self._connection.execute(
                update(sts_credentials)
                .where(sts_credentials.c.access_key_id == access_key_id)
                .values(revoked=True)
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"STS credentials {access_key_id!r} do not exist")

    def revoke_role_sessions(self, account_id: str, role_name: str) -> int:
        """Revoke the credentials of every session of a role, and return how many changed."""
        with writing(self._connection, f"revoking the sessions of RAM role {role_name!r}"):
            result = self._connection.execute(
                update(sts_credentials)
                .where(
                    sts_credentials.c.account_id == account_id,
                    sts_credentials.c.role_name == role_name,
                    sts_credentials.c.revoked.is_(False),
                )
                .values(revoked=True)
            )
        return result.rowcount

    def delete_expired(self, now: datetime) -> int:
        """Delete credentials that expired before ``now``, and return how many."""
        with writing(self._connection, "deleting expired STS credentials"):
            result = self._connection.execute(
                delete(sts_credentials).where(sts_credentials.c.expires_at < now)
            )
        return result.rowcount


# --- Console passwords ------------------------------------------------------------------


def _login_profile(row: RowMapping) -> LoginProfile:
    return LoginProfile(
        account_id=row["account_id"],
        user_name=row["user_name"],
        password_hash=row["password_hash"],
        password_reset_required=bool(row["password_reset_required"]),
        mfa_bind_required=bool(row["mfa_bind_required"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class LoginProfileRepository:
    """Login profiles of RAM users: at most one per user, with the password's scrypt hash."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(self, profile: LoginProfile) -> None:
        """Insert a profile.

        Raises DuplicateRowError when the user has one, and MissingReferenceError
        when the user does not exist.
        """
        with writing(
            self._connection,
            f"creating the login profile of RAM user {profile.user_name!r}",
            {"RAM user": profile.user_name},
        ):
            self._connection.execute(
                insert(ram_login_profiles).values(
                    account_id=profile.account_id,
                    user_name=profile.user_name,
                    password_hash=profile.password_hash,
                    password_reset_required=profile.password_reset_required,
                    mfa_bind_required=profile.mfa_bind_required,
                    created_at=profile.created_at,
                    updated_at=profile.updated_at,
                )
            )

    def get(
        self, account_id: str, user_name: str, *, for_update: bool = False
    ) -> LoginProfile | None:
        """Return the profile, or None. ``for_update`` locks the row until the session ends."""
        query = select(ram_login_profiles).where(
            ram_login_profiles.c.account_id == account_id,
            ram_login_profiles.c.user_name == user_name,
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).mappings().one_or_none()
        return None if row is None else _login_profile(row)

    def update(self, profile: LoginProfile) -> None:
        """Replace the hash, flags and update time of a profile. Raises RowNotFoundError."""
        with writing(
            self._connection, f"updating the login profile of RAM user {profile.user_name!r}"
        ):
            result = self._connection.execute(
                update(ram_login_profiles)
                .where(
                    ram_login_profiles.c.account_id == profile.account_id,
                    ram_login_profiles.c.user_name == profile.user_name,
                )
                .values(
                    password_hash=profile.password_hash,
                    password_reset_required=profile.password_reset_required,
                    mfa_bind_required=profile.mfa_bind_required,
                    updated_at=profile.updated_at,
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"RAM user {profile.user_name!r} has no login profile")

    def delete(self, account_id: str, user_name: str) -> None:
        """Delete a profile. Raises RowNotFoundError when the user has none."""
        with writing(self._connection, f"deleting the login profile of RAM user {user_name!r}"):
            result = self._connection.execute(
                delete(ram_login_profiles).where(
                    ram_login_profiles.c.account_id == account_id,
                    ram_login_profiles.c.user_name == user_name,
                )
            )
        if result.rowcount == 0:
            raise RowNotFoundError(f"RAM user {user_name!r} has no login profile")


class ConsolePasswordRepository:
    """The console password hash of each account root, at most one per account."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get_hash(self, account_id: str) -> str | None:
        """Return the password hash of the account root, or None when it has no password."""
        query = select(account_console_passwords.c.password_hash).where(
            account_console_passwords.c.account_id == account_id
        )
        value: str | None = self._connection.scalar(query)
        return value

    def set_hash(self, account_id: str, password_hash: str, now: datetime) -> None:
        """Insert or replace the hash. Raises MissingReferenceError when the account is missing."""
        with writing(
            self._connection,
            f"setting the console password of account {account_id!r}",
            {"account": account_id},
        ):
            result = self._connection.execute(
                update(account_console_passwords)
                .where(account_console_passwords.c.account_id == account_id)
                .values(password_hash=password_hash, updated_at=now)
            )
            if result.rowcount == 0:
                self._connection.execute(
                    insert(account_console_passwords).values(
                        account_id=account_id,
                        password_hash=password_hash,
                        created_at=now,
                        updated_at=now,
                    )
                )

    def delete(self, account_id: str) -> bool:
        """Delete the password of the account root, and return whether it had one."""
        with writing(self._connection, f"deleting the console password of account {account_id!r}"):
            result = self._connection.execute(
                delete(account_console_passwords).where(
                    account_console_passwords.c.account_id == account_id
                )
            )
        return result.rowcount > 0
