"""Console sessions in the KMS database on SQLite and PostgreSQL: lifetime, idle, sign-out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hyok.console.csrf import session_csrf_token
from hyok.console.sessions import SessionManager, SessionState
from hyok.kms.domain import Account
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.store import Database, KmsStore, SecretBox, open_database, upgrade
from hyok.kms.store.console_sessions import ConsoleSessionStore
from tests.integration._kms import ACCOUNT_ID
from tests.integration._postgres import PostgresServer, find_postgres, fresh_schema

pytestmark = pytest.mark.integration

ROOT = RamIdentity(ACCOUNT_ID, CallerKind.ROOT)
START = datetime(2027, 1, 10, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def postgres_server() -> PostgresServer:
    return find_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path: object, postgres_server: PostgresServer
) -> Iterator[Database]:
    if request.param == "sqlite":
        opened = open_database(f"sqlite:///{tmp_path}/kms.db")
        upgrade(opened)
        yield opened
        opened.dispose()
        return
    with fresh_schema(postgres_server) as (url, schema):
        opened = open_database(url, schema=schema)
        upgrade(opened)
        yield opened
        opened.dispose()


@pytest.fixture
def store(database: Database) -> ConsoleSessionStore:
    with KmsStore(database, SecretBox(bytes(32))).session() as session:
        session.accounts.create(Account(account_id=ACCOUNT_ID, created_at=START))
    return ConsoleSessionStore(database)


def _manager(store: ConsoleSessionStore, clock: Clock, idle: int = 900) -> SessionManager:
    return SessionManager(
        store, idle_timeout=timedelta(seconds=idle), lifetime=timedelta(hours=12), clock=clock
    )


def test_session_start_and_resume(store: ConsoleSessionStore) -> None:
    clock = Clock()
    manager = _manager(store, clock)

    started = manager.start(ROOT)
    clock.now += timedelta(minutes=10)
    state, resumed = manager.resume(started.token)

    assert state is SessionState.ACTIVE
    assert resumed is not None
    assert resumed.principal == ROOT
    assert resumed.expires_at == START + timedelta(hours=12)
    assert resumed.csrf_token == session_csrf_token(started.token)
    assert started.token not in repr(resumed)


def test_session_idle_timeout(store: ConsoleSessionStore) -> None:
    clock = Clock()
    manager = _manager(store, clock)
    token = manager.start(ROOT).token

    for _ in range(5):
        clock.now += timedelta(minutes=14)
        assert manager.resume(token)[0] is SessionState.ACTIVE
    clock.now += timedelta(minutes=15)

    assert manager.resume(token) == (SessionState.IDLE, None)
    assert manager.resume(token) == (SessionState.ENDED, None), "the row is gone"


def test_session_absolute_lifetime(store: ConsoleSessionStore) -> None:
    clock = Clock()
    manager = _manager(store, clock)
    token = manager.start(ROOT).token

    while clock.now < START + timedelta(hours=12) - timedelta(minutes=10):
        clock.now += timedelta(minutes=10)
        assert manager.resume(token)[0] is SessionState.ACTIVE
    clock.now = START + timedelta(hours=12)

    assert manager.resume(token) == (SessionState.ENDED, None)


def test_sign_out_seen_by_other_node(database: Database, store: ConsoleSessionStore) -> None:
    clock = Clock()
    first = _manager(store, clock)
    second = _manager(ConsoleSessionStore(database), clock)
    token = first.start(ROOT).token
    assert second.resume(token)[0] is SessionState.ACTIVE

    first.end(token)

    assert second.resume(token) == (SessionState.ENDED, None)


def test_session_stores_only_token_hash(database: Database, store: ConsoleSessionStore) -> None:
    manager = _manager(store, Clock())
    token = manager.start(ROOT).token

    with database.session(read_only=True) as connection:
        rows = connection.exec_driver_sql("SELECT * FROM console_sessions").all()

    assert len(rows) == 1
    assert all(token not in str(value) for value in rows[0])
    assert all(token.encode() != value for value in rows[0])


def test_session_resume_rejects_junk(store: ConsoleSessionStore) -> None:
    manager = _manager(store, Clock())
    for junk in ("", "x" * 500, "a b", "é" * 10, "A" * 43):
        assert manager.resume(junk) == (SessionState.ENDED, None)


def test_expired_sessions_swept_at_sign_in(database: Database, store: ConsoleSessionStore) -> None:
    clock = Clock()
    manager = _manager(store, clock)
    manager.start(ROOT)
    clock.now += timedelta(hours=1)

    manager.start(ROOT)

    with database.session(read_only=True) as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM console_sessions").scalar()
    assert count == 1


def test_deleting_account_ends_sessions(database: Database, store: ConsoleSessionStore) -> None:
    manager = _manager(store, Clock())
    token = manager.start(ROOT).token

    with database.session() as connection:
        connection.exec_driver_sql(f"DELETE FROM accounts WHERE account_id = '{ACCOUNT_ID}'")

    assert manager.resume(token) == (SessionState.ENDED, None)
