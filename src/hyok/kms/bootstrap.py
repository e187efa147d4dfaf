"""Set up a KMS without its API: ``hyok kms init``, and accounts and AccessKeys in the database.

The first AccessKey of an account cannot come from the API, which needs an
AccessKey to sign the request, so these functions write to the database that
a configuration names. They run while a KMS serves the same database: a new
AccessKey signs requests at once, and a deactivated or deleted one stops
working within the API's credential cache time (5 seconds by default).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import delete

from hyok.common.errors import HyokError
from hyok.common.fileio import atomic_write
from hyok.common.tls import create_ca, issue_server_certificate
from hyok.kms.domain import (
    MAX_PAGE_SIZE,
    AccessKey,
    AccessKeyStatus,
    Account,
    PageRequest,
    new_access_key_id,
    new_access_key_secret,
    new_account_id,
)
from hyok.kms.settings import (
    CONFIG_NAME,
    DEFAULT_PORT,
    DEFAULT_REGION,
    ROOT_KEY_ENV,
    KmsSettings,
    load_root_key,
)
from hyok.kms.store import (
    DuplicateRowError,
    KmsStore,
    SecretBox,
    StaleStateError,
    check_current,
    open_database,
    upgrade,
)
from hyok.kms.store.tables import access_keys

__all__ = [
    "BootstrapError",
    "KmsInitOptions",
    "KmsInitResult",
    "create_access_key",
    "create_account",
    "delete_access_key",
    "initialise_kms",
    "list_access_keys",
    "open_store",
    "set_access_key_status",
]

ROOT_KEY_FILE: Final = Path("secrets") / "root-key"
_DNS_NAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


class BootstrapError(HyokError):
    """A bootstrap step that cannot be done; the message names the value and the fix."""

    code = "BootstrapFailed"


def _utc_now() -> datetime:
    return datetime.now(UTC)


# hyok kms init.


@dataclass(frozen=True)
class KmsInitOptions:
    """What ``hyok kms init`` writes: the listener, the region and the trust for proxies.

    ``proxy_ca_file`` is written into the configuration as given, so a
    relative path stays relative to the configuration's directory.
    """

    directory: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    region: str = DEFAULT_REGION
    hostnames: tuple[str, ...] = ()
    proxy_ca_file: Path | None = None


@dataclass(frozen=True)
class KmsInitResult:
    """The files ``hyok kms init`` wrote, and the endpoint the SDK is configured with."""

    config_path: Path
    ca_file: Path
    root_key_file: Path
    endpoint: str


def _toml_string(value: str) -> str:
    return json.dumps(value)


def _config_text(options: KmsInitOptions) -> str:
    if options.proxy_ca_file is None:
        proxy_ca = (
            "# PEM CA certificates of XKI proxy certificates; the system's roots when unset.\n"
            '# ca_file = "proxy-ca.pem"'
        )
    else:
        proxy_ca = (
            "# PEM CA certificates of XKI proxy certificates, in place of the system's roots.\n"
            f"ca_file = {_toml_string(str(options.proxy_ca_file))}"
        )
    return f"""\
# hyok KMS configuration, written by 'hyok kms init'. Reference: docs/kms-service.md.
# Relative paths are resolved against this file's directory.

region = {_toml_string(options.region)}

# The 32-byte key that encrypts the secrets in the database, never written
# here. The environment variable wins over the file. Back the file up: the
# stored secrets cannot be decrypted without it.
root_key = {{ env = "{ROOT_KEY_ENV}", file = "{ROOT_KEY_FILE.as_posix()}" }}

[server]
host = {_toml_string(options.host)}
port = {options.port}
cert_file = "tls/server.pem"
key_file = "tls/server-key.pem"
min_tls_version = "1.2"
workers = 1
# "memory" keeps signature nonces in this process, which is enough for one
# worker and is much faster. Use "database" with several workers, several
# KMS processes on one database, or PostgreSQL.
nonce_cache = "memory"

[database]
# A SQLite file for one node; postgresql://user@host:5432/db for several.
url = "sqlite:///kms.db"

[proxy]
{proxy_ca}
timeout_ms = 250

[proxy.vpc_endpoints]
# VPC endpoint service name = "private host:port" that the KMS dials for it.
# "com.example.vpce.xki" = "10.0.0.5:8443"

[health]
interval_seconds = 30
"""


def initialise_kms(options: KmsInitOptions) -> KmsInitResult:
    """Write a KMS configuration, a local CA with a server certificate, and a root key file.

    Refuses a directory that already contains a configuration. When a step
    fails, everything this call created is removed again.
    """
    directory = options.directory
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        raise BootstrapError(
            f"{config_path} already exists: choose an empty directory, or use the existing "
            "configuration"
        )
    existed = directory.exists()
    before = set(directory.rglob("*")) if existed else set()
    try:
        return _write_all(options)
    except BaseException:
        if not existed:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for path in sorted(set(directory.rglob("*")) - before, reverse=True):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def _hostnames(options: KmsInitOptions) -> list[str]:
    hostnames = ["localhost", "127.0.0.1", "::1", *options.hostnames]
    own_name = socket.gethostname()
    if _DNS_NAME.fullmatch(own_name):
        hostnames.append(own_name)
    if options.host not in ("0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        hostnames.append(options.host)
    return list(dict.fromkeys(hostnames))


def _write_all(options: KmsInitOptions) -> KmsInitResult:
    directory = options.directory
    for sub in ("", "secrets", "tls"):
        (directory / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    root_key_file = directory / ROOT_KEY_FILE
    atomic_write(root_key_file, (secrets.token_hex(32) + "\n").encode("ascii"), mode=0o600)

    tls = directory / "tls"
    ca = create_ca("hyok KMS local CA", days=3650)
    ca.write(tls / "ca.pem", tls / "ca-key.pem")
    server = issue_server_certificate(ca, hostnames=_hostnames(options), days=825)
    server.write(tls / "server.pem", tls / "server-key.pem")

    config_path = directory / CONFIG_NAME
    atomic_write(config_path, _config_text(options).encode("utf-8"), mode=0o600)
    os.chmod(directory, 0o700)

    wildcard = options.host in ("0.0.0.0", "::")  # noqa: S104 - comparing, not binding
    host = "127.0.0.1" if wildcard else options.host
    shown_host = f"[{host}]" if ":" in host else host
    return KmsInitResult(
        config_path=config_path,
        ca_file=tls / "ca.pem",
        root_key_file=root_key_file,
        endpoint=f"{shown_host}:{options.port}",
    )


# Accounts and AccessKeys.


def open_store(settings: KmsSettings, *, migrate: bool = True) -> KmsStore:
    """Open the configured database and return the store.

    With ``migrate`` the schema is brought up to date, and otherwise it is
    checked (SchemaVersionError when it is behind). The caller disposes of
    ``store.database`` when done.
    """
    root_key = load_root_key(settings)
    database_settings = settings.database
    database = open_database(
        database_settings.resolved_url,
        schema=database_settings.db_schema,
        busy_timeout=database_settings.busy_timeout_ms / 1000,
        pool_size=database_settings.pool_size,
        max_overflow=database_settings.max_overflow,
    )
    try:
        if migrate:
            upgrade(database)
        else:
            check_current(database)
        return KmsStore(database, SecretBox(root_key))
    except BaseException:
        database.dispose()
        raise


def create_account(
    store: KmsStore,
    account_id: str | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> Account:
    """Create an account with ``account_id``, or with a new 16-digit ID when it is None.

    Raises ValidationError for an invalid account ID, and BootstrapError
    when the account exists.
    """
    account = Account(account_id=account_id or new_account_id(), created_at=clock())
    try:
        with store.session() as session:
            session.accounts.create(account)
    except DuplicateRowError:
        raise BootstrapError(
            f"account {account.account_id} already exists: use it, or pass another --account-id"
        ) from None
    return account


def _require_account(store: KmsStore, account_id: str) -> None:
    with store.session(read_only=True) as session:
        if session.accounts.get(account_id) is None:
            raise BootstrapError(
                f"account {account_id!r} does not exist: create it with 'hyok kms account create'"
            )


def create_access_key(
    store: KmsStore, account_id: str, *, clock: Callable[[], datetime] = _utc_now
) -> AccessKey:
    """Create an active AccessKey for an existing account and return it with its secret."""
    _require_account(store, account_id)
    access_key = AccessKey(
        access_key_id=new_access_key_id(),
        account_id=account_id,
        secret=new_access_key_secret(),
        created_at=clock(),
    )
    with store.session() as session:
        session.access_keys.create(access_key)
    return access_key


def list_access_keys(store: KmsStore, account_id: str) -> list[AccessKey]:
    """Return every AccessKey of an existing account, oldest first."""
    _require_account(store, account_id)
    found: list[AccessKey] = []
    number = 1
    with store.session(read_only=True) as session:
        while True:
            page = session.access_keys.list(
                account_id, PageRequest(number=number, size=MAX_PAGE_SIZE)
            )
            found.extend(page.items)
            if not page.items or len(found) >= page.total_count:
                return found
            number += 1


def _get_access_key(store: KmsStore, access_key_id: str, account_id: str | None) -> AccessKey:
    with store.session(read_only=True) as session:
        access_key = session.access_keys.get(access_key_id)
    if access_key is None or (account_id is not None and access_key.account_id != account_id):
        owner = f" of account {account_id}" if account_id is not None else ""
        raise BootstrapError(
            f"AccessKey {access_key_id!r}{owner} does not exist: list the AccessKeys with "
            "'hyok kms access-key list --account-id ID'"
        )
    return access_key


def set_access_key_status(
    store: KmsStore,
    access_key_id: str,
    status: AccessKeyStatus,
    *,
    account_id: str | None = None,
) -> AccessKey:
    """Activate or deactivate an AccessKey; with ``account_id``, only one of that account."""
    _get_access_key(store, access_key_id, account_id)
    try:
        with store.session() as session:
            return session.access_keys.update_status(access_key_id, status)
    except StaleStateError as exc:
        raise BootstrapError(exc.message) from None


def delete_access_key(
    store: KmsStore, access_key_id: str, *, account_id: str | None = None
) -> None:
    """Delete an AccessKey for good; with ``account_id``, only one of that account."""
    _get_access_key(store, access_key_id, account_id)
    with store.session() as session:
        # TODO: call AccessKeyRepository.delete once the store has one, so
        # that this module stops issuing SQL of its own.
        session.connection.execute(
            delete(access_keys).where(access_keys.c.access_key_id == access_key_id)
        )
