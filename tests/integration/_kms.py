"""A whole KMS chain on loopback for integration tests: key manager, XKI proxy and KMS.

``kms_stack`` builds, per test module and per database (SQLite file or a
fresh PostgreSQL schema):

- a real hyok XKI proxy over TLS (``tests.integration._xks``) with the file
  key manager and the keys ``app-1`` (enabled), ``off-1`` (disabled) and
  ``sign-1`` (no DECRYPT usage);
- a KMS (``KmsApp`` with every action) over TLS on 127.0.0.1, served by
  :class:`~hyok.kms.http11.KmsHttpProtocol` as ``hyok kms serve`` does;
- an account with a root AccessKey, and an external key instance bound to
  the proxy through the public endpoint ``https://localhost:<port>``.

Tests call the KMS only through the official SDK (``alibabacloud_kms20160120``):
the typed client methods, and the generic ``call_api`` for hyok extensions
such as the ``ExternalKeyId`` parameter of CreateKey.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
)

from hyok.common.secrets import Secret
from hyok.common.tls import CertificateBundle, create_ca, issue_server_certificate
from hyok.kmi.base import KeyUsage
from hyok.kms.api.actions import Services, build_handlers
from hyok.kms.api.app import KmsApp
from hyok.kms.audit import KmsAuditTrail
from hyok.kms.domain import (
    AccessKey,
    Account,
    Connectivity,
    Instance,
    InstanceStatus,
    KeyState,
    new_access_key_id,
    new_access_key_secret,
    new_instance_id,
)
from hyok.kms.http11 import KmsHttpProtocol
from hyok.kms.proxies import ProxyNetwork, ProxyPool
from hyok.kms.store import KmsStore, SecretBox, open_database, upgrade
from tests.conftest import register_sensitive
from tests.integration._postgres import PostgresServer, find_postgres, fresh_schema
from tests.integration._sdk import close_sdk_connections
from tests.integration._server import serve_tls
from tests.integration._xks import (
    DataDir,
    RunningProxy,
    init_data_dir,
    keystore_entry,
    run_proxy,
)

__all__ = [
    "ACCOUNT_ID",
    "OTHER_ACCOUNT_ID",
    "REGION",
    "KmsStack",
    "add_instance",
    "kms_stack",
    "open_test_store",
    "postgres_server",
    "seed_accounts",
    "serve_kms",
]

REGION = "cn-hangzhou"
ACCOUNT_ID = "1234567890123456"
OTHER_ACCOUNT_ID = "6543210987654321"
ROOT_KEY = bytes.fromhex("a7" * 32)


@dataclass
class KmsStack:
    """The running chain and what a test needs to call it."""

    url: str
    port: int
    ca_file: Path
    store: KmsStore
    services: Services
    proxy: RunningProxy
    data: DataDir
    access_key_id: str
    secret: str
    other_access_key_id: str
    other_secret: str
    instance_id: str
    database: str
    peer_ca: CertificateBundle
    """A CA that the KMS trusts for proxy certificates, for scripted proxies of tests."""
    audit_path: Path
    """The KMS's audit trail (hyok.kms.audit)."""

    def sdk(self, *, other_account: bool = False, **config: Any) -> Client:
        """An SDK client of the KMS, signing as the account (or the other account)."""
        return Client(
            Config(
                access_key_id=self.other_access_key_id if other_account else self.access_key_id,
                access_key_secret=self.other_secret if other_account else self.secret,
                endpoint=f"127.0.0.1:{self.port}",
                protocol="https",
                region_id=REGION,
                ca=str(self.ca_file),
                **config,
            )
        )

    def set_instance_status(self, status: InstanceStatus) -> None:
        """Change the instance's state in the database, as another KMS node would."""
        with self.store.session() as session:
            session.instances.update_status(self.instance_id, status)
        # This KMS would see the change within the key cache's TTL; a test does not wait.
        self.services.keys.forget_instance(self.instance_id)

    def set_key_state(self, key_id: str, state: KeyState) -> None:
        """Change a key's state in the database, as another KMS node would."""
        with self.store.session() as session:
            session.keys.update_state(key_id, state)
        self.services.keys.forget_key(key_id)

    def disable_external_key(self, key_id: str) -> None:
        manager = self.data.open_keystore()
        try:
            manager.disable_key(key_id)
        finally:
            manager.close()

    def enable_external_key(self, key_id: str) -> None:
        manager = self.data.open_keystore()
        try:
            manager.enable_key(key_id)
        finally:
            manager.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield find_postgres()


def add_instance(
    store: KmsStore,
    *,
    endpoint: str,
    access_key_id: str,
    secret: str,
    status: InstanceStatus = InstanceStatus.CONNECTED,
) -> str:
    """Store an instance of ACCOUNT_ID bound to the proxy at ``endpoint`` and return its ID.

    The instance gets its state directly: the instance actions have their own
    tests, and the tests that use this helper are about keys and cryptography.
    """
    instance_id = new_instance_id()
    with store.session() as session:
        session.instances.create(
            Instance(
                instance_id=instance_id,
                account_id=ACCOUNT_ID,
                region=REGION,
                name="test instance",
                connectivity=Connectivity.PUBLIC,
                proxy_endpoint=endpoint,
                proxy_uri_path="/kms/xks/v1",
                proxy_access_key_id=access_key_id,
                proxy_secret=Secret(secret),
                status=status,
                created_at=datetime.now(UTC),
            )
        )
    return instance_id


def open_test_store(
    stack: ExitStack, kind: str, directory: Path, postgres_server: PostgresServer
) -> KmsStore:
    """Open a migrated store on a SQLite file in ``directory`` or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        database = open_database(f"sqlite:///{directory / 'kms.db'}")
    else:
        url, schema = stack.enter_context(fresh_schema(postgres_server))
        database = open_database(url, schema=schema)
    stack.callback(database.dispose)
    upgrade(database)
    return KmsStore(database, SecretBox(ROOT_KEY))


def seed_accounts(store: KmsStore) -> tuple[str, str, str, str]:
    """Create the account and the other account with a root AccessKey each.

    Returns the AccessKey ID and secret of the account, then of the other account.
    """
    now = datetime.now(UTC)
    created: list[str] = []
    with store.session() as session:
        for account_id in (ACCOUNT_ID, OTHER_ACCOUNT_ID):
            access_key_id, secret = new_access_key_id(), new_access_key_secret()
            register_sensitive(secret.reveal())
            session.accounts.create(Account(account_id=account_id, created_at=now))
            session.access_keys.create(
                AccessKey(
                    access_key_id=access_key_id,
                    account_id=account_id,
                    secret=secret,
                    created_at=now,
                )
            )
            created += [access_key_id, secret.reveal()]
    return created[0], created[1], created[2], created[3]


def serve_kms(stack: ExitStack, directory: Path, app: KmsApp) -> tuple[str, Path]:
    """Serve ``app`` over TLS on 127.0.0.1 as ``hyok kms serve`` does; return its URL and CA file.

    The server stops, after the SDK's pooled connections to it are closed,
    when ``stack`` closes.
    """
    ca = create_ca("hyok KMS test CA", days=3)
    ca_file = directory / "kms-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert_file, key_file = directory / "kms.pem", directory / "kms.key"
    issue_server_certificate(ca, hostnames=["127.0.0.1"], days=2).write(cert_file, key_file)
    url = stack.enter_context(
        serve_tls(
            app,
            cert_file=cert_file,
            key_file=key_file,
            http=KmsHttpProtocol,
            loop="asyncio",
            lifespan="on",
            # uvicorn's access log writes the query string, with every parameter value.
            access_log=False,
        )
    )
    stack.callback(close_sdk_connections, url)
    return url, ca_file


def _seed(store: KmsStore, proxy: RunningProxy, data: DataDir) -> tuple[str, str, str, str, str]:
    access_key_id, secret, other_id, other_secret = seed_accounts(store)
    credential = data.credentials["default"].credential
    port = urlsplit(proxy.url).port
    instance_id = add_instance(
        store,
        endpoint=f"https://localhost:{port}",
        access_key_id=credential.access_key_id,
        secret=credential.secret.reveal(),
    )
    return access_key_id, secret, other_id, other_secret, instance_id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kms_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
) -> Iterator[KmsStack]:
    directory = tmp_path_factory.mktemp("kms-stack")
    with ExitStack() as stack:
        store = open_test_store(stack, request.param, directory, postgres_server)

        data = init_data_dir(directory / "xki")
        data.create_keys(["off-1"])
        data.create_keys(["sign-1"], usages=[KeyUsage.ENCRYPT])
        manager = data.open_keystore()
        try:
            manager.disable_key("off-1")
        finally:
            manager.close()
        settings = data.write_config(keystores=[keystore_entry("default")])
        proxy = stack.enter_context(run_proxy(data, settings))

        peer_ca = create_ca("hyok scripted proxy CA", days=3)
        trust_file = directory / "proxy-trust.pem"
        trust_file.write_bytes(data.ca_file.read_bytes() + peer_ca.cert_pem)
        services = Services(
            store=store,
            proxies=ProxyPool(ProxyNetwork(ca_file=trust_file, timeout=2.0)),
            region=REGION,
        )
        audit_path = directory / "audit" / "kms-audit.jsonl"
        trail = KmsAuditTrail(audit_path)
        stack.callback(trail.close)
        app = KmsApp(
            store,
            region=REGION,
            handlers=build_handlers(services),
            on_shutdown=[services.proxies.aclose],
            on_identity_change=services.access.forget,
            audit=trail.record,
        )
        url, ca_file = serve_kms(stack, directory, app)
        access_key_id, secret, other_id, other_secret, instance_id = _seed(store, proxy, data)
        yield KmsStack(
            url=url,
            port=int(url.rsplit(":", 1)[1]),
            ca_file=ca_file,
            store=store,
            services=services,
            proxy=proxy,
            data=data,
            access_key_id=access_key_id,
            secret=secret,
            other_access_key_id=other_id,
            other_secret=other_secret,
            instance_id=instance_id,
            database=request.param,
            peer_ca=peer_ca,
            audit_path=audit_path,
        )
