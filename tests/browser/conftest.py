"""Browser tests of the web console: a real KMS with its console and a real XKI proxy on loopback.

The browser is Debian's Chromium (``/usr/bin/chromium``, installed by
scripts/test), driven by Playwright for Python. No browser is downloaded:
Playwright launches that executable. Tests skip when it is missing.

``console_stack`` (one per test run) serves, over TLS on 127.0.0.1:

- the hyok XKI proxy with the file key manager (``tests.integration._xks``);
- a KMS whose app has every action and the console, with SQLite, the audit
  trail and a short scrypt cost;
- an account whose root has the console password :data:`ROOT_PASSWORD`, a RAM
  user ``alice`` with a login profile, and an instance bound to the proxy
  that starts ``Disconnected``.

Screenshots go to ``tests/browser/artifacts/`` (ignored by git); copy the
current ones to ``docs/console/`` when the pages change.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import Config  # type: ignore[import-untyped]

from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate
from hyok.console import Console, build_console
from hyok.console.ratelimit import FailedSignInLimiter
from hyok.kms.api.actions import Services, build_handlers
from hyok.kms.api.app import RAM_API_VERSION, KmsApp
from hyok.kms.audit import KmsAuditTrail
from hyok.kms.domain import (
    AccessKey,
    Account,
    InstanceStatus,
    new_access_key_id,
    new_access_key_secret,
)
from hyok.kms.domain.passwords import ScryptParameters
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.http11 import KmsHttpProtocol
from hyok.kms.proxies import ProxyNetwork, ProxyPool
from hyok.kms.ram import LoginProfileService
from hyok.kms.store import KmsStore, SecretBox, open_database, upgrade
from tests.conftest import register_sensitive
from tests.integration._kms import ACCOUNT_ID, OTHER_ACCOUNT_ID, REGION, add_instance
from tests.integration._sdk import close_sdk_connections
from tests.integration._server import serve_tls
from tests.integration._xks import DataDir, init_data_dir, keystore_entry, run_proxy

CHROMIUM = Path(os.environ.get("HYOK_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).parent / "artifacts"
ROOT_PASSWORD = "Console-root-passw0rd"
USER_NAME = "alice"
ROLE_NAME = "console-ops"
USER_PASSWORD = "Console-alice-passw0rd"
ROOT_KEY = bytes.fromhex("c3" * 32)
# The cheapest scrypt cost LoginProfileService accepts, so that sign-ins stay fast.
TEST_SCRYPT = ScryptParameters(log2_n=10, r=8, p=1)


@dataclass
class ConsoleStack:
    """The running KMS with its console, and what tests need to drive it."""

    url: str
    console: Console
    app: KmsApp
    store: KmsStore
    services: Services
    data: DataDir
    instance_id: str
    audit_path: Path
    ca_file: Path
    access_key_id: str
    secret: str

    def sdk(self) -> Client:
        """An SDK client of the KMS API, signing with the account root's AccessKey."""
        return Client(
            Config(
                access_key_id=self.access_key_id,
                access_key_secret=self.secret,
                endpoint=self.url.removeprefix("https://"),
                protocol="https",
                region_id=REGION,
                ca=str(self.ca_file),
            )
        )

    @property
    def console_url(self) -> str:
        return f"{self.url}/console"

    def reset_limits(self) -> None:
        """Forget failed sign-ins, which every test makes from 127.0.0.1."""
        limiter = self.console.limiter
        self.console.limiter = FailedSignInLimiter(limiter.max_failures, limiter.window)

    def set_instance_status(self, status: InstanceStatus) -> None:
        with self.store.session() as session:
            session.instances.update_status(self.instance_id, status)
        self.services.keys.forget_instance(self.instance_id)


@pytest.fixture(scope="package")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    directory = tmp_path_factory.mktemp("console-stack")
    register_sensitive(ROOT_PASSWORD)
    register_sensitive(USER_PASSWORD)
    with ExitStack() as stack:
        database = open_database(f"sqlite:///{directory / 'kms.db'}")
        stack.callback(database.dispose)
        upgrade(database)
        store = KmsStore(database, SecretBox(ROOT_KEY))

        data = init_data_dir(directory / "xki")
        settings = data.write_config(keystores=[keystore_entry("default")])
        proxy = stack.enter_context(run_proxy(data, settings))

        ca = create_ca("hyok console test CA", days=3)
        certificate = issue_server_certificate(ca, hostnames=["127.0.0.1", "localhost"], days=2)
        cert_file, key_file = directory / "kms.pem", directory / "kms.key"
        certificate.write(cert_file, key_file)

        services = Services(
            store=store,
            proxies=ProxyPool(ProxyNetwork(ca_file=data.ca_file, timeout=2.0)),
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
        passwords = LoginProfileService(store, parameters=TEST_SCRYPT)
        console = build_console(
            app,
            database,
            passwords.sign_in,
            idle_timeout_seconds=900,
            session_lifetime_seconds=12 * 3600,
            max_failed_sign_ins=5,
            failed_sign_in_window_seconds=300,
            audit_path=audit_path,
            passwords=passwords,
        )
        app.console = console
        url = stack.enter_context(
            serve_tls(
                app,
                cert_file=cert_file,
                key_file=key_file,
                http=KmsHttpProtocol,
                loop="asyncio",
                lifespan="on",
                access_log=False,
            )
        )
        ca_file = directory / "kms-ca.pem"
        ca_file.write_bytes(ca.cert_pem)
        stack.callback(close_sdk_connections, url)
        instance_id, access_key_id, secret = _seed(app, store, passwords, data, proxy.url)
        yield ConsoleStack(
            url=url,
            console=console,
            app=app,
            store=store,
            services=services,
            data=data,
            instance_id=instance_id,
            audit_path=audit_path,
            ca_file=ca_file,
            access_key_id=access_key_id,
            secret=secret,
        )


def _seed(
    app: KmsApp, store: KmsStore, passwords: LoginProfileService, data: DataDir, proxy_url: str
) -> tuple[str, str, str]:
    """Store the account, its root AccessKey and console password, and the instance."""
    now = datetime.now(UTC)
    secret = new_access_key_secret()
    register_sensitive(secret.reveal())
    access_key_id = new_access_key_id()
    with store.session() as session:
        session.accounts.create(Account(account_id=ACCOUNT_ID, created_at=now))
        session.accounts.create(Account(account_id=OTHER_ACCOUNT_ID, created_at=now))
        session.access_keys.create(
            AccessKey(
                access_key_id=access_key_id, account_id=ACCOUNT_ID, secret=secret, created_at=now
            )
        )
    passwords.set_root_console_password(ACCOUNT_ID, Secret(ROOT_PASSWORD))
    # A RAM user with a console password and no permission on KMS.
    # A RAM role, which the key policy pickers list after the users.
    trust = {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"RAM": [f"acs:ram::{ACCOUNT_ID}:root"]},
            }
        ],
    }
    for action, parameters in (
        ("CreateUser", {"UserName": USER_NAME}),
        ("CreateRole", {"RoleName": ROLE_NAME, "AssumeRolePolicyDocument": json.dumps(trust)}),
    ):
        call = app.call_as(
            RamIdentity(ACCOUNT_ID, CallerKind.ROOT),
            action,
            parameters,
            request_id=str(uuid.uuid4()).upper(),
            source_ip="127.0.0.1",
            secure_transport=True,
            channel="test-setup",
            version=RAM_API_VERSION,
        )
        # Playwright's sync API may already run an event loop in this thread.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, call).result()
    passwords.create_login_profile(ACCOUNT_ID, USER_NAME, Secret(USER_PASSWORD))
    credential = data.credentials["default"].credential
    port = proxy_url.rsplit(":", 1)[1]
    instance_id = add_instance(
        store,
        endpoint=f"https://localhost:{port}",
        access_key_id=credential.access_key_id,
        secret=credential.secret.reveal(),
        status=InstanceStatus.DISCONNECTED,
    )
    return instance_id, access_key_id, secret.reveal()


# Package scope: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and asyncio.run() in the tests after this package fails then.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            # The tests run as root in CI, where Chromium's sandbox cannot start.
            args=["--no-sandbox"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, console_stack: ConsoleStack) -> Iterator[Any]:
    """A fresh browser context (no cookies) with English as the browser's language."""
    console_stack.reset_limits()
    context = browser.new_context(
        ignore_https_errors=True, locale="en-US", viewport={"width": 1280, "height": 900}
    )
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(
    page: Any, stack: ConsoleStack, name: str = ACCOUNT_ID, password: str = ROOT_PASSWORD
) -> None:
    """Sign in through the form and wait for the page after it."""
    page.goto(f"{stack.console_url}/sign-in")
    page.get_by_label("Sign-in name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
