"""hyok.kms.store on a real SQLite file and a real PostgreSQL server on 127.0.0.1.

Every test that takes the ``backend`` fixture runs twice: on a SQLite file in
``tmp_path``, and in a fresh PostgreSQL schema that is dropped when the test
ends. The PostgreSQL server is ``HYOK_TEST_POSTGRES_URL`` when set, and
otherwise database ``test`` on 127.0.0.1:5432 with trust authentication, as
user ``postgres`` or, when that connection fails, ``root``. When no server
accepts a connection, the PostgreSQL tests fail, unless ``HYOK_TEST_SKIP_POSTGRES=1``
makes them skip.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy.exc
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, select, text, update

from hyok.common.acs_signature import SignatureError, SignatureErrorCode
from hyok.common.errors import ConfigError, ValidationError
from hyok.common.secrets import Secret
from hyok.kms.domain import (
    AccessKey,
    AccessKeyStatus,
    Account,
    Connectivity,
    Instance,
    InstanceErrorReason,
    InstanceStatus,
    Key,
    KeyFilter,
    KeyState,
    KeyVersion,
    PageRequest,
    new_access_key_id,
    new_access_key_secret,
    new_account_id,
    new_instance_id,
    new_key_id,
    new_key_version_id,
)
from hyok.kms.store import (
    ConstraintViolationError,
    Database,
    DatabaseNonceCache,
    DuplicateRowError,
    IntegrityViolationError,
    KeyRepository,
    KmsStore,
    MissingReferenceError,
    RootKeyMismatchError,
    RowNotFoundError,
    SchemaVersionError,
    SecretBox,
    SecretCorruptError,
    StaleStateError,
    StoreUnavailableError,
    check_current,
    current_revision,
    head_revision,
    open_database,
    upgrade,
)
from hyok.kms.store import migrations as store_migrations
from hyok.kms.store.tables import key_tags as key_tags_table
from hyok.kms.store.tables import keys as keys_table
from hyok.kms.store.tables import metadata
from tests.integration._postgres import (
    RUN_ID,
    PostgresServer,
    find_postgres,
    require_postgres,
)

pytestmark = pytest.mark.integration

REGION = "cn-hangzhou"
ROOT_KEY = bytes.fromhex("8f" * 16 + "1d" * 16)
OTHER_ROOT_KEY = bytes.fromhex("42" * 32)
RAM_TABLES = {
    "ram_users",
    "ram_roles",
    "ram_policies",
    "ram_user_policies",
    "ram_role_policies",
    "sts_credentials",
}
SHARING_TABLES = {
    "instance_shares",
    "instance_share_quotas",
    "key_grant_accounts",
    "instance_quota_releases",
}
ALIAS_TABLES = {"aliases"}
ASSOCIATION_TABLES = {"key_usage", "key_resources"}
CONSOLE_PASSWORD_TABLES = {"ram_login_profiles", "account_console_passwords"}
CONSOLE_SESSION_TABLES = {"console_sessions"}
EXPECTED_TABLES = {
    "accounts",
    "access_keys",
    "instances",
    "keys",
    "key_tags",
    "key_versions",
    "signature_nonces",
    "kms_schema_version",
    *RAM_TABLES,
    *SHARING_TABLES,
    *ALIAS_TABLES,
    *ASSOCIATION_TABLES,
    *CONSOLE_PASSWORD_TABLES,
    *CONSOLE_SESSION_TABLES,
}


# --- PostgreSQL server --------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = find_postgres()
    yield server
    if server.url is None:
        return
    # Drop what a failed test left behind.
    with psycopg.connect(server.url, autocommit=True) as connection:
        for schema in server.schemas:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- Backends -----------------------------------------------------------------------


@dataclass
class Backend:
    """An empty database: a SQLite file or a PostgreSQL schema of its own."""

    name: str
    url: str
    schema: str | None
    opened: list[Database] = field(default_factory=list)

    def open(self, **options: Any) -> Database:
        database = open_database(self.url, schema=self.schema, **options)
        self.opened.append(database)
        return database

    def engine(self) -> Engine:
        """An engine outside hyok's Database, for raw checks, on the same tables."""
        if self.schema is None:
            return create_engine(self.url)
        return create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://"),
            connect_args={"options": f"-c search_path={self.schema}"},
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[Backend]:
    if request.param == "sqlite":
        created = Backend("sqlite", f"sqlite:///{tmp_path / 'kms.db'}", None)
        yield created
        for database in created.opened:
            database.dispose()
        return

    url = require_postgres(postgres_server)
    schema = f"hyok_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    postgres_server.schemas.append(schema)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    created = Backend("postgresql", url, schema)
    yield created
    for database in created.opened:
        database.dispose()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    postgres_server.schemas.remove(schema)


@pytest.fixture
def database(backend: Backend) -> Database:
    opened = backend.open()
    upgrade(opened)
    return opened


@pytest.fixture
def store(database: Database) -> KmsStore:
    return KmsStore(database, SecretBox(ROOT_KEY))


# --- Records ------------------------------------------------------------------------

_clock_lock = threading.Lock()
_clock = [datetime(2026, 5, 20, 6, 0, 0, tzinfo=UTC)]


def tick() -> datetime:
    """A strictly increasing time, so that creation order is listing order."""
    with _clock_lock:
        _clock[0] += timedelta(seconds=1)
        return _clock[0]


def make_account() -> Account:
    return Account(account_id=new_account_id(), created_at=tick())


def make_access_key(account: Account, sensitive: Callable[[str], None]) -> AccessKey:
    secret = new_access_key_secret()
    sensitive(secret.reveal())
    return AccessKey(
        access_key_id=new_access_key_id(),
        account_id=account.account_id,
        secret=secret,
        created_at=tick(),
    )


def make_instance(account: Account, **changes: Any) -> Instance:
    fields: dict[str, Any] = {
        "instance_id": new_instance_id(),
        "account_id": account.account_id,
        "region": REGION,
        "name": "external instance",
        "connectivity": "public",
        "proxy_endpoint": "https://xks.example.com",
        "proxy_uri_path": "/kms/xks/v1",
        "proxy_access_key_id": "MUBSXM6K3KMXHN6RRCXI7TWQH4",
        "proxy_secret": Secret("PrOxY+SeCrEt/" + uuid.uuid4().hex + "=="),
        "created_at": tick(),
    }
    fields.update(changes)
    return Instance(**fields)


def make_unconfigured_instance(account: Account, **changes: Any) -> Instance:
    fields: dict[str, Any] = {
        "instance_id": new_instance_id(),
        "account_id": account.account_id,
        "region": REGION,
        "name": "instance without a proxy",
        "created_at": tick(),
    }
    fields.update(changes)
    return Instance(**fields)


def make_key(instance: Instance, **changes: Any) -> tuple[Key, KeyVersion]:
    key_id = new_key_id()
    version_id = new_key_version_id()
    created = tick()
    fields: dict[str, Any] = {
        "key_id": key_id,
        "account_id": instance.account_id,
        "region": instance.region,
        "instance_id": instance.instance_id,
        "external_key_id": "ext-key-1",
        "origin": "EXTERNAL",
        "protection_level": "HSM",
        "creator": instance.account_id,
        "created_at": created,
        "primary_key_version_id": version_id,
        "policy": '{"Version": "1"}',
    }
    fields.update(changes)
    key = Key(**fields)
    version = KeyVersion(
        key_id=key.key_id, key_version_id=key.primary_key_version_id, created_at=created
    )
    return key, version


@dataclass
class Tenant:
    account: Account
    instance: Instance


@pytest.fixture
def tenant(store: KmsStore, sensitive: Callable[[str], None]) -> Tenant:
    account = make_account()
    instance = make_instance(account)
    sensitive(instance.proxy_secret.reveal())
    with store.session() as session:
        session.accounts.create(account)
        session.instances.create(instance)
    return Tenant(account, instance)


def corrupt(record: Any, **values: object) -> Any:
    """Set fields past the record's checks, as a bug would, to reach the database's checks."""
    copy = dataclasses.replace(record)
    for name, value in values.items():
        object.__setattr__(copy, name, value)
    return copy


# --- Migrations ---------------------------------------------------------------------


def test_upgrade_from_empty_creates_tables(backend: Backend) -> None:
    database = backend.open()
    assert current_revision(database) is None
    with pytest.raises(SchemaVersionError, match="has no schema yet"):
        check_current(database)

    upgrade(database)

    assert current_revision(database) == head_revision() == "0008"
    check_current(database)
    tables = set(inspect(database.engine).get_table_names(schema=backend.schema))
    assert tables == EXPECTED_TABLES


def test_upgrade_twice_changes_nothing(database: Database) -> None:
    upgrade(database)
    assert current_revision(database) == head_revision()


def test_upgrade_accepts_engine_and_url(backend: Backend) -> None:
    if backend.schema is None:
        upgrade(backend.url)
        assert current_revision(backend.url) == head_revision()
    else:
        engine = backend.open().engine
        store_migrations.upgrade(engine)
        assert current_revision(engine) == head_revision()


def test_migrated_schema_matches_tables_module(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": store_migrations.VERSION_TABLE}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []

    inspector = inspect(database.engine)
    for table in metadata.sorted_tables:
        expected = {
            constraint.name
            for constraint in table.constraints
            if type(constraint).__name__ == "CheckConstraint" and constraint.name
        }
        found = {check["name"] for check in inspector.get_check_constraints(table.name)}
        if database.dialect == "postgresql":
            # PostgreSQL has a native boolean, so SQLAlchemy adds no CHECK for it.
            expected = {name for name in expected if not name.endswith("_boolean")}
        assert found == expected, table.name
        foreign_keys = {fk["name"] for fk in inspector.get_foreign_keys(table.name)}
        expected_foreign_keys = {
            constraint.name
            for constraint in table.foreign_key_constraints
            if constraint.name is not None
        }
        if database.dialect == "sqlite":
            # SQLite does not keep foreign key names, but it keeps the constraints.
            assert len(inspector.get_foreign_keys(table.name)) == len(expected_foreign_keys)
        else:
            assert foreign_keys == expected_foreign_keys, table.name


def test_concurrent_upgrades_migrate_once(backend: Backend) -> None:
    databases = [backend.open() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(upgrade, databases))
    assert current_revision(databases[0]) == head_revision()


def test_check_current_rejects_unknown_revision(database: Database) -> None:
    with database.session() as connection:
        connection.execute(text("UPDATE kms_schema_version SET version_num = '9999'"))
    with pytest.raises(SchemaVersionError, match="revision '9999'"):
        check_current(database)


def downgrade(database: Database, revision: str) -> None:
    """Run Alembic's downgrade in one transaction, as upgrade() runs the upgrades."""
    config = Config()
    config.set_main_option("script_location", store_migrations.SCRIPT_LOCATION)
    with database.session() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def foreign_key_problems(backend: Backend) -> list[Any]:
    """Rows whose foreign keys point nowhere: SQLite's foreign_key_check, empty on PostgreSQL."""
    if backend.schema is not None:
        return []
    engine = backend.engine()
    with engine.connect() as connection:
        problems = list(connection.exec_driver_sql("PRAGMA foreign_key_check"))
    engine.dispose()
    return problems


def test_upgrade_from_0001_keeps_instances_and_keys(backend: Backend) -> None:
    database = backend.open()
    upgrade(database, "0001")
    store = KmsStore(database, SecretBox(ROOT_KEY))
    account = make_account()
    instance = make_instance(account, tls_fingerprint="0f" * 32, status="Connected")
    key, version = make_key(instance)
    with store.session() as session:
        session.accounts.create(account)
        session.instances.create(instance)
        session.keys.create(key, version)

    upgrade(database)

    assert current_revision(database) == head_revision()
    with store.session(read_only=True) as session:
        assert session.instances.get(instance.instance_id) == instance
        assert session.keys.get(key.key_id) == key
        assert session.keys.list_tags(key.key_id) == []
    assert foreign_key_problems(backend) == []
    # The rebuilt table still enforces the foreign key from keys to instances.
    orphan, orphan_version = make_key(instance, instance_id="kst-nothere")
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.keys.create(orphan, orphan_version)
    with pytest.raises(IntegrityViolationError), store.session() as session:
        session.connection.execute(
            text("DELETE FROM instances WHERE instance_id = :id"), {"id": instance.instance_id}
        )


def test_downgrade_to_0001_needs_configured_instances(backend: Backend, tenant: Tenant) -> None:
    database = backend.open()
    store = KmsStore(database, SecretBox(ROOT_KEY))
    key, version = make_key(tenant.instance)
    bare = make_unconfigured_instance(tenant.account)
    with store.session() as session:
        session.keys.create(key, version, [("team", "payments")])
        session.instances.create(bare)

    with pytest.raises(RuntimeError, match="1 instance"):
        downgrade(database, "0001")
    assert current_revision(database) == head_revision()

    with store.session() as session:
        session.connection.execute(
            text("DELETE FROM instances WHERE instance_id = :id"), {"id": bare.instance_id}
        )
    downgrade(database, "0001")

    assert current_revision(database) == "0001"
    tables = set(inspect(database.engine).get_table_names(schema=backend.schema))
    assert tables == (
        EXPECTED_TABLES
        - {"key_tags"}
        - RAM_TABLES
        - SHARING_TABLES
        - ALIAS_TABLES
        - ASSOCIATION_TABLES
        - CONSOLE_PASSWORD_TABLES
        - CONSOLE_SESSION_TABLES
    )
    with store.session(read_only=True) as session:
        assert session.instances.get(tenant.instance.instance_id) == tenant.instance
        assert session.keys.get(key.key_id) == key
    assert foreign_key_problems(backend) == []
    upgrade(database)
    assert current_revision(database) == head_revision()


# --- Database settings --------------------------------------------------------------


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'kms.db'}", busy_timeout=2.5)
    try:
        with database.session(read_only=True) as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://user@127.0.0.1/kms", "'mysql'"),
        ("postgresql+psycopg2://user@127.0.0.1/kms", "psycopg 3"),
        ("not a url", "not a valid URL"),
    ],
)
def test_open_database_rejects_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_database(url)


def test_open_database_rejects_bad_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no schemas"):
        open_database(f"sqlite:///{tmp_path / 'kms.db'}", schema="tenant")
    with pytest.raises(ConfigError, match="invalid schema name"):
        open_database("postgresql://postgres@127.0.0.1/test", schema='x"; DROP TABLE keys; --')


def test_new_sqlite_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "kms.db"
    database = open_database(f"sqlite:///{path}")
    try:
        upgrade(database)
    finally:
        database.dispose()
    for file in tmp_path.iterdir():
        assert file.stat().st_mode & 0o077 == 0, f"{file.name} is readable by others"


def test_unreachable_postgres_raises_unavailable(sensitive: Callable[[str], None]) -> None:
    password = "pg-password-never-shown"
    sensitive(password)
    # Port 1 on loopback refuses connections at once.
    database = open_database(f"postgresql://hyok:{password}@127.0.0.1:1/test")
    assert password not in repr(database)
    with pytest.raises(StoreUnavailableError) as caught, database.session():
        pass
    assert password not in caught.value.message
    assert "127.0.0.1:1" in caught.value.message
    assert caught.value.http_status == 503


# --- Accounts -----------------------------------------------------------------------


def test_account_create_get_list(store: KmsStore) -> None:
    accounts = [make_account() for _ in range(3)]
    with store.session() as session:
        for account in accounts:
            session.accounts.create(account)
    with store.session(read_only=True) as session:
        assert session.accounts.get(accounts[1].account_id) == accounts[1]
        assert session.accounts.get("999999999999") is None
        page = session.accounts.list(PageRequest(number=1, size=2))
        assert page.items == tuple(accounts[:2])
        assert page.total_count == 3
        assert session.accounts.list(PageRequest(number=2, size=2)).items == (accounts[2],)


def test_account_duplicate_rejected(store: KmsStore) -> None:
    account = make_account()
    with store.session() as session:
        session.accounts.create(account)
    with pytest.raises(DuplicateRowError) as caught, store.session() as session:
        session.accounts.create(account)
    assert caught.value.message == (
        f"creating account {account.account_id!r} failed: an account with this account ID "
        "already exists (constraint pk_accounts)"
    )
    assert caught.value.constraint == "pk_accounts"


# --- AccessKeys ---------------------------------------------------------------------


def test_access_key_round_trip(store: KmsStore, sensitive: Callable[[str], None]) -> None:
    account = make_account()
    first = make_access_key(account, sensitive)
    second = make_access_key(account, sensitive)
    with store.session() as session:
        session.accounts.create(account)
        session.access_keys.create(first)
        session.access_keys.create(second)
    with store.session(read_only=True) as session:
        loaded = session.access_keys.get(first.access_key_id)
        assert loaded == first
        assert loaded is not None
        assert loaded.secret.reveal() == first.secret.reveal()
        assert session.access_keys.get("LTAI0000000000000000none") is None
        page = session.access_keys.list(account.account_id)
        assert page.items == (first, second)
        assert session.access_keys.list("999999999999").total_count == 0


def test_access_key_secret_stored_encrypted(
    store: KmsStore, backend: Backend, sensitive: Callable[[str], None]
) -> None:
    account = make_account()
    access_key = make_access_key(account, sensitive)
    with store.session() as session:
        session.accounts.create(account)
        session.access_keys.create(access_key)
    engine = backend.engine()
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT secret_ciphertext FROM access_keys")).scalar_one()
    engine.dispose()
    assert access_key.secret.reveal_bytes() not in bytes(stored)
    assert bytes(stored)[0] == 1


def test_access_key_update_status(store: KmsStore, sensitive: Callable[[str], None]) -> None:
    account = make_account()
    access_key = make_access_key(account, sensitive)
    with store.session() as session:
        session.accounts.create(account)
        session.access_keys.create(access_key)
    with store.session() as session:
        changed = session.access_keys.update_status(
            access_key.access_key_id, AccessKeyStatus.INACTIVE, expected={AccessKeyStatus.ACTIVE}
        )
    assert changed.status is AccessKeyStatus.INACTIVE
    with store.session(read_only=True) as session:
        assert session.access_keys.get(access_key.access_key_id) == changed
    with (
        pytest.raises(StaleStateError, match="is 'Inactive', not one of Active"),
        store.session() as session,
    ):
        session.access_keys.update_status(
            access_key.access_key_id,
            AccessKeyStatus.INACTIVE,
            expected={AccessKeyStatus.ACTIVE},
        )
    with (
        pytest.raises(RowNotFoundError, match="AccessKey 'LTAI0000000000000000none'"),
        store.session() as session,
    ):
        session.access_keys.update_status("LTAI0000000000000000none", AccessKeyStatus.ACTIVE)


def test_access_key_unknown_account(store: KmsStore, sensitive: Callable[[str], None]) -> None:
    access_key = make_access_key(make_account(), sensitive)
    with (
        pytest.raises(MissingReferenceError, match=f"account '{access_key.account_id}'"),
        store.session() as session,
    ):
        session.access_keys.create(access_key)


# --- Instances ----------------------------------------------------------------------


def test_instance_round_trip(store: KmsStore, tenant: Tenant) -> None:
    vpc = make_instance(
        tenant.account,
        connectivity="vpc",
        vpc_endpoint_service="com.example.privatelink.epsrv-1",
        tls_fingerprint="ab" * 32,
        region="cn-shanghai",
    )
    with store.session() as session:
        session.instances.create(vpc)
    with store.session(read_only=True) as session:
        assert session.instances.get(tenant.instance.instance_id) == tenant.instance
        assert session.instances.get(vpc.instance_id) == vpc
        assert session.instances.get("kst-missing") is None
        every = session.instances.list(tenant.account.account_id)
        assert every.items == (tenant.instance, vpc)
        assert every.total_count == 2
        shanghai = session.instances.list(tenant.account.account_id, region="cn-shanghai")
        assert shanghai.items == (vpc,)
        assert session.instances.list(tenant.account.account_id, PageRequest(2, 1)).items == (vpc,)


def test_instance_update_status(store: KmsStore, tenant: Tenant) -> None:
    instance_id = tenant.instance.instance_id
    checked = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with store.session() as session:
        failed = session.instances.update_status(
            instance_id,
            InstanceStatus.ERROR,
            error_reason=InstanceErrorReason.CREDENTIALS_REJECTED,
            error_detail="the proxy rejected the access key ID",
            checked_at=checked,
        )
    assert failed.status is InstanceStatus.ERROR
    assert failed.last_health_check_at == checked
    with store.session() as session:
        connected = session.instances.update_status(
            instance_id, InstanceStatus.CONNECTED, expected={InstanceStatus.ERROR}
        )
    assert connected.error_reason is None
    assert connected.error_detail == ""
    assert connected.last_health_check_at == checked
    with store.session(read_only=True) as session:
        assert session.instances.get(instance_id) == connected


def test_instance_update_status_rejects_bad_changes(store: KmsStore, tenant: Tenant) -> None:
    instance_id = tenant.instance.instance_id
    with (
        pytest.raises(ValidationError, match="status 'Error' needs a reason"),
        store.session() as session,
    ):
        session.instances.update_status(instance_id, InstanceStatus.ERROR)
    with pytest.raises(StaleStateError, match="is 'Uninitialized'"), store.session() as session:
        session.instances.update_status(
            instance_id, InstanceStatus.CONNECTED, expected={InstanceStatus.CONNECTING}
        )
    with (
        pytest.raises(RowNotFoundError, match="instance 'kst-missing' does not exist"),
        store.session() as session,
    ):
        session.instances.update_status("kst-missing", InstanceStatus.CONNECTED)
    with store.session(read_only=True) as session:
        assert session.instances.get(instance_id) == tenant.instance


def test_instance_unknown_account(store: KmsStore) -> None:
    instance = make_instance(make_account())
    with (
        pytest.raises(MissingReferenceError, match=f"account '{instance.account_id}'"),
        store.session() as session,
    ):
        session.instances.create(instance)


def test_instance_duplicate_rejected(store: KmsStore, tenant: Tenant) -> None:
    with (
        pytest.raises(DuplicateRowError, match="instance with this instance ID"),
        store.session() as session,
    ):
        session.instances.create(tenant.instance)


def test_unconfigured_instance_round_trip(store: KmsStore, tenant: Tenant) -> None:
    bare = make_unconfigured_instance(tenant.account)
    with store.session() as session:
        session.instances.create(bare)
    with store.session(read_only=True) as session:
        stored = session.instances.get(bare.instance_id)
    assert stored == bare
    assert stored is not None
    assert not stored.configured
    assert stored.proxy_secret is None
    assert tenant.instance.configured


@pytest.mark.parametrize(
    "values",
    [
        {"proxy_endpoint": None},
        {"proxy_secret": None},
        {"status": "Connected"},
        {"tls_fingerprint": "ab" * 32},
    ],
    ids=["endpoint-missing", "secret-missing", "connected-without-proxy", "fingerprint-alone"],
)
def test_instance_proxy_configuration_constraint(
    store: KmsStore, tenant: Tenant, values: dict[str, Any]
) -> None:
    base = make_unconfigured_instance(tenant.account)
    if "proxy_endpoint" in values or "proxy_secret" in values:
        base = make_instance(tenant.account)
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.instances.create(corrupt(base, **values))
    assert caught.value.constraint == "ck_instances_proxy_configuration"
    assert "all set or all empty" in caught.value.message


PROXY_SETTINGS: dict[str, Any] = {
    "connectivity": Connectivity.VPC,
    "endpoint": "https://xki.vpc.internal:8443",
    "uri_path": "/team-a/kms/xks/v1",
    "vpc_endpoint_service": "com.example.vpce.xki-1",
    "access_key_id": "ABCDEFGHIJKLMNOPQRSTUVWX",
    "tls_fingerprint": "5e" * 32,
}


def new_proxy_secret(sensitive: Callable[[str], None]) -> Secret:
    value = "NeW/PrOxY+SeCrEt=" + uuid.uuid4().hex + uuid.uuid4().hex[:10]
    sensitive(value)
    return Secret(value)


def test_update_proxy_configuration_of_unconfigured_instance(
    store: KmsStore, tenant: Tenant, backend: Backend, sensitive: Callable[[str], None]
) -> None:
    bare = make_unconfigured_instance(tenant.account)
    secret = new_proxy_secret(sensitive)
    with store.session() as session:
        session.instances.create(bare)
        changed = session.instances.update_proxy_configuration(
            bare.instance_id, secret=secret, **PROXY_SETTINGS
        )
    assert changed.configured
    assert changed.status is InstanceStatus.UNINITIALIZED
    assert changed.connectivity is Connectivity.VPC
    assert changed.vpc_endpoint_service == "com.example.vpce.xki-1"
    assert changed.proxy_secret == secret
    with store.session(read_only=True) as session:
        assert session.instances.get(bare.instance_id) == changed
    engine = backend.engine()
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT proxy_secret_ciphertext FROM instances WHERE instance_id = :id"),
            {"id": bare.instance_id},
        ).scalar_one()
    engine.dispose()
    assert secret.reveal().encode() not in bytes(stored)


@pytest.mark.parametrize(
    ("before", "reason", "after"),
    [
        ("Uninitialized", None, "Uninitialized"),
        ("Connecting", None, "Connecting"),
        ("Connected", None, "Connecting"),
        ("Error", "CredentialsRejected", "Connecting"),
        ("Disconnected", None, "Disconnected"),
        ("Disconnected", "ProxyUnreachable", "Disconnected"),
    ],
)
def test_update_proxy_configuration_status(
    store: KmsStore,
    tenant: Tenant,
    sensitive: Callable[[str], None],
    before: str,
    reason: str | None,
    after: str,
) -> None:
    instance = make_instance(tenant.account, status=before, error_reason=reason)
    with store.session() as session:
        session.instances.create(instance)
        changed = session.instances.update_proxy_configuration(
            instance.instance_id, secret=new_proxy_secret(sensitive), **PROXY_SETTINGS
        )
    assert changed.status is InstanceStatus(after)
    if after == "Connecting":
        assert changed.error_reason is None
        assert changed.error_detail == ""
    else:
        assert changed.error_reason == reason
    with store.session(read_only=True) as session:
        assert session.instances.get(instance.instance_id) == changed


def test_update_proxy_configuration_unchanged_keeps_status(store: KmsStore, tenant: Tenant) -> None:
    instance = make_instance(tenant.account, status="Connected")
    with store.session() as session:
        session.instances.create(instance)
        same = session.instances.update_proxy_configuration(
            instance.instance_id,
            connectivity=instance.connectivity,
            endpoint=instance.proxy_endpoint,
            uri_path=instance.proxy_uri_path,
            vpc_endpoint_service=None,
            access_key_id=instance.proxy_access_key_id,
            secret=Secret(instance.proxy_secret.reveal()),
            tls_fingerprint=None,
        )
    assert same == instance
    assert same.status is InstanceStatus.CONNECTED


def test_update_proxy_configuration_rejects_bad_settings(
    store: KmsStore, tenant: Tenant, sensitive: Callable[[str], None]
) -> None:
    secret = new_proxy_secret(sensitive)
    bad_settings = {**PROXY_SETTINGS, "vpc_endpoint_service": None}
    with (
        pytest.raises(ValidationError, match="vpc_endpoint_service is missing"),
        store.session() as session,
    ):
        session.instances.update_proxy_configuration(
            tenant.instance.instance_id, secret=secret, **bad_settings
        )
    with (
        pytest.raises(RowNotFoundError, match="'kst-missing' does not exist"),
        store.session() as session,
    ):
        session.instances.update_proxy_configuration("kst-missing", secret=secret, **PROXY_SETTINGS)
    with store.session(read_only=True) as session:
        assert session.instances.get(tenant.instance.instance_id) == tenant.instance


def test_instance_count_keys_and_list_by_status(store: KmsStore, tenant: Tenant) -> None:
    connected = make_instance(tenant.account, status="Connected")
    failed = make_instance(tenant.account, status="Error", error_reason="TimedOut")
    other_account = make_account()
    elsewhere = make_instance(other_account, status="Connected", region="cn-shanghai")
    with store.session() as session:
        session.accounts.create(other_account)
        for instance in (connected, failed, elsewhere):
            session.instances.create(instance)
        for _ in range(3):
            session.keys.create(*make_key(connected))
    with store.session(read_only=True) as session:
        assert session.instances.count_keys(connected.instance_id) == 3
        assert session.instances.count_keys(failed.instance_id) == 0
        assert session.instances.count_keys("kst-missing") == 0
        found = session.instances.list_by_status({InstanceStatus.CONNECTED, InstanceStatus.ERROR})
        assert found == (connected, failed, elsewhere)
        assert session.instances.list_by_status({InstanceStatus.UNINITIALIZED}) == (
            tenant.instance,
        )


def test_update_status_if_unchanged_skips_stale_results(
    store: KmsStore, tenant: Tenant, sensitive: Callable[[str], None]
) -> None:
    checked_at = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
    instance = make_instance(tenant.account, status="Connecting")
    with store.session() as session:
        session.instances.create(instance)
        recorded = session.instances.update_status_if_unchanged(
            instance,
            InstanceStatus.ERROR,
            error_reason=InstanceErrorReason.URI_PATH_INVALID,
            error_detail="rejected",
            checked_at=checked_at,
        )
    assert recorded is not None
    assert recorded.status is InstanceStatus.ERROR
    assert recorded.last_health_check_at == checked_at

    # The settings changed after the check started from ``recorded``.
    with store.session() as session:
        session.instances.update_proxy_configuration(
            instance.instance_id, secret=new_proxy_secret(sensitive), **PROXY_SETTINGS
        )
        stale = session.instances.update_status_if_unchanged(
            recorded,
            InstanceStatus.CONNECTED,
            error_reason=None,
            error_detail="",
            checked_at=checked_at,
        )
        assert stale is None
        missing = session.instances.update_status_if_unchanged(
            corrupt(recorded, instance_id="kst-missing"),
            InstanceStatus.CONNECTED,
            error_reason=None,
            error_detail="",
            checked_at=checked_at,
        )
        assert missing is None
    with store.session(read_only=True) as session:
        current = session.instances.get(instance.instance_id)
    assert current is not None
    assert current.status is InstanceStatus.CONNECTING

    # A DisconnectKmsInstance after the check started: the status differs.
    with store.session() as session:
        session.instances.update_status(instance.instance_id, InstanceStatus.DISCONNECTED)
        undone = session.instances.update_status_if_unchanged(current, InstanceStatus.CONNECTED)
        assert undone is None
        assert session.instances.get(instance.instance_id) == dataclasses.replace(
            current, status=InstanceStatus.DISCONNECTED
        )


# --- Keys ---------------------------------------------------------------------------


def test_key_round_trip(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance, description="payments\nkey ü")
    with store.session() as session:
        session.keys.create(key, version)
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) == key
        assert session.keys.get("key-missing") is None
        assert session.keys.get_version(key.key_id, version.key_version_id) == version
        assert session.keys.get_version("key-other", version.key_version_id) is None
        versions = session.keys.list_versions(key.key_id)
        assert versions.items == (version,)
        assert versions.total_count == 1


def test_key_create_rejects_foreign_version(store: KmsStore, tenant: Tenant) -> None:
    key, _ = make_key(tenant.instance)
    other_key, other_version = make_key(tenant.instance)
    with (
        pytest.raises(ValueError, match="is not the primary key version"),
        store.session() as session,
    ):
        session.keys.create(key, other_version)
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None
        assert session.keys.get(other_key.key_id) is None


def test_key_duplicate_writes_nothing(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
    clash, clash_version = make_key(tenant.instance, key_id=key.key_id)
    with (
        pytest.raises(DuplicateRowError, match="a key with this key ID already exists") as caught,
        store.session() as session,
    ):
        session.keys.create(clash, clash_version)
    assert caught.value.constraint == "pk_keys"
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) == key
        assert session.keys.get_version(key.key_id, clash_version.key_version_id) is None


def test_key_failed_version_insert_rolls_back_key(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    broken = corrupt(version, created_at=None)
    with store.session() as session:
        with pytest.raises(ConstraintViolationError, match="a required column is NULL"):
            session.keys.create(key, broken)
        # The savepoint removed the key row; the session is still usable.
        assert session.keys.get(key.key_id) is None
        assert session.accounts.get(tenant.account.account_id) == tenant.account
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None


def test_key_unknown_instance(store: KmsStore, tenant: Tenant, database: Database) -> None:
    key, version = make_key(tenant.instance, instance_id="kst-nothere")
    with pytest.raises(MissingReferenceError) as caught, store.session() as session:
        session.keys.create(key, version)
    assert "'kst-nothere'" in caught.value.message
    assert caught.value.message.startswith(f"creating key {key.key_id!r} failed: ")
    if database.dialect == "postgresql":
        assert caught.value.constraint == "fk_keys_instance_id"
        assert "instance 'kst-nothere' does not exist" in caught.value.message
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None


def test_key_without_version_fails_at_commit(
    store: KmsStore, tenant: Tenant, database: Database
) -> None:
    key, _ = make_key(tenant.instance)
    row = {
        "key_id": key.key_id,
        "account_id": key.account_id,
        "region": key.region,
        "instance_id": key.instance_id,
        "external_key_id": key.external_key_id,
        "description": "",
        "state": "Enabled",
        "key_spec": "Aliyun_AES_256",
        "key_usage": "ENCRYPT/DECRYPT",
        "origin": "EXTERNAL",
        "protection_level": "HSM",
        "creator": key.creator,
        "created_at": key.created_at,
        "primary_key_version_id": key.primary_key_version_id,
        "deletion_protection": False,
        "deletion_protection_description": "",
        "delete_date": None,
        "policy": "{}",
    }
    with (
        pytest.raises(MissingReferenceError, match="the transaction failed"),
        database.session() as connection,
    ):
        connection.execute(insert(keys_table).values(**row))
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None


@pytest.mark.parametrize(
    ("field", "value", "constraint"),
    [
        ("state", "Bogus", "ck_keys_state"),
        ("key_spec", "RSA_2048", "ck_keys_key_spec"),
        ("key_usage", "SIGN/VERIFY", "ck_keys_key_usage"),
        ("origin", "AWS", "ck_keys_origin"),
        ("protection_level", "CLOUD", "ck_keys_protection_level"),
        ("external_key_id", "has space", "ck_keys_external_key_id"),
        ("region", "CN_EAST", "ck_keys_region"),
    ],
)
def test_key_check_constraints(
    store: KmsStore, tenant: Tenant, field: str, value: str, constraint: str
) -> None:
    key, version = make_key(tenant.instance)
    broken = corrupt(key, **{field: value})
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.keys.create(broken, version)
    assert caught.value.constraint == constraint
    assert constraint in caught.value.message
    assert caught.value.message.startswith(f"creating key {key.key_id!r} failed: ")
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None


def test_key_lifecycle_constraints_in_database(store: KmsStore, tenant: Tenant) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"state": "PendingDeletion"}, "ck_keys_delete_date"),
        (
            {
                "state": "PendingDeletion",
                "delete_date": datetime(2026, 7, 1, tzinfo=UTC),
                "deletion_protection": True,
            },
            "ck_keys_deletion_protection_state",
        ),
        ({"deletion_protection_description": "orphan"}, "ck_keys_deletion_protection_description"),
    ]
    for values, constraint in cases:
        key, version = make_key(tenant.instance)
        with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
            session.keys.create(corrupt(key, **values), version)
        assert caught.value.constraint == constraint


def test_instance_and_access_key_check_constraints(
    store: KmsStore, tenant: Tenant, sensitive: Callable[[str], None]
) -> None:
    bad_instance = corrupt(make_instance(tenant.account), status="Online")
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.instances.create(bad_instance)
    assert caught.value.constraint == "ck_instances_status"

    bad_reason = corrupt(make_instance(tenant.account), status="Connected", error_reason="TimedOut")
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.instances.create(bad_reason)
    assert caught.value.constraint == "ck_instances_error_reason_status"

    bad_key = corrupt(make_access_key(tenant.account, sensitive), status="Deleted")
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.access_keys.create(bad_key)
    assert caught.value.constraint == "ck_access_keys_status"
    assert "Active, Inactive" in caught.value.message


def test_key_updates(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    delete_date = datetime(2026, 6, 20, tzinfo=UTC)
    with store.session() as session:
        session.keys.create(key, version)

    with store.session() as session:
        disabled = session.keys.update_state(
            key.key_id, KeyState.DISABLED, expected={KeyState.ENABLED}
        )
        described = session.keys.update_description(key.key_id, "rotated by the KMI")
        policy = session.keys.update_policy(key.key_id, '{"Version": "1", "Statement": []}')
        protected = session.keys.set_deletion_protection(key.key_id, True, "production")
        unprotected = session.keys.set_deletion_protection(key.key_id, False)
        pending = session.keys.update_state(
            key.key_id, KeyState.PENDING_DELETION, delete_date=delete_date
        )

    assert disabled.state is KeyState.DISABLED
    assert described.description == "rotated by the KMI"
    assert policy.policy == '{"Version": "1", "Statement": []}'
    assert protected.deletion_protection_description == "production"
    assert unprotected.deletion_protection is False
    assert unprotected.deletion_protection_description == ""
    assert pending.delete_date == delete_date
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) == pending

    with store.session() as session:
        restored = session.keys.update_state(
            key.key_id, KeyState.ENABLED, expected={KeyState.PENDING_DELETION}
        )
    assert restored.delete_date is None
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) == restored


def test_key_updates_rejected(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
        session.keys.set_deletion_protection(key.key_id, True, "production")
    with (
        pytest.raises(ValidationError, match="turn deletion protection off first"),
        store.session() as session,
    ):
        session.keys.update_state(
            key.key_id, KeyState.PENDING_DELETION, delete_date=datetime(2026, 7, 1, tzinfo=UTC)
        )
    with (
        pytest.raises(ValidationError, match="policy is not valid JSON"),
        store.session() as session,
    ):
        session.keys.update_policy(key.key_id, "{")
    with (
        pytest.raises(
            StaleStateError, match=r"key 'key-[a-z0-9]+' is 'Enabled', not one of Disabled"
        ),
        store.session() as session,
    ):
        session.keys.update_state(key.key_id, KeyState.ENABLED, expected={KeyState.DISABLED})
    changes: list[Callable[[KeyRepository], object]] = [
        lambda keys: keys.update_state("key-missing", KeyState.DISABLED),
        lambda keys: keys.update_description("key-missing", ""),
        lambda keys: keys.update_policy("key-missing", "{}"),
        lambda keys: keys.set_deletion_protection("key-missing", False),
        lambda keys: keys.delete("key-missing"),
    ]
    for change in changes:
        with (
            pytest.raises(RowNotFoundError, match="key 'key-missing' does not exist"),
            store.session() as session,
        ):
            change(session.keys)
    with store.session(read_only=True) as session:
        stored = session.keys.get(key.key_id)
    assert stored is not None
    assert stored.state is KeyState.ENABLED
    assert stored.deletion_protection is True


def test_key_delete_removes_versions(store: KmsStore, tenant: Tenant, backend: Backend) -> None:
    key, version = make_key(tenant.instance)
    kept, kept_version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
        session.keys.create(kept, kept_version)
    with store.session() as session:
        session.keys.delete(key.key_id)
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None
        assert session.keys.get_version(key.key_id, version.key_version_id) is None
        assert session.keys.get(kept.key_id) == kept
    engine = backend.engine()
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM key_versions")).scalar_one()
    engine.dispose()
    assert count == 1


def test_key_tags_round_trip(store: KmsStore, tenant: Tenant, backend: Backend) -> None:
    key, version = make_key(tenant.instance)
    tags = [("team", "payments"), ("cost-center", "4711"), ("empty", ""), ("k" * 128, "v" * 128)]
    untagged, untagged_version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version, tags)
        session.keys.create(untagged, untagged_version)
    with store.session(read_only=True) as session:
        assert session.keys.list_tags(key.key_id) == sorted(tags)
        assert session.keys.list_tags(untagged.key_id) == []
        assert session.keys.list_tags("key-missing") == []

    with store.session() as session:
        session.keys.delete(key.key_id)
    engine = backend.engine()
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM key_tags")).scalar_one()
    engine.dispose()
    assert count == 0


def test_key_tags_duplicate_writes_nothing(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with (
        pytest.raises(DuplicateRowError, match="a tag with this tag key on this key") as caught,
        store.session() as session,
    ):
        session.keys.create(key, version, [("team", "a"), ("team", "b")])
    assert caught.value.constraint == "pk_key_tags"
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None
        assert session.keys.list_tags(key.key_id) == []


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (("", "value"), "has 0 characters: use 1 to 128"),
        (("k" * 129, "value"), "has 129 characters: use 1 to 128"),
        (("team", "v" * 129), "value of tag 'team' has 129 characters"),
    ],
    ids=["empty-key", "long-key", "long-value"],
)
def test_key_tags_lengths_checked(
    store: KmsStore, tenant: Tenant, tag: tuple[str, str], message: str
) -> None:
    key, version = make_key(tenant.instance)
    with pytest.raises(ValidationError, match=message), store.session() as session:
        session.keys.create(key, version, [("first", "ok"), tag])
    with store.session(read_only=True) as session:
        assert session.keys.get(key.key_id) is None


def test_key_tags_check_constraint_in_database(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
    with pytest.raises(ConstraintViolationError) as caught, store.session() as session:
        session.connection.execute(
            insert(key_tags_table).values(key_id=key.key_id, tag_key="", tag_value="v")
        )
    assert caught.value.constraint == "ck_key_tags_tag_key"


# --- Job locks ----------------------------------------------------------------------


def test_job_lock_one_holder_at_a_time(backend: Backend, store: KmsStore) -> None:
    other_node = KmsStore(backend.open(), SecretBox(ROOT_KEY))
    with store.try_job_lock("instance-health") as first:
        assert first is True
        with other_node.try_job_lock("instance-health") as second:
            # SQLite serves one machine, so it takes no lock.
            assert second is (backend.name == "sqlite")
        with other_node.try_job_lock("key-deletion") as unrelated:
            assert unrelated is True
    with other_node.try_job_lock("instance-health") as after_release:
        assert after_release is True


def test_job_lock_released_when_job_fails(backend: Backend, store: KmsStore) -> None:
    with pytest.raises(RuntimeError, match="job failed"), store.try_job_lock("sweeper"):
        raise RuntimeError("job failed")
    other_node = KmsStore(backend.open(), SecretBox(ROOT_KEY))
    with other_node.try_job_lock("sweeper") as acquired:
        assert acquired is True


def test_instance_with_keys_cannot_be_deleted(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
    with pytest.raises(IntegrityViolationError), store.session() as session:
        session.connection.execute(
            text("DELETE FROM instances WHERE instance_id = :id"),
            {"id": tenant.instance.instance_id},
        )
    with store.session(read_only=True) as session:
        assert session.instances.get(tenant.instance.instance_id) == tenant.instance


# --- Listing keys -------------------------------------------------------------------


def test_list_keys_paging(store: KmsStore, tenant: Tenant) -> None:
    created = [make_key(tenant.instance) for _ in range(7)]
    with store.session() as session:
        for key, version in created:
            session.keys.create(key, version)
    expected = [key for key, _ in created]
    with store.session(read_only=True) as session:
        pages = [
            session.keys.list(tenant.account.account_id, REGION, PageRequest(number, 3))
            for number in (1, 2, 3, 4)
        ]
    assert [page.items for page in pages] == [
        tuple(expected[0:3]),
        tuple(expected[3:6]),
        (expected[6],),
        (),
    ]
    assert {page.total_count for page in pages} == {7}
    assert [page.number for page in pages] == [1, 2, 3, 4]
    assert {page.size for page in pages} == {3}


def test_list_keys_filters(store: KmsStore, tenant: Tenant) -> None:
    second = make_instance(tenant.account)
    other_region = make_instance(tenant.account, region="cn-beijing")
    other_account = make_account()
    foreign = make_instance(other_account)
    with store.session() as session:
        session.accounts.create(other_account)
        for instance in (second, other_region, foreign):
            session.instances.create(instance)
    first = tenant.instance
    enabled_a, _ = pair_a = make_key(first)
    disabled_a, _ = pair_b = make_key(first, state="Disabled")
    deleting_b, _ = pair_c = make_key(
        second, state="PendingDeletion", delete_date=datetime(2026, 7, 1, tzinfo=UTC)
    )
    enabled_b, _ = pair_d = make_key(second, protection_level="SOFTWARE")
    beijing, _ = pair_e = make_key(other_region)
    foreign_key, _ = pair_f = make_key(foreign)
    with store.session() as session:
        for key, version in (pair_a, pair_b, pair_c, pair_d, pair_e, pair_f):
            session.keys.create(key, version)

    def listed(filters: KeyFilter | None, region: str = REGION) -> list[str]:
        with store.session(read_only=True) as session:
            page = session.keys.list(tenant.account.account_id, region, filters=filters)
        assert page.total_count == len(page.items)
        return [key.key_id for key in page.items]

    ids = [key.key_id for key in (enabled_a, disabled_a, deleting_b, enabled_b)]
    assert listed(None) == ids
    assert listed(KeyFilter()) == ids
    assert listed(KeyFilter.from_strings(states=["Enabled"])) == [
        enabled_a.key_id,
        enabled_b.key_id,
    ]
    assert listed(KeyFilter.from_strings(states=["Disabled", "PendingDeletion"])) == [
        disabled_a.key_id,
        deleting_b.key_id,
    ]
    assert listed(KeyFilter.from_strings(instance_ids=[second.instance_id])) == [
        deleting_b.key_id,
        enabled_b.key_id,
    ]
    # Filters on different fields combine with AND.
    assert listed(
        KeyFilter.from_strings(states=["Enabled"], instance_ids=[second.instance_id])
    ) == [enabled_b.key_id]
    assert listed(KeyFilter.from_strings(protection_levels=["SOFTWARE"])) == [enabled_b.key_id]
    assert (
        listed(KeyFilter.from_strings(specs=["Aliyun_AES_256"], usages=["ENCRYPT/DECRYPT"])) == ids
    )
    assert listed(KeyFilter.from_strings(instance_ids=[foreign.instance_id])) == []
    assert listed(KeyFilter(), region="cn-beijing") == [beijing.key_id]
    assert foreign_key.key_id not in listed(None)


def test_list_key_versions_paging(store: KmsStore, tenant: Tenant) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
        assert session.keys.list_versions(key.key_id, PageRequest(2, 1)).items == ()
        assert session.keys.list_versions("key-missing").total_count == 0


# --- Secrets at rest ----------------------------------------------------------------


def test_wrong_root_key_raises_clear_error(
    database: Database, tenant: Tenant, sensitive: Callable[[bytes], None]
) -> None:
    sensitive(ROOT_KEY)
    sensitive(OTHER_ROOT_KEY)
    wrong = KmsStore(database, SecretBox(OTHER_ROOT_KEY))
    with (
        pytest.raises(RootKeyMismatchError) as caught,
        wrong.session(read_only=True) as session,
    ):
        session.instances.get(tenant.instance.instance_id)
    message = caught.value.message
    assert "instances.proxy_secret_ciphertext" in message
    assert tenant.instance.instance_id in message
    assert SecretBox(OTHER_ROOT_KEY).root_key_id in message
    assert SecretBox(ROOT_KEY).root_key_id in message
    assert tenant.instance.proxy_secret.reveal() not in message
    # The current key is not needed for metadata that has no secret.
    with wrong.session(read_only=True) as session:
        assert session.accounts.get(tenant.account.account_id) == tenant.account


def test_retired_root_key_still_decrypts(database: Database, tenant: Tenant) -> None:
    rotated = KmsStore(database, SecretBox(OTHER_ROOT_KEY, retired_root_keys=[ROOT_KEY]))
    with rotated.session(read_only=True) as session:
        assert session.instances.get(tenant.instance.instance_id) == tenant.instance


def test_swapped_secrets_detected(store: KmsStore, tenant: Tenant, backend: Backend) -> None:
    other = make_instance(tenant.account)
    with store.session() as session:
        session.instances.create(other)
    engine = backend.engine()
    with engine.begin() as connection:
        result = connection.execute(
            text("SELECT instance_id, proxy_secret_ciphertext FROM instances")
        )
        rows = {row[0]: row[1] for row in result}
        first, second = tenant.instance.instance_id, other.instance_id
        for target, source in ((first, second), (second, first)):
            connection.execute(
                text(
                    "UPDATE instances SET proxy_secret_ciphertext = :value WHERE instance_id = :id"
                ),
                {"value": rows[source], "id": target},
            )
    engine.dispose()
    with (
        pytest.raises(SecretCorruptError, match="copied from another row or column") as caught,
        store.session(read_only=True) as session,
    ):
        session.instances.get(first)
    assert first in caught.value.message


def test_secret_moved_between_columns_detected(
    store: KmsStore, tenant: Tenant, backend: Backend, sensitive: Callable[[str], None]
) -> None:
    access_key = make_access_key(tenant.account, sensitive)
    with store.session() as session:
        session.access_keys.create(access_key)
    engine = backend.engine()
    with engine.begin() as connection:
        stored = connection.execute(
            text("SELECT proxy_secret_ciphertext FROM instances")
        ).scalar_one()
        connection.execute(text("UPDATE access_keys SET secret_ciphertext = :v"), {"v": stored})
    engine.dispose()
    with (
        pytest.raises(SecretCorruptError, match=r"access_keys\.secret_ciphertext"),
        store.session(read_only=True) as session,
    ):
        session.access_keys.get(access_key.access_key_id)


def test_secretbox_round_trip_and_formats() -> None:
    box = SecretBox(ROOT_KEY)
    where = {"table": "instances", "column": "proxy_secret_ciphertext", "row_id": "kst-a"}
    stored = box.encrypt(b"proxy secret", **where)
    assert box.decrypt(stored, **where) == b"proxy secret"
    assert stored != box.encrypt(b"proxy secret", **where)  # a fresh nonce each time
    assert not box.needs_reencryption(stored)
    assert SecretBox(OTHER_ROOT_KEY, retired_root_keys=[ROOT_KEY]).needs_reencryption(stored)
    for row_id in ("kst-b", "kst-a\x00"):
        with pytest.raises(SecretCorruptError):
            box.decrypt(stored, **{**where, "row_id": row_id})
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(SecretCorruptError, match="failed authentication"):
        box.decrypt(tampered, **where)
    with pytest.raises(SecretCorruptError, match="format version 2"):
        box.decrypt(b"\x02" + stored[1:], **where)
    with pytest.raises(SecretCorruptError, match="too short"):
        box.decrypt(stored[:20], **where)


def test_secretbox_checks_root_key(sensitive: Callable[[bytes], None]) -> None:
    sensitive(ROOT_KEY)
    with pytest.raises(ValueError, match="must be 32 bytes, got 16 bytes"):
        SecretBox(ROOT_KEY[:16])
    with pytest.raises(TypeError, match="must be bytes"):
        SecretBox(ROOT_KEY.hex())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"retired_root_keys\[0\]"):
        SecretBox(ROOT_KEY, retired_root_keys=[b"short"])
    box = SecretBox(ROOT_KEY)
    assert ROOT_KEY.hex() not in repr(box)
    assert repr(box) == f"SecretBox(root_key_id={box.root_key_id!r}, keys=1)"
    assert len(box.root_key_id) == 16


# --- Signature nonces ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 20, 6, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_nonce_replay_detected(database: Database) -> None:
    clock = FakeClock()
    cache = DatabaseNonceCache(database, clock=clock, sweep_interval=None)
    expires = clock.now + timedelta(minutes=15)
    assert cache.check_and_store("LTAIexample0001", "nonce-1", expires) is True
    assert cache.check_and_store("LTAIexample0001", "nonce-1", expires) is False
    assert cache.check_and_store("LTAIexample0002", "nonce-1", expires) is True
    assert cache.check_and_store("LTAIexample0001", "NONCE-1", expires) is True


def test_nonce_reusable_after_expiry(database: Database) -> None:
    clock = FakeClock()
    cache = DatabaseNonceCache(database, clock=clock, sweep_interval=None)
    assert cache.check_and_store("LTAIexample0001", "n", clock.now + timedelta(minutes=15))
    clock.now += timedelta(minutes=15)
    assert cache.check_and_store("LTAIexample0001", "n", clock.now + timedelta(minutes=15))
    assert not cache.check_and_store("LTAIexample0001", "n", clock.now + timedelta(minutes=15))
    # A time already past is not stored: the verifier rejects such requests first.
    assert cache.check_and_store("LTAIexample0001", "late", clock.now)


def test_nonce_replay_across_two_nodes(backend: Backend, database: Database) -> None:
    other_node = backend.open()
    clock = FakeClock()
    first = DatabaseNonceCache(database, clock=clock, sweep_interval=None)
    second = DatabaseNonceCache(other_node, clock=clock, sweep_interval=None)
    expires = clock.now + timedelta(minutes=15)
    assert first.check_and_store("LTAIexample0001", "shared", expires) is True
    assert second.check_and_store("LTAIexample0001", "shared", expires) is False
    assert second.check_and_store("LTAIexample0001", "second", expires) is True
    assert first.check_and_store("LTAIexample0001", "second", expires) is False


def test_nonce_race_has_one_winner(backend: Backend, database: Database) -> None:
    nodes = [database, backend.open()]
    clock = FakeClock()
    caches = [DatabaseNonceCache(nodes[i % 2], clock=clock, sweep_interval=None) for i in range(8)]
    expires = clock.now + timedelta(minutes=15)
    for round_number in range(10):
        nonce = f"race-{round_number}"
        barrier = threading.Barrier(len(caches))

        def attempt(
            cache: DatabaseNonceCache, nonce: str = nonce, barrier: threading.Barrier = barrier
        ) -> bool:
            barrier.wait()
            return cache.check_and_store("LTAIexample0001", nonce, expires)

        with ThreadPoolExecutor(max_workers=len(caches)) as pool:
            results = list(pool.map(attempt, caches))
        assert results.count(True) == 1, nonce


def test_nonce_sweep_in_batches(database: Database) -> None:
    clock = FakeClock()
    cache = DatabaseNonceCache(database, clock=clock, sweep_interval=None, sweep_batch_size=3)
    for index in range(10):
        cache.check_and_store("LTAIexample0001", f"old-{index}", clock.now + timedelta(minutes=1))
    cache.check_and_store("LTAIexample0001", "fresh", clock.now + timedelta(minutes=30))
    clock.now += timedelta(minutes=2)
    assert cache.sweep(max_batches=2) == 6
    assert cache.sweep() == 4
    assert cache.sweep() == 0
    with database.session(read_only=True) as connection:
        left = connection.execute(text("SELECT nonce FROM signature_nonces")).scalars().all()
    assert left == ["fresh"]


def test_nonce_automatic_sweep(database: Database) -> None:
    clock = FakeClock()
    cache = DatabaseNonceCache(database, clock=clock, sweep_interval=timedelta(seconds=10))

    def stored() -> list[str]:
        with database.session(read_only=True) as connection:
            return sorted(connection.execute(text("SELECT nonce FROM signature_nonces")).scalars())

    # The first call sweeps at once, and the next sweep is due 10 seconds later.
    cache.check_and_store("LTAIexample0001", "a", clock.now + timedelta(seconds=5))
    clock.now += timedelta(seconds=6)
    cache.check_and_store("LTAIexample0001", "b", clock.now + timedelta(seconds=5))
    assert stored() == ["a", "b"]  # "a" has expired, but no sweep was due
    clock.now += timedelta(seconds=6)
    cache.check_and_store("LTAIexample0001", "c", clock.now + timedelta(seconds=5))
    assert stored() == ["c"]


def test_nonce_store_failure_rejects_request(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'missing-dir' / 'kms.db'}")
    cache = DatabaseNonceCache(database)
    with pytest.raises(SignatureError) as caught:
        cache.check_and_store("LTAIexample0001", "n", datetime.now(UTC) + timedelta(minutes=5))
    assert caught.value.error is SignatureErrorCode.THROTTLING
    assert isinstance(caught.value.__cause__, StoreUnavailableError)
    database.dispose()


def test_nonce_cache_options_checked(database: Database) -> None:
    with pytest.raises(ValueError, match="sweep_batch_size"):
        DatabaseNonceCache(database, sweep_batch_size=0)
    with pytest.raises(ValueError, match="sweep_interval"):
        DatabaseNonceCache(database, sweep_interval=timedelta(0))


# --- Concurrency --------------------------------------------------------------------


def test_concurrent_creators_lose_no_writes(backend: Backend, tenant: Tenant) -> None:
    # Two "nodes" (two engines with their own pools) and eight writer threads.
    nodes = [backend.open(), backend.open()]
    stores = [KmsStore(node, SecretBox(ROOT_KEY)) for node in nodes]
    per_thread = 25

    def create_keys(worker: int) -> list[str]:
        created = []
        for _ in range(per_thread):
            key, version = make_key(tenant.instance)
            with stores[worker % 2].session() as session:
                session.keys.create(key, version)
            created.append(key.key_id)
        return created

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = [key_id for batch in pool.map(create_keys, range(8)) for key_id in batch]
    assert len(created) == 8 * per_thread
    with stores[0].session(read_only=True) as session:
        page = session.keys.list(tenant.account.account_id, REGION, PageRequest(1, 100))
    assert page.total_count == 8 * per_thread
    engine = backend.engine()
    with engine.connect() as connection:
        stored = set(connection.execute(select(keys_table.c.key_id)).scalars())
        versions = connection.execute(text("SELECT count(*) FROM key_versions")).scalar_one()
    engine.dispose()
    assert stored == set(created)
    assert versions == 8 * per_thread


def test_concurrent_state_changes_one_wins(
    backend: Backend, store: KmsStore, tenant: Tenant
) -> None:
    key, version = make_key(tenant.instance)
    with store.session() as session:
        session.keys.create(key, version)
    other = KmsStore(backend.open(), SecretBox(ROOT_KEY))
    barrier = threading.Barrier(6)

    def disable(worker: int) -> str:
        barrier.wait()
        try:
            with (store if worker % 2 else other).session() as session:
                session.keys.update_state(
                    key.key_id, KeyState.DISABLED, expected={KeyState.ENABLED}
                )
        except StaleStateError:
            return "stale"
        return "changed"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(disable, range(6)))
    assert outcomes.count("changed") == 1
    assert outcomes.count("stale") == 5


def test_read_only_session(backend: Backend, tenant: Tenant) -> None:
    database = backend.open(busy_timeout=0.2)
    if database.dialect == "postgresql":
        with (
            pytest.raises(sqlalchemy.exc.InternalError, match="read-only"),
            database.session(read_only=True) as connection,
        ):
            connection.execute(update(keys_table).values(description="x"))
        return
    # SQLite: while a writer holds the database lock, a read-only session reads
    # at once, and a second writer gives up after the busy timeout.
    with database.session() as writer:
        writer.execute(text("DELETE FROM signature_nonces"))
        with database.session(read_only=True) as reader:
            count = reader.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        assert count == 1
        with (
            pytest.raises(StoreUnavailableError, match="OperationalError"),
            database.session() as second_writer,
        ):
            second_writer.execute(text("DELETE FROM signature_nonces"))
