"""Console passwords: login profiles of RAM users, the account root's password, and sign-in.

:class:`LoginProfileService` runs the RAM actions ``CreateLoginProfile``,
``GetLoginProfile``, ``UpdateLoginProfile`` and ``DeleteLoginProfile``, sets
the console password of an account root, and verifies a console sign-in.
Its methods block (each hash costs one scrypt run, see
:mod:`hyok.kms.domain.passwords`), so an async caller runs them in a worker
thread. Passwords arrive as :class:`~hyok.common.secrets.Secret` and never
reach a message, a log line or the database: only their hashes are stored.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain.ids import RandomBytes
from hyok.kms.domain.login_profiles import LoginProfile, parse_sign_in_name
from hyok.kms.domain.passwords import (
    DEFAULT_SCRYPT,
    MAX_PASSWORD_LENGTH,
    PasswordPolicyError,
    ScryptParameters,
    check_password,
    dummy_password_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.domain.ram import USER_NAME
from hyok.kms.ram.errors import (
    ConsoleSignInError,
    RamError,
    already_exists,
    invalid_parameter,
    not_found,
)
from hyok.kms.ram.identities import USER_NAME_RULE, check_name
from hyok.kms.store import DuplicateRowError, KmsStore, MissingReferenceError

__all__ = ["LoginProfileService"]

_log: Final = logging.getLogger(__name__)
_ACCOUNT_ID: Final = re.compile(r"[0-9]{12,16}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _user_missing(user_name: str) -> RamError:
    return not_found(
        "EntityNotExist.User",
        f"the RAM user {user_name!r} does not exist in this account: check the name, or create "
        "the user with CreateUser",
    )


def _profile_missing(user_name: str) -> RamError:
    return not_found(
        "EntityNotExist.User.LoginProfile",
        f"the RAM user {user_name!r} has no login profile: create one with CreateLoginProfile",
    )


def _checked_password(password: Secret) -> Secret:
    try:
        check_password(password)
    except PasswordPolicyError as exc:
        # NOTE: RAM documents no code for a password that breaks the policy;
        # InvalidParameter.Password.<rule> is hyok's, in the form of RAM's other codes.
        raise invalid_parameter(f"InvalidParameter.Password.{exc.rule}", exc.message) from None
    return password


def _check_mfa(mfa_bind_required: bool | None) -> None:
    if mfa_bind_required:
        # NOTE: the code is hyok's: RAM accepts true, and hyok has no MFA to enforce it.
        raise invalid_parameter(
            "InvalidParameter.MFABindRequired",
            "the parameter MFABindRequired is true, but this KMS has no multi-factor "
            "authentication: pass false or leave it out",
        )


class LoginProfileService:
    """Console passwords and sign-in on one store. Clock, randomness and scrypt cost are injectable.

    ``parameters`` is the scrypt cost of new hashes. A successful sign-in
    replaces a hash made with other parameters, so raising them upgrades
    each password at its next sign-in.
    """

    def __init__(
        self,
        store: KmsStore,
        *,
        clock: Callable[[], datetime] = _utc_now,
        random_bytes: RandomBytes = secrets.token_bytes,
        parameters: ScryptParameters = DEFAULT_SCRYPT,
    ) -> None:
        self.store = store
        self.clock = clock
        self.random_bytes = random_bytes
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"LoginProfileService({self.store!r})"

    def _hash(self, password: Secret) -> str:
        return hash_password(password, self.parameters, self.random_bytes)

    # --- Login profiles of RAM users ----------------------------------------------------

    def create_login_profile(
        self,
        account_id: str,
        user_name: str,
        password: Secret,
        *,
        password_reset_required: bool = False,
        mfa_bind_required: bool = False,
    ) -> LoginProfile:
        """Let a RAM user sign in to the console with ``password``.

        Raises ``InvalidParameter.Password.*``, ``InvalidParameter.MFABindRequired``,
        ``EntityNotExist.User`` or ``EntityAlreadyExists.User.LoginProfile``.
        """
        check_name(USER_NAME_RULE, user_name)
        _check_mfa(mfa_bind_required)
        # Hash before the transaction, so that no row stays locked during scrypt.
        password_hash = self._hash(_checked_password(password))
        now = self.clock()
        profile = LoginProfile(
            account_id=account_id,
            user_name=user_name,
            password_hash=password_hash,
            password_reset_required=password_reset_required,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.store.session() as session:
                if session.ram_users.get(account_id, user_name, for_update=True) is None:
                    raise _user_missing(user_name)
                session.login_profiles.create(profile)
        except DuplicateRowError:
            raise already_exists(
                "EntityAlreadyExists.User.LoginProfile",
                f"the RAM user {user_name!r} already has a login profile: change it with "
                "UpdateLoginProfile",
            ) from None
        except MissingReferenceError:
            # The user was deleted between the check and the insert.
            raise _user_missing(user_name) from None
        return profile

    def get_login_profile(self, account_id: str, user_name: str) -> LoginProfile:
        """Return a user's login profile.

        Raises ``EntityNotExist.User`` or ``EntityNotExist.User.LoginProfile``.
        """
        check_name(USER_NAME_RULE, user_name)
        with self.store.session(read_only=True) as session:
            if session.ram_users.get(account_id, user_name) is None:
                raise _user_missing(user_name)
            profile = session.login_profiles.get(account_id, user_name)
        if profile is None:
            raise _profile_missing(user_name)
        return profile

    def update_login_profile(
        self,
        account_id: str,
        user_name: str,
        *,
        password: Secret | None = None,
        password_reset_required: bool | None = None,
        mfa_bind_required: bool | None = None,
    ) -> LoginProfile:
        """Change the password or the flags of a login profile; None keeps a value.

        Raises ``InvalidParameter.Password.*``, ``InvalidParameter.MFABindRequired``,
        ``EntityNotExist.User`` or ``EntityNotExist.User.LoginProfile``.
        """
        check_name(USER_NAME_RULE, user_name)
        _check_mfa(mfa_bind_required)
        new_hash = None if password is None else self._hash(_checked_password(password))
        with self.store.session() as session:
            if session.ram_users.get(account_id, user_name, for_update=True) is None:
                raise _user_missing(user_name)
            current = session.login_profiles.get(account_id, user_name, for_update=True)
            if current is None:
                raise _profile_missing(user_name)
            updated = LoginProfile(
                account_id=account_id,
                user_name=user_name,
                password_hash=current.password_hash if new_hash is None else new_hash,
                password_reset_required=(
                    current.password_reset_required
                    if password_reset_required is None
                    else password_reset_required
                ),
                created_at=current.created_at,
                updated_at=self.clock(),
            )
            session.login_profiles.update(updated)
        return updated

    def delete_login_profile(self, account_id: str, user_name: str) -> None:
        """Stop a RAM user's console sign-in; its AccessKeys keep working.

        Raises ``EntityNotExist.User`` or ``EntityNotExist.User.LoginProfile``.
        """
        check_name(USER_NAME_RULE, user_name)
        with self.store.session() as session:
            if session.ram_users.get(account_id, user_name, for_update=True) is None:
                raise _user_missing(user_name)
            if session.login_profiles.get(account_id, user_name) is None:
                raise _profile_missing(user_name)
            session.login_profiles.delete(account_id, user_name)

    # --- The account root ----------------------------------------------------------------

    def set_root_console_password(self, account_id: str, password: Secret) -> None:
        """Set or replace the console password of an account root.

        Raises ``InvalidParameter.Password.*`` or ``EntityNotExist.Account``.
        """
        password_hash = self._hash(_checked_password(password))
        with self.store.session() as session:
            if session.accounts.get(account_id) is None:
                raise not_found(
                    "EntityNotExist.Account",
                    f"the account {account_id[:64]!r} does not exist: list the accounts with "
                    "'hyok kms account list'",
                )
            session.console_passwords.set_hash(account_id, password_hash, self.clock())

    def delete_root_console_password(self, account_id: str) -> bool:
        """Stop the console sign-in of an account root, and return whether it had a password."""
        with self.store.session() as session:
            return session.console_passwords.delete(account_id)

    # --- Sign-in ---------------------------------------------------------------------------

    def verify_console_password(
        self, account_id: str, user_name: str | None, password: Secret
    ) -> RamIdentity:
        """Return the identity that ``password`` signs in, the root when ``user_name`` is None.

        Raises ConsoleSignInError, with one message, for an unknown account
        or user, a user without a login profile and a wrong password. Each of
        them costs one scrypt run, against a dummy hash when there is no
        stored one, so the time taken does not tell them apart either.
        """
        if len(password.reveal()) > MAX_PASSWORD_LENGTH:
            # No stored password is this long, and hashing it would only cost time.
            raise ConsoleSignInError()
        valid_name = _ACCOUNT_ID.fullmatch(account_id) is not None and (
            user_name is None or USER_NAME.fullmatch(user_name) is not None
        )
        stored = self._stored_hash(account_id, user_name) if valid_name else None
        if stored is None:
            verify_password(password, dummy_password_hash(self.parameters))
            raise ConsoleSignInError()
        try:
            matches = verify_password(password, stored)
        except ValueError:
            _log.error(
                "the stored console password hash of %s is corrupt; set a new password",
                _who(account_id, user_name),
            )
            raise ConsoleSignInError() from None
        if not matches:
            raise ConsoleSignInError()
        if needs_rehash(stored, self.parameters):
            self._rehash(account_id, user_name, password, stored)
        if user_name is None:
            return RamIdentity(account_id, CallerKind.ROOT)
        return RamIdentity(account_id, CallerKind.USER, user_name)

    def sign_in(self, sign_in_name: str, password: Secret) -> RamIdentity:
        """Verify a sign-in name (see parse_sign_in_name) and password.

        A malformed name raises ConsoleSignInError too, after a dummy hash.
        """
        try:
            name = parse_sign_in_name(sign_in_name)
        except ValidationError:
            verify_password(password, dummy_password_hash(self.parameters))
            raise ConsoleSignInError() from None
        return self.verify_console_password(name.account_id, name.user_name, password)

    # --- Changing one's own password --------------------------------------------------------

    def password_reset_required(self, identity: RamIdentity) -> bool:
        """Tell whether ``identity`` must change its password before it uses the console."""
        if identity.kind is not CallerKind.USER or identity.name is None:
            return False
        with self.store.session(read_only=True) as session:
            profile = session.login_profiles.get(identity.account_id, identity.name)
        return profile is not None and profile.password_reset_required

    def change_password(self, identity: RamIdentity, current: Secret, new: Secret) -> None:
        """Replace the console password of ``identity`` once ``current`` verifies.

        For a RAM user this also clears PasswordResetRequired. Raises
        ConsoleSignInError for a wrong ``current`` (after one scrypt run, as a
        sign-in), ``InvalidParameter.Password.*`` for a ``new`` that breaks the
        password policy or equals ``current``, and
        ``EntityNotExist.User.LoginProfile`` if the profile was deleted meanwhile.
        """
        if identity.kind is CallerKind.ROLE:
            raise ValueError("a role session has no console password")
        user_name = identity.name if identity.kind is CallerKind.USER else None
        self.verify_console_password(identity.account_id, user_name, current)
        _checked_password(new)
        if hmac.compare_digest(current.reveal_bytes(), new.reveal_bytes()):
            raise invalid_parameter(
                "InvalidParameter.Password.Unchanged",
                "the new password is the current one: choose a different password",
            )
        new_hash = self._hash(new)
        with self.store.session() as session:
            if user_name is None:
                session.console_passwords.set_hash(identity.account_id, new_hash, self.clock())
                return
            profile = session.login_profiles.get(identity.account_id, user_name, for_update=True)
            if profile is None:
                raise _profile_missing(user_name)
            session.login_profiles.update(
                LoginProfile(
                    account_id=identity.account_id,
                    user_name=user_name,
                    password_hash=new_hash,
                    password_reset_required=False,
                    created_at=profile.created_at,
                    updated_at=self.clock(),
                )
            )

    def _stored_hash(self, account_id: str, user_name: str | None) -> str | None:
        with self.store.session(read_only=True) as session:
            if user_name is None:
                return session.console_passwords.get_hash(account_id)
            profile = session.login_profiles.get(account_id, user_name)
        return None if profile is None else profile.password_hash

    def _rehash(self, account_id: str, user_name: str | None, password: Secret, old: str) -> None:
        """Store the password again with the current parameters, unless it changed meanwhile."""
        new_hash = self._hash(password)
        with self.store.session() as session:
            if user_name is None:
                if session.console_passwords.get_hash(account_id) == old:
                    session.console_passwords.set_hash(account_id, new_hash, self.clock())
                return
            current = session.login_profiles.get(account_id, user_name, for_update=True)
            if current is not None and current.password_hash == old:
                session.login_profiles.update(
                    LoginProfile(
                        account_id=account_id,
                        user_name=user_name,
                        password_hash=new_hash,
                        password_reset_required=current.password_reset_required,
                        created_at=current.created_at,
                        updated_at=current.updated_at,
                    )
                )


def _who(account_id: str, user_name: str | None) -> str:
    if user_name is None:
        return f"the root of account {account_id}"
    return f"RAM user {user_name!r} of account {account_id}"
