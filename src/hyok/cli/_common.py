"""Helpers shared by the ``hyok`` command groups.

They find and load the proxy configuration, call the proxy's admin API and
print results as a table or as JSON.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import click

from hyok.common.errors import HyokError
from hyok.common.secrets import Secret, read_secret

if TYPE_CHECKING:
    # httpx and the proxy settings (pydantic) take about 0.7 s to import, and
    # rich about 3 MiB, so only the commands that use them load them: the
    # file commands start fast and small.
    import httpx
    from rich.console import Console

    from hyok.xki.settings import AdminSettings, ProxySettings

__all__ = [
    "ADMIN_CONNECT_TIMEOUT",
    "ADMIN_READ_TIMEOUT",
    "CONFIG_FILE_NAME",
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "AdminClient",
    "CliError",
    "OutputFormat",
    "admin_base_url",
    "config_options",
    "load_cli_settings",
    "output_option",
    "print_json",
    "print_record",
    "print_table",
    "resolve_config_path",
]

#: Environment variable that sets the default of ``--data-dir``.
DATA_DIR_ENV: Final = "HYOK_DATA_DIR"
#: ``--data-dir`` when neither the option nor the environment variable is set.
DEFAULT_DATA_DIR: Final = Path(".hyok")
#: Configuration file name inside a data directory written by ``hyok xki init``.
CONFIG_FILE_NAME: Final = "xki.toml"
#: Timeouts of admin API calls in seconds. Reading gets more time than
#: connecting, because creating a key on an HSM may take several seconds.
ADMIN_READ_TIMEOUT: Final = 30.0
ADMIN_CONNECT_TIMEOUT: Final = 5.0

_F = TypeVar("_F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure to report as ``error: <message>`` on standard error, with exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


@enum.unique
class OutputFormat(enum.StrEnum):
    """Output format of a command's result."""

    TABLE = "table"
    JSON = "json"


# Options.


def config_options(function: _F) -> _F:
    """Add ``--data-dir`` and ``--config``; the command receives ``data_dir`` and ``config``."""
    function = click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Proxy configuration file (TOML), in place of --data-dir.",
    )(function)
    function = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=(
            f"Directory written by 'hyok xki init' that contains {CONFIG_FILE_NAME}. "
            f"Default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR}."
        ),
    )(function)
    return function


def output_option(function: _F) -> _F:
    """Add ``--output table|json``; the command receives ``output`` as an OutputFormat."""
    return click.option(
        "--output",
        type=click.Choice([fmt.value for fmt in OutputFormat]),
        default=OutputFormat.TABLE.value,
        show_default=True,
        callback=lambda _ctx, _param, value: OutputFormat(value),
        help="Output format: a table for people, or JSON on standard output for scripts.",
    )(function)


# Configuration.


def resolve_config_path(data_dir: Path | None, config: Path | None) -> Path:
    """Return the configuration file that ``--data-dir`` and ``--config`` select.

    ``--config`` names the file itself. Otherwise the file is ``xki.toml`` in
    ``--data-dir``, else in ``$HYOK_DATA_DIR``, else in ``./.hyok``. Giving
    both options is a usage error.
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
    return data_dir / CONFIG_FILE_NAME


def load_cli_settings(data_dir: Path | None, config: Path | None) -> ProxySettings:
    """Resolve and load the proxy configuration, reporting problems as CliError."""
    from hyok.xki.settings import load_settings

    path = resolve_config_path(data_dir, config)
    try:
        return load_settings(path)
    except HyokError as exc:
        raise CliError(exc.message) from None
    except OSError as exc:
        # load_settings reports a missing file itself. This branch covers a
        # directory or an unreadable file given as --config.
        raise CliError(f"cannot read the configuration file {path}: {exc.strerror}") from None


# Admin API client.


def admin_base_url(admin: AdminSettings) -> str:
    """Return the HTTPS URL of the admin listener, as a local client reaches it.

    A wildcard bind address (0.0.0.0 or ::) is reached on 127.0.0.1, and an
    IPv6 address is put in brackets.
    """
    host = admin.host.strip("[]") or "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"https://{host}:{admin.port}"
    if address.is_unspecified:
        return f"https://127.0.0.1:{admin.port}"
    if address.version == 6:
        host = f"[{address.compressed}]"
    return f"https://{host}:{admin.port}"


class AdminClient:
    """A client of the proxy's admin API that turns every failure into a CliError.

    Use it as a context manager so that its connection pool is closed.
    """

    def __init__(self, settings: ProxySettings) -> None:
        source = settings.source or Path(CONFIG_FILE_NAME)
        admin = settings.admin
        if admin is None or not admin.enabled:
            raise CliError(
                f"the admin API is not enabled in {source}: add an [admin] section with "
                "enabled = true and a token, then restart the proxy"
            )
        self.base_url = admin_base_url(admin)
        self._source = source
        token = self._read_token(admin)
        import httpx

        self._client = httpx.Client(
            base_url=self.base_url,
            verify=self._trust(admin),
            timeout=httpx.Timeout(ADMIN_READ_TIMEOUT, connect=ADMIN_CONNECT_TIMEOUT),
            headers={"Authorization": f"Bearer {token.reveal()}"},
            # The admin listener is local, so an HTTPS_PROXY from the
            # environment must never receive the bearer token.
            trust_env=False,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: dict[str, object] | None = None) -> Any:
        """Send one request and return the decoded JSON body, or None for 204 No Content."""
        import httpx

        url = self.base_url + path
        try:
            response = self._client.request(method, path, json=body)
        except httpx.ConnectError as exc:
            raise CliError(self._connect_failure(url, exc)) from None
        except httpx.ConnectTimeout:
            raise CliError(
                f"cannot reach the admin API at {url}: no connection within "
                f"{ADMIN_CONNECT_TIMEOUT:.0f} seconds; check admin.host and admin.port in "
                f"{self._source}"
            ) from None
        except httpx.TimeoutException:
            raise CliError(
                f"the admin API at {url} did not respond within "
                f"{ADMIN_READ_TIMEOUT:.0f} seconds; check the proxy log"
            ) from None
        except httpx.HTTPError as exc:
            raise CliError(f"the request to the admin API at {url} failed: {exc}") from None

        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and data is not None:
            return data
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            raise CliError(data["message"])
        raise CliError(
            f"the admin API at {url} returned HTTP {response.status_code} without a JSON "
            f"body; check that {self.base_url} is the admin listener of the proxy"
        )

    def _read_token(self, admin: AdminSettings) -> Secret:
        try:
            token = read_secret(env=admin.token.env, file=admin.token.file, what="admin token")
        except HyokError as exc:
            raise CliError(exc.message) from None
        # An HTTP header value here must be visible ASCII. Checking before
        # httpx does keeps the token out of its encoding error.
        if not all("!" <= char <= "~" for char in token.reveal()):
            raise CliError(
                f"the admin token configured in {self._source} contains spaces or characters "
                "that are not printable ASCII, which an HTTP header cannot carry; "
                "generate a new token of letters and digits"
            )
        return token

    def _trust(self, admin: AdminSettings) -> ssl.SSLContext:
        if admin.ca_file is None:
            # The operating system's CAs, where an internal CA is usually
            # installed, rather than the certifi bundle that httpx defaults to.
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=str(admin.ca_file))
        except FileNotFoundError:
            raise CliError(
                f"the CA file {admin.ca_file} named by admin.ca_file in {self._source} "
                "does not exist"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise CliError(
                f"cannot load the CA file {admin.ca_file} named by admin.ca_file in "
                f"{self._source}: {exc}"
            ) from None

    def _connect_failure(self, url: str, exc: httpx.ConnectError) -> str:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of the admin API at {url} is not trusted "
                f"({cause.verify_message}); set admin.ca_file in {self._source} to the CA "
                "that issued the proxy's certificate"
            )
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake with the admin API at {url} failed: {cause.reason}"
        return (
            f"cannot reach the admin API at {url}; is the proxy running? "
            f"Start it with 'hyok xki serve --config {self._source}'"
        )


# Output.


def print_json(data: object) -> None:
    """Write ``data`` as indented JSON to standard output."""
    click.echo(json.dumps(data, indent=2))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as a table on standard output; cell text is never read as markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if index == 0:
            # The first column contains IDs that people copy, so it never wraps.
            widest = max((len(row[0]) for row in rows), default=len(column))
            table.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            # "fold" keeps long values whole across lines instead of cutting them.
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    _console().print(table)


def print_record(fields: Sequence[tuple[str, str]]) -> None:
    """Print one record as a two-column table of field names and values."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for name, value in fields:
        table.add_row(Text(name), Text(value))
    _console().print(table)


def _console() -> Console:
    # Built per call because click's test runner replaces sys.stdout per invocation.
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)
