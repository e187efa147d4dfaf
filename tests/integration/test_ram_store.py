"""The RAM repositories on SQLite and PostgreSQL: uniqueness, references, cascades, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hyok.common.secrets import Secret
from hyok.kms.domain import AccessKey, Account, new_access_key_id, new_access_key_secret
from hyok.kms.domain.ram import (
    RamPolicy,
    RamRole,
    RamUser,
    StsCredential,
    new_role_id,
    new_security_token,
    new_sts_access_key_id,
    new_user_id,
    security_token_hash,
)
from hyok.kms.store import (
    DuplicateRowError,
    KmsStore,
    MissingReferenceError,
    RowNotFoundError,
    SecretBox,
    open_database,
    upgrade,
)
from hyok.kms.store.tables import sts_credentials
from tests.integration._kms import postgres_server
from tests.integration._postgres import PostgresServer, fresh_schema

__all__ = ["postgres_server"]  # pytest fixture, found by name

pytestmark = pytest.mark.integration

ACCOUNT = "111122223333"
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TRUST = '{"Version":"1","Statement":[]}'
DOCUMENT = '{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}'


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
        yield created


def user(name: str) -> RamUser:
    return RamUser(account_id=ACCOUNT, user_id=new_user_id(), user_name=name, created_at=NOW)


def role(name: str) -> RamRole:
    return RamRole(
        account_id=ACCOUNT,
        role_id=new_role_id(),
        role_name=name,
        trust_policy=TRUST,
        created_at=NOW,
    )


def policy(name: str) -> RamPolicy:
    return RamPolicy(account_id=ACCOUNT, policy_name=name, document=DOCUMENT, created_at=NOW)


def sts_credential(role_name: str, *, secret: str = "StsSecret0123456789abcdef") -> StsCredential:
    return StsCredential(
        access_key_id=new_sts_access_key_id(),
        account_id=ACCOUNT,
        role_name=role_name,
        session_name="session",
        secret=Secret(secret),
        token_hash=security_token_hash(new_security_token().reveal()),
        source_arn=f"acs:ram::{ACCOUNT}:user/alice",
        expires_at=NOW + timedelta(hours=1),
        created_at=NOW,
    )


def test_user_names_unique_per_account(store: KmsStore) -> None:
    with store.session() as session:
        session.ram_users.create(user("alice"))
    duplicate = pytest.raises(DuplicateRowError, match="a RAM user with this name in this account")
    with duplicate, store.session() as session:
        session.ram_users.create(user("alice"))
    with store.session(read_only=True) as session:
        found = session.ram_users.get(ACCOUNT, "alice")
        assert found is not None
        assert session.ram_users.get(ACCOUNT, "bob") is None
        assert session.ram_users.list(ACCOUNT, after=None, limit=10) == ([found], False)


def test_user_access_keys_reference_the_user(store: KmsStore) -> None:
    key = AccessKey(
        access_key_id=new_access_key_id(),
        account_id=ACCOUNT,
        secret=new_access_key_secret(),
        created_at=NOW,
        user_name="carol",
    )
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.access_keys.create(key)
    with store.session() as session:
        session.ram_users.create(user("carol"))
        session.access_keys.create(key)
    with store.session(read_only=True) as session:
        assert session.access_keys.get(key.access_key_id) == key
        assert session.access_keys.list_for_user(ACCOUNT, "carol") == [key]
    # The database refuses to delete a user that still has an AccessKey.
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.ram_users.delete(ACCOUNT, "carol")
    with store.session() as session:
        session.access_keys.delete(key.access_key_id)
        session.ram_users.delete(ACCOUNT, "carol")
    with pytest.raises(RowNotFoundError), store.session() as session:
        session.access_keys.delete(key.access_key_id)


def test_policy_attachments(store: KmsStore) -> None:
    with store.session() as session:
        session.ram_users.create(user("dave"))
        session.ram_roles.create(role("app"))
        session.ram_policies.create(policy("kms-all"))
        session.ram_policies.attach(ACCOUNT, "user", "dave", "kms-all", NOW)
        session.ram_policies.attach(ACCOUNT, "role", "app", "kms-all", NOW)
    with pytest.raises(DuplicateRowError), store.session() as session:
        session.ram_policies.attach(ACCOUNT, "user", "dave", "kms-all", NOW)
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.ram_policies.attach(ACCOUNT, "user", "dave", "missing", NOW)
    with pytest.raises(DuplicateRowError), store.session() as session:
        session.ram_policies.create(policy("kms-all"))
    with store.session(read_only=True) as session:
        attached = session.ram_policies.list_attached(ACCOUNT, "user", "dave")
        assert [item.policy.policy_name for item in attached] == ["kms-all"]
        assert attached[0].attached_at == NOW
        assert session.ram_policies.count_attachments(ACCOUNT, "kms-all", "role") == 1
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.ram_policies.delete(ACCOUNT, "kms-all")
    with store.session() as session:
        session.ram_policies.detach(ACCOUNT, "user", "dave", "kms-all")
        session.ram_policies.detach(ACCOUNT, "role", "app", "kms-all")
        session.ram_policies.delete(ACCOUNT, "kms-all")
    with pytest.raises(RowNotFoundError), store.session() as session:
        session.ram_policies.detach(ACCOUNT, "user", "dave", "kms-all")


def test_sts_credentials_sealed_revoked_and_cascaded(store: KmsStore) -> None:
    credential = sts_credential("worker")
    with pytest.raises(MissingReferenceError), store.session() as session:
        session.sts_credentials.create(credential)
    with store.session() as session:
        session.ram_roles.create(role("worker"))
        session.sts_credentials.create(credential)
        other = sts_credential("worker")
        session.sts_credentials.create(other)
    with store.session(read_only=True) as session:
        assert session.sts_credentials.get(credential.access_key_id) == credential
        row = session.connection.execute(sts_credentials.select()).mappings().first()
        assert row is not None
        assert b"StsSecret" not in bytes(row["secret_ciphertext"])

    with store.session() as session:
        session.sts_credentials.revoke(credential.access_key_id)
    with store.session(read_only=True) as session:
        revoked = session.sts_credentials.get(credential.access_key_id)
        assert revoked is not None
        assert revoked.revoked
    with store.session() as session:
        assert session.sts_credentials.revoke_role_sessions(ACCOUNT, "worker") == 1
        assert session.sts_credentials.delete_expired(NOW + timedelta(hours=2)) == 2

    with store.session() as session:
        session.sts_credentials.create(sts_credential("worker"))
        session.ram_roles.delete(ACCOUNT, "worker")
    with store.session(read_only=True) as session:
        assert session.connection.execute(sts_credentials.select()).first() is None
