"""``hyok kms``: set up and run the KMS, and bootstrap accounts and AccessKeys.

``init`` writes a configuration, ``serve`` runs the API, and the ``account``
and ``access-key`` groups work directly on the database that the
configuration names, because the first AccessKey of an account cannot come
from the API it signs. Commands that call the API through the SDK live in
``hyok.cli.kms_calls``, which ``hyok.cli.main`` adds to this group.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import click

from hyok.cli._common import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    CliError,
    OutputFormat,
    output_option,
    print_json,
    print_record,
    print_table,
)
from hyok.cli._passwords import password_file_option, read_new_password
from hyok.common.errors import HyokError
from hyok.kms.domain import AccessKey, AccessKeyStatus
from hyok.kms.settings import CONFIG_NAME, DEFAULT_PORT, DEFAULT_REGION, KmsSettings
from hyok.kms.store import KmsStore

__all__ = ["kms", "resolve_kms_config"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: Directory of the KMS files inside a data directory written by ``hyok up``.
_UP_SUBDIRECTORY: Final = "kms"


@click.group()
def kms() -> None:
    """Run and configure the KMS: the Alibaba Cloud KMS OpenAPI in front of XKI proxies."""


# Configuration.


def resolve_kms_config(data_dir: Path | None, config: Path | None) -> Path:
    """Return the KMS configuration file that ``--data-dir`` and ``--config`` select.

    ``--config`` names the file. Otherwise the data directory is
    ``--data-dir``, else ``$HYOK_DATA_DIR``, else ``./.hyok``, and the file
    is its ``kms.toml`` (written by ``hyok kms init``) or, when that does
    not exist, ``kms/kms.toml`` (written by ``hyok up``).
    """
    if config is not None and data_dir is not None:
        raise click.UsageError(
            "--data-dir and --config both name a configuration; pass only one of them"
        )
    if config is not None:
        return config
    if data_dir is None:
        from_env = os.environ.get(DATA_DIR_ENV)
        data_dir = Path(from_env) if from_env else DEFAULT_DATA_DIR
    direct = data_dir / CONFIG_NAME
    if direct.exists():
        return direct
    return data_dir / _UP_SUBDIRECTORY / CONFIG_NAME


def _config_options(function: _F) -> _F:
    function = click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="KMS configuration file (TOML), in place of --data-dir.",
    )(function)
    function = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=(
            f"Directory that contains {CONFIG_NAME} (from 'hyok kms init') or "
            f"{_UP_SUBDIRECTORY}/{CONFIG_NAME} (from 'hyok up'). "
            f"Default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR}."
        ),
    )(function)
    return function


def _load(data_dir: Path | None, config: Path | None) -> KmsSettings:
    from hyok.kms.settings import load_settings

    try:
        return load_settings(resolve_kms_config(data_dir, config))
    except HyokError as exc:
        raise CliError(exc.message) from None


@contextmanager
def _store(data_dir: Path | None, config: Path | None) -> Iterator[KmsStore]:
    """Open the configured store and report every hyok error as a CliError."""
    from hyok.kms.bootstrap import open_store

    settings = _load(data_dir, config)
    try:
        store = open_store(settings)
    except HyokError as exc:
        raise CliError(exc.message) from None
    try:
        yield store
    except HyokError as exc:
        raise CliError(exc.message) from None
    finally:
        store.database.dispose()


# init and serve.


@kms.command()
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to create the configuration in; must not contain one already.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address the KMS API binds to."
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the KMS API.",
)
@click.option(
    "--region",
    default=DEFAULT_REGION,
    show_default=True,
    help="Region this KMS serves; XKI proxies must sign for the same region.",
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Extra DNS name or IP address for the server certificate (repeatable).",
)
@click.option(
    "--proxy-ca-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="PEM CA certificate that XKI proxy certificates chain to. Default: the system's roots.",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def init(
    directory: Path,
    host: str,
    port: int,
    region: str,
    hostnames: tuple[str, ...],
    proxy_ca_file: Path | None,
    output: str,
) -> None:
    """Write a working configuration: a local CA and server certificate, a root key file
    (mode 0600) and kms.toml. The SQLite database is created on first use."""
    from hyok.kms.bootstrap import KmsInitOptions, initialise_kms
    from hyok.kms.domain._checks import check_region

    try:
        check_region(region)
    except HyokError as exc:
        raise click.BadParameter(exc.message, param_hint="--region") from None
    result = initialise_kms(
        KmsInitOptions(
            directory=directory,
            host=host,
            port=port,
            region=region,
            hostnames=hostnames,
            proxy_ca_file=proxy_ca_file.resolve() if proxy_ca_file is not None else None,
        )
    )
    if output == "json":
        print_json(
            {
                "config": str(result.config_path),
                "endpoint": result.endpoint,
                "caFile": str(result.ca_file),
                "rootKeyFile": str(result.root_key_file),
                "region": region,
            }
        )
        return
    click.echo(f"Wrote {result.config_path}")
    click.echo(f"KMS endpoint:   {result.endpoint}  (CA certificate: {result.ca_file})")
    click.echo(f"Root key file:  {result.root_key_file}  (back it up; the database needs it)")
    click.echo(f"Create an account:  hyok kms account create --config {result.config_path}")
    click.echo(f"Start the KMS with: hyok kms serve --config {result.config_path}")


@kms.command()
@_config_options
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(data_dir: Path | None, config: Path | None, log_level: str) -> None:
    """Run the KMS API until interrupted (SIGINT or SIGTERM)."""
    from hyok.kms.server import serve as run

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(resolve_kms_config(data_dir, config))


# Accounts.


@kms.group()
def account() -> None:
    """Create and list accounts and set their console passwords, directly in the KMS database."""


@account.command("create")
@_config_options
@click.option(
    "--account-id",
    default=None,
    metavar="ID",
    help="ID of the new account: 12 to 16 digits. Default: 16 random digits.",
)
@output_option
def create_account(
    data_dir: Path | None, config: Path | None, account_id: str | None, output: OutputFormat
) -> None:
    """Create an account and print its ID."""
    from hyok.kms.bootstrap import create_account as create

    with _store(data_dir, config) as store:
        created = create(store, account_id)
    if output is OutputFormat.JSON:
        print_json({"accountId": created.account_id, "createdAt": created.created_at.isoformat()})
        return
    click.echo(created.account_id)


@account.command("list")
@_config_options
@output_option
def list_accounts(data_dir: Path | None, config: Path | None, output: OutputFormat) -> None:
    """List the accounts, oldest first."""
    from hyok.kms.domain import MAX_PAGE_SIZE, Account, PageRequest

    found: list[Account] = []
    with _store(data_dir, config) as store, store.session(read_only=True) as session:
        number = 1
        while True:
            page = session.accounts.list(PageRequest(number=number, size=MAX_PAGE_SIZE))
            found.extend(page.items)
            if not page.items or len(found) >= page.total_count:
                break
            number += 1
    rows = [(item.account_id, _time(item.created_at)) for item in found]
    if output is OutputFormat.JSON:
        print_json({"accounts": [{"accountId": a, "createdAt": c} for a, c in rows]})
        return
    if not rows:
        click.echo("No accounts. Create one with 'hyok kms account create'.")
        return
    print_table(None, ("Account ID", "Created (UTC)"), rows)


@account.command("set-console-password")
@_config_options
@click.option(
    "--account-id", required=True, metavar="ID", help="Account whose root gets the password."
)
@password_file_option
@output_option
def set_console_password(
    data_dir: Path | None,
    config: Path | None,
    account_id: str,
    password_file: IO[str] | None,
    output: OutputFormat,
) -> None:
    """Set the console password of an account root, directly in the KMS database.

    The root signs in to the console with the account ID and this password.
    The password is read from --password-file, a terminal prompt or standard
    input, and only its scrypt hash is stored.
    """
    from hyok.kms.ram import LoginProfileService

    password = read_new_password(password_file)
    with _store(data_dir, config) as store:
        LoginProfileService(store).set_root_console_password(account_id, password)
    if output is OutputFormat.JSON:
        print_json({"accountId": account_id, "consolePasswordSet": True})
        return
    click.echo(f"Set the console password of account {account_id}.")


# AccessKeys.


@kms.group("access-key")
def access_key() -> None:
    """Create, list, deactivate, activate and delete AccessKeys, directly in the KMS database."""


_account_option = click.option(
    "--account-id", required=True, metavar="ID", help="Account that owns the AccessKeys."
)
_owner_option = click.option(
    "--account-id",
    default=None,
    metavar="ID",
    help="Act only when the AccessKey belongs to this account.",
)


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _access_key_fields(item: AccessKey) -> dict[str, str]:
    return {
        "accessKeyId": item.access_key_id,
        "accountId": item.account_id,
        "status": str(item.status),
        "createdAt": _time(item.created_at),
    }


@access_key.command("create")
@_config_options
@_account_option
@output_option
def create_access_key(
    data_dir: Path | None, config: Path | None, account_id: str, output: OutputFormat
) -> None:
    """Create an active AccessKey and print its ID and secret, which is shown only this once."""
    from hyok.kms.bootstrap import create_access_key as create

    with _store(data_dir, config) as store:
        created = create(store, account_id)
    secret = created.secret.reveal()
    if output is OutputFormat.JSON:
        print_json({**_access_key_fields(created), "accessKeySecret": secret})
        return
    print_record(
        [
            ("AccessKey ID", created.access_key_id),
            ("AccessKey secret", secret),
            ("Account", created.account_id),
        ]
    )
    click.echo("Store the secret now: it cannot be shown again.")


@access_key.command("list")
@_config_options
@_account_option
@output_option
def list_access_keys(
    data_dir: Path | None, config: Path | None, account_id: str, output: OutputFormat
) -> None:
    """List an account's AccessKeys with their status (never the secrets)."""
    from hyok.kms.bootstrap import list_access_keys as list_keys

    with _store(data_dir, config) as store:
        found = list_keys(store, account_id)
    if output is OutputFormat.JSON:
        print_json({"accountId": account_id, "accessKeys": [_access_key_fields(i) for i in found]})
        return
    if not found:
        click.echo(
            f"Account {account_id} has no AccessKeys. Create one with "
            f"'hyok kms access-key create --account-id {account_id}'."
        )
        return
    rows = [(i.access_key_id, str(i.status), _time(i.created_at)) for i in found]
    print_table(
        f"AccessKeys of account {account_id}", ("AccessKey ID", "Status", "Created (UTC)"), rows
    )


def _set_status(
    data_dir: Path | None,
    config: Path | None,
    access_key_id: str,
    account_id: str | None,
    status: AccessKeyStatus,
) -> None:
    from hyok.kms.bootstrap import set_access_key_status

    with _store(data_dir, config) as store:
        set_access_key_status(store, access_key_id, status, account_id=account_id)
    click.echo(f"AccessKey {access_key_id} is {status}.")


@access_key.command("deactivate")
@_config_options
@_owner_option
@click.argument("access_key_id")
def deactivate_access_key(
    data_dir: Path | None, config: Path | None, account_id: str | None, access_key_id: str
) -> None:
    """Deactivate an AccessKey: requests it signs fail within 5 seconds."""
    _set_status(data_dir, config, access_key_id, account_id, AccessKeyStatus.INACTIVE)


@access_key.command("activate")
@_config_options
@_owner_option
@click.argument("access_key_id")
def activate_access_key(
    data_dir: Path | None, config: Path | None, account_id: str | None, access_key_id: str
) -> None:
    """Activate an AccessKey again."""
    _set_status(data_dir, config, access_key_id, account_id, AccessKeyStatus.ACTIVE)


@access_key.command("delete")
@_config_options
@_owner_option
@click.option("--yes", is_flag=True, help="Delete without asking for confirmation.")
@click.argument("access_key_id")
def delete_access_key(
    data_dir: Path | None,
    config: Path | None,
    account_id: str | None,
    yes: bool,
    access_key_id: str,
) -> None:
    """Delete an AccessKey for good: requests it signs fail within 5 seconds."""
    from hyok.kms.bootstrap import delete_access_key as delete

    if not yes:
        click.confirm(
            f"Delete AccessKey {access_key_id}? Callers that use it can no longer sign requests",
            abort=True,
        )
    with _store(data_dir, config) as store:
        delete(store, access_key_id, account_id=account_id)
    click.echo(f"Deleted AccessKey {access_key_id}.")
