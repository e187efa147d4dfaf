"""Console passwords on SQLite and PostgreSQL: login profiles, the root's password, sign-in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hyok.common.secrets import Secret
from hyok.kms.domain import Account
from hyok.kms.domain.login_profiles import LoginProfile
from hyok.kms.domain.passwords import (
    ScryptParameters,
    dummy_password_hash,
    hash_password,
    verify_password,
)
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.ram import ConsoleSignInError, LoginProfileService, RamError, RamService
from hyok.kms.store import (
    DuplicateRowError,
    IntegrityViolationError,
    KmsStore,
    MissingReferenceError,
    RowNotFoundError,
    SecretBox,
    open_database,
    upgrade,
)
from hyok.kms.store.tables import account_console_passwords, ram_login_profiles
from tests.conftest import register_sensitive
from tests.integration._kms import postgres_server
from tests.integration._postgres import PostgresServer, fresh_schema

__all__ = ["postgres_server"]  # pytest fixture, found by name

pytestmark = pytest.mark.integration

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
NOW = datetime(2027, 1, 10, 8, 0, tzinfo=UTC)
CHEAP = ScryptParameters(log2_n=10, r=8, p=1)
PASSWORD = "Alice-console-2027"
ROOT_PASSWORD = "Root-console-pass-9"
NEW_PASSWORD = "Alice-changed-2028"

for _value in (PASSWORD, ROOT_PASSWORD, NEW_PASSWORD):
    register_sensitive(_value)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[KmsStore]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            database = open_database(f"sqlite:///{tmp_path / 'kms.db'}")
        else:
            url, schema = stack.enter_context(fresh_schema(postgres_server))
            database = open_database(url, schema=schema)
        stack.callback(database.dispose)
        upgrade(database)
        created = KmsStore(database, SecretBox(bytes(range(32))))
        with created.session() as session:
            session.accounts.create(Account(account_id=ACCOUNT, created_at=NOW))
            session.accounts.create(Account(account_id=OTHER_ACCOUNT, created_at=NOW))
        yield created


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: KmsStore, clock: Clock) -> LoginProfileService:
    return LoginProfileService(store, clock=clock, parameters=CHEAP)


@pytest.fixture
def ram(store: KmsStore, clock: Clock) -> RamService:
    return RamService(store, clock=clock)


def profile(user_name: str, **fields: Any) -> LoginProfile:
    values: dict[str, Any] = {
        "account_id": ACCOUNT,
        "user_name": user_name,
        "password_hash": hash_password(Secret(PASSWORD), CHEAP),
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return LoginProfile(**values)


def check_code(raised: pytest.ExceptionInfo[RamError], code: str, status: int) -> None:
    assert raised.value.code == code
    assert raised.value.http_status == status


# --- Repositories ------------------------------------------------------------------------


def test_login_profile_rows(store: KmsStore, ram: RamService) -> None:
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.login_profiles.create(profile("alice"))
    ram.create_user(ACCOUNT, "alice")
    with store.session() as session:
        session.login_profiles.create(profile("alice", password_reset_required=True))
    duplicate = pytest.raises(DuplicateRowError, match="a login profile for this RAM user")
    with duplicate, store.session() as session:
        session.login_profiles.create(profile("alice"))
    with store.session(read_only=True) as session:
        found = session.login_profiles.get(ACCOUNT, "alice")
        assert found is not None
        assert found.password_reset_required is True
        assert found.mfa_bind_required is False
        assert found.created_at == NOW
        assert session.login_profiles.get(OTHER_ACCOUNT, "alice") is None

    # The database refuses a user delete while the profile exists.
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.ram_users.delete(ACCOUNT, "alice")
    with store.session() as session:
        session.login_profiles.delete(ACCOUNT, "alice")
    with pytest.raises(RowNotFoundError), store.session() as session:
        session.login_profiles.delete(ACCOUNT, "alice")
    with pytest.raises(RowNotFoundError), store.session() as session:
        session.login_profiles.update(profile("alice"))


def test_login_profile_checks_in_database(store: KmsStore, ram: RamService) -> None:
    ram.create_user(ACCOUNT, "bob")
    row = {
        "account_id": ACCOUNT,
        "user_name": "bob",
        "password_hash": hash_password(Secret(PASSWORD), CHEAP),
        "password_reset_required": False,
        "mfa_bind_required": False,
        "created_at": NOW,
        "updated_at": NOW,
    }
    for broken in ({"mfa_bind_required": True}, {"password_hash": "plaintext-password"}):
        with pytest.raises(IntegrityViolationError), store.session() as session:
            session.connection.execute(ram_login_profiles.insert().values({**row, **broken}))
    with pytest.raises(IntegrityViolationError), store.session() as session:
        session.connection.execute(
            account_console_passwords.insert().values(
                account_id=ACCOUNT, password_hash="x" * 20, created_at=NOW, updated_at=NOW
            )
        )


def test_console_password_rows(store: KmsStore) -> None:
    first = hash_password(Secret(ROOT_PASSWORD), CHEAP)
    second = hash_password(Secret(ROOT_PASSWORD), CHEAP)
    with store.session() as session:
        assert session.console_passwords.get_hash(ACCOUNT) is None
        session.console_passwords.set_hash(ACCOUNT, first, NOW)
    with store.session() as session:
        assert session.console_passwords.get_hash(ACCOUNT) == first
        session.console_passwords.set_hash(ACCOUNT, second, NOW + timedelta(hours=1))
    with store.session(read_only=True) as session:
        assert session.console_passwords.get_hash(ACCOUNT) == second
        assert session.console_passwords.get_hash(OTHER_ACCOUNT) is None
        rows = session.connection.execute(account_console_passwords.select()).mappings().all()
        assert len(rows) == 1
        assert rows[0]["created_at"] == NOW
        assert rows[0]["updated_at"] == NOW + timedelta(hours=1)
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.console_passwords.set_hash("999988887777", first, NOW)
    with store.session() as session:
        assert session.console_passwords.delete(ACCOUNT) is True
        assert session.console_passwords.delete(ACCOUNT) is False


# --- The service ---------------------------------------------------------------------------


def test_create_get_update_delete(
    service: LoginProfileService, ram: RamService, clock: Clock
) -> None:
    ram.create_user(ACCOUNT, "alice")
    created = service.create_login_profile(
        ACCOUNT, "alice", Secret(PASSWORD), password_reset_required=True
    )
    assert created.password_reset_required is True
    assert service.get_login_profile(ACCOUNT, "alice") == created

    clock.now = NOW + timedelta(minutes=5)
    updated = service.update_login_profile(ACCOUNT, "alice", password_reset_required=False)
    assert updated.password_hash == created.password_hash
    assert updated.password_reset_required is False
    assert updated.created_at == NOW
    assert updated.updated_at == clock.now

    service.update_login_profile(ACCOUNT, "alice", password=Secret(NEW_PASSWORD))
    with pytest.raises(ConsoleSignInError):
        service.verify_console_password(ACCOUNT, "alice", Secret(PASSWORD))
    assert service.verify_console_password(ACCOUNT, "alice", Secret(NEW_PASSWORD)) == RamIdentity(
        ACCOUNT, CallerKind.USER, "alice"
    )

    service.delete_login_profile(ACCOUNT, "alice")
    with pytest.raises(RamError) as raised:
        service.get_login_profile(ACCOUNT, "alice")
    check_code(raised, "EntityNotExist.User.LoginProfile", 404)


def test_service_errors(service: LoginProfileService, ram: RamService) -> None:
    with pytest.raises(RamError) as raised:
        service.create_login_profile(ACCOUNT, "nobody", Secret(PASSWORD))
    check_code(raised, "EntityNotExist.User", 404)
    ram.create_user(ACCOUNT, "carol")
    with pytest.raises(RamError) as raised:
        service.update_login_profile(ACCOUNT, "carol", password_reset_required=True)
    check_code(raised, "EntityNotExist.User.LoginProfile", 404)
    with pytest.raises(RamError) as raised:
        service.delete_login_profile(ACCOUNT, "carol")
    check_code(raised, "EntityNotExist.User.LoginProfile", 404)

    for password, rule in (("short1", "Length"), ("no digits here", "Weak")):
        with pytest.raises(RamError) as raised:
            service.create_login_profile(ACCOUNT, "carol", Secret(password))
        check_code(raised, f"InvalidParameter.Password.{rule}", 400)
        assert password not in raised.value.message
    with pytest.raises(RamError) as raised:
        service.create_login_profile(ACCOUNT, "carol", Secret(PASSWORD), mfa_bind_required=True)
    check_code(raised, "InvalidParameter.MFABindRequired", 400)
    with pytest.raises(RamError) as raised:
        service.create_login_profile(ACCOUNT, "bad name", Secret(PASSWORD))
    check_code(raised, "InvalidParameter.UserName.InvalidChars", 400)

    service.create_login_profile(ACCOUNT, "carol", Secret(PASSWORD))
    with pytest.raises(RamError) as raised:
        service.create_login_profile(ACCOUNT, "carol", Secret(PASSWORD))
    check_code(raised, "EntityAlreadyExists.User.LoginProfile", 409)


def test_delete_user_rejected_while_profile(service: LoginProfileService, ram: RamService) -> None:
    ram.create_user(ACCOUNT, "dave")
    service.create_login_profile(ACCOUNT, "dave", Secret(PASSWORD))
    with pytest.raises(RamError) as raised:
        ram.delete_user(ACCOUNT, "dave")
    check_code(raised, "DeleteConflict.User.LoginProfile", 409)
    service.delete_login_profile(ACCOUNT, "dave")
    ram.delete_user(ACCOUNT, "dave")


def test_root_password_sign_in(service: LoginProfileService) -> None:
    with pytest.raises(ConsoleSignInError):
        service.verify_console_password(ACCOUNT, None, Secret(ROOT_PASSWORD))
    service.set_root_console_password(ACCOUNT, Secret(ROOT_PASSWORD))
    root = RamIdentity(ACCOUNT, CallerKind.ROOT)
    assert service.verify_console_password(ACCOUNT, None, Secret(ROOT_PASSWORD)) == root
    assert service.sign_in(ACCOUNT, Secret(ROOT_PASSWORD)) == root
    with pytest.raises(ConsoleSignInError):
        service.verify_console_password(OTHER_ACCOUNT, None, Secret(ROOT_PASSWORD))

    with pytest.raises(RamError) as raised:
        service.set_root_console_password("999988887777", Secret(ROOT_PASSWORD))
    check_code(raised, "EntityNotExist.Account", 404)
    with pytest.raises(RamError) as raised:
        service.set_root_console_password(ACCOUNT, Secret("password"))
    check_code(raised, "InvalidParameter.Password.Weak", 400)

    assert service.delete_root_console_password(ACCOUNT) is True
    with pytest.raises(ConsoleSignInError):
        service.verify_console_password(ACCOUNT, None, Secret(ROOT_PASSWORD))


def test_sign_in_failures_share_one_message(
    service: LoginProfileService, ram: RamService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ram.create_user(ACCOUNT, "erin")
    ram.create_user(ACCOUNT, "frank")
    service.create_login_profile(ACCOUNT, "erin", Secret(PASSWORD))
    service.set_root_console_password(ACCOUNT, Secret(ROOT_PASSWORD))

    verified: list[str] = []
    original = verify_password

    def recording(password: Secret, encoded: str) -> bool:
        verified.append(encoded)
        return original(password, encoded)

    monkeypatch.setattr("hyok.kms.ram.login_profiles.verify_password", recording)
    dummy = dummy_password_hash(CHEAP)
    failures = {
        "wrong password": (f"erin@{ACCOUNT}", NEW_PASSWORD, False),
        "wrong root password": (ACCOUNT, PASSWORD, False),
        "user without profile": (f"frank@{ACCOUNT}", PASSWORD, True),
        "unknown user": (f"ghost@{ACCOUNT}", PASSWORD, True),
        "unknown account": ("999988887777", ROOT_PASSWORD, True),
        "user of unknown account": (f"erin@{OTHER_ACCOUNT}", PASSWORD, True),
        "malformed name": ("erin@", PASSWORD, True),
    }
    messages = set()
    for case, (name, password, uses_dummy) in failures.items():
        verified.clear()
        with pytest.raises(ConsoleSignInError) as raised:
            service.sign_in(name, Secret(password))
        messages.add(raised.value.message)
        assert raised.value.http_status == 401, case
        # Every failure costs one scrypt run, against the dummy hash when nothing is stored.
        assert len(verified) == 1, case
        assert (verified[0] == dummy) is uses_dummy, case
        assert password not in raised.value.message, case
    assert len(messages) == 1

    verified.clear()
    with pytest.raises(ConsoleSignInError):
        service.sign_in(f"erin@{ACCOUNT}", Secret("a1" * 65))
    assert verified == []

    assert service.sign_in(f"erin@{ACCOUNT}", Secret(PASSWORD)) == RamIdentity(
        ACCOUNT, CallerKind.USER, "erin"
    )


def test_sign_in_upgrades_old_parameters(store: KmsStore, ram: RamService, clock: Clock) -> None:
    old = LoginProfileService(store, clock=clock, parameters=CHEAP)
    ram.create_user(ACCOUNT, "gina")
    old.create_login_profile(ACCOUNT, "gina", Secret(PASSWORD))
    old.set_root_console_password(ACCOUNT, Secret(ROOT_PASSWORD))
    stronger = ScryptParameters(log2_n=11, r=8, p=1)
    new = LoginProfileService(store, clock=clock, parameters=stronger)

    new.verify_console_password(ACCOUNT, "gina", Secret(PASSWORD))
    new.verify_console_password(ACCOUNT, None, Secret(ROOT_PASSWORD))

    with store.session(read_only=True) as session:
        upgraded = session.login_profiles.get(ACCOUNT, "gina")
        root_hash = session.console_passwords.get_hash(ACCOUNT)
    assert upgraded is not None
    assert upgraded.password_hash.startswith("$scrypt$ln=11,r=8,p=1$")
    assert root_hash is not None
    assert root_hash.startswith("$scrypt$ln=11,r=8,p=1$")
    assert new.sign_in(f"gina@{ACCOUNT}", Secret(PASSWORD)).name == "gina"


def test_corrupt_hash_fails_closed(
    store: KmsStore, service: LoginProfileService, caplog: pytest.LogCaptureFixture
) -> None:
    with store.session() as session:
        session.console_passwords.set_hash(ACCOUNT, "$scrypt$ln=15,r=8,p=1$broken", NOW)
    with pytest.raises(ConsoleSignInError):
        service.verify_console_password(ACCOUNT, None, Secret(ROOT_PASSWORD))
    assert "corrupt" in caplog.text
    assert ROOT_PASSWORD not in caplog.text
