"""``hyok kmi``: manage keys in the key-manager backends through the proxy's admin API.

The commands never touch a keystore file or device directly. They call the
running proxy, which owns the backends, so that every change is authenticated
with the admin token and written to the proxy's audit log.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from hyok.cli._common import (
    AdminClient,
    CliError,
    OutputFormat,
    config_options,
    load_cli_settings,
    output_option,
    print_json,
    print_record,
    print_table,
)
from hyok.common.errors import HyokError
from hyok.common.ids import validate_key_id
from hyok.kmi.base import KeyUsage
from hyok.xki.settings import ProxySettings

__all__ = ["kmi"]

_F = TypeVar("_F", bound=Callable[..., Any])

_KEY_COLUMNS = ("Key ID", "Status", "Usage", "Spec", "Created (UTC)")


class _UsageChoice(click.Choice[str]):
    """A key usage in any letter case, converted to the upper-case name the API expects.

    Unlike ``case_sensitive=False``, help and errors list the names in upper case.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = value.upper()
        return super().convert(value, param, ctx)


@click.group()
def kmi() -> None:
    """Create, list, enable, disable and delete keys in the proxy's backends.

    The proxy must be running ('hyok xki serve'), because these commands call
    its admin API with the admin token from the configuration.
    """


def _common_options(function: _F) -> _F:
    function = output_option(function)
    function = click.option(
        "--backend",
        default=None,
        metavar="NAME",
        help="Backend to manage, as named in [backends]. Default: the only configured backend.",
    )(function)
    return config_options(function)


# Commands. Their functions take keyword-only parameters, because click passes
# options by name.


@kmi.command("create-key")
@click.option(
    "--key-id",
    default=None,
    metavar="ID",
    help="ID of the new key: 1 to 128 letters, digits, '-', '.' or '_'. Default: a new UUID.",
)
@click.option(
    "--usage",
    "usages",
    multiple=True,
    type=_UsageChoice([usage.value for usage in KeyUsage]),
    help="Usage of the new key; repeat for several. Default: ENCRYPT and DECRYPT.",
)
@_common_options
def create_key(
    *,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str | None,
    usages: tuple[str, ...],
) -> None:
    """Create an enabled AES-256 key in the backend."""
    body: dict[str, object] = {}
    if key_id is not None:
        body["keyId"] = _valid_key_id(key_id, param_hint="--key-id")
    if usages:
        body["usages"] = list(usages)

    settings, name = _open(data_dir, config, backend)
    with AdminClient(settings) as client:
        key = client.request("POST", _keys_path(name), body)
    _print_key(key, output, title=f"Created key in backend {name!r}")


@kmi.command("list-keys")
@_common_options
def list_keys(
    *, data_dir: Path | None, config: Path | None, backend: str | None, output: OutputFormat
) -> None:
    """List the keys of the backend, ordered by key ID."""
    settings, name = _open(data_dir, config, backend)
    with AdminClient(settings) as client:
        result = client.request("GET", _keys_path(name))
    keys: list[dict[str, Any]] = result["keys"]

    if output is OutputFormat.JSON:
        print_json(result)
        return
    if not keys:
        click.echo(f"Backend {name!r} has no keys. Create one with 'hyok kmi create-key'.")
        return
    print_table(f"Keys in backend {name!r}", _KEY_COLUMNS, [_key_row(key) for key in keys])


@kmi.command("describe-key")
@click.argument("key_id", metavar="ID")
@_common_options
def describe_key(
    *,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str,
) -> None:
    """Show the metadata of one key: ID, status, usage, spec and creation time."""
    key_id = _valid_key_id(key_id)
    settings, name = _open(data_dir, config, backend)
    with AdminClient(settings) as client:
        key = client.request("GET", _key_path(name, key_id))
    _print_key(key, output)


@kmi.command("enable-key")
@click.argument("key_id", metavar="ID")
@_common_options
def enable_key(
    *,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str,
) -> None:
    """Enable a key, so that the proxy encrypts and decrypts with it again."""
    _set_state("enable", data_dir, config, backend, output, key_id)


@kmi.command("disable-key")
@click.argument("key_id", metavar="ID")
@_common_options
def disable_key(
    *,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str,
) -> None:
    """Disable a key: encrypt and decrypt with it fail until it is enabled again."""
    _set_state("disable", data_dir, config, backend, output, key_id)


def _set_state(
    action: str,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str,
) -> None:
    key_id = _valid_key_id(key_id)
    settings, name = _open(data_dir, config, backend)
    with AdminClient(settings) as client:
        key = client.request("POST", _key_path(name, key_id) + f"/{action}")
    _print_key(key, output, title=f"{action.capitalize()}d key {key_id!r}")


@kmi.command("delete-key")
@click.argument("key_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Delete without asking for confirmation.")
@_common_options
def delete_key(
    *,
    data_dir: Path | None,
    config: Path | None,
    backend: str | None,
    output: OutputFormat,
    key_id: str,
    yes: bool,
) -> None:
    """Destroy a key. Every ciphertext made under it becomes undecryptable, for good.

    Asks for confirmation unless --yes is given. Disable the key instead when
    it may be needed again.
    """
    key_id = _valid_key_id(key_id)
    settings, name = _open(data_dir, config, backend)
    with AdminClient(settings) as client:
        if not yes:
            # Describing first makes a wrong ID fail before the prompt.
            key = client.request("GET", _key_path(name, key_id))
            _confirm_delete(key, name)
        client.request("DELETE", _key_path(name, key_id))

    if output is OutputFormat.JSON:
        print_json({"backend": name, "keyId": key_id, "deleted": True})
    else:
        click.echo(f"Deleted key {key_id!r} from backend {name!r}.")


# Helpers.


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _confirm_delete(key: dict[str, Any], backend: str) -> None:
    key_id = key["keyId"]
    if not _stdin_is_tty():
        raise CliError(
            f"not deleting key {key_id!r}: confirmation needs a terminal on standard input. "
            "Pass --yes to delete without confirmation."
        )
    click.echo(
        f"Deleting key {key_id!r} ({key['keyStatus']}, created {key['createdAt']}) from "
        f"backend {backend!r} destroys its key material.\n"
        "Every ciphertext made under this key becomes undecryptable, including data keys "
        "that a KMS wrapped with it. This cannot be undone.\n"
        "To stop using the key but keep the ciphertexts recoverable, run "
        "'hyok kmi disable-key' instead.",
        err=True,
    )
    if not click.confirm(f"Delete key {key_id!r}?", default=False, err=True):
        click.echo(f"Key {key_id!r} was not deleted.", err=True)
        # SystemExit rather than click's Exit, because ``main`` runs click in
        # non-standalone mode, where Exit would become exit status 0.
        raise SystemExit(1)


def _open(
    data_dir: Path | None, config: Path | None, backend: str | None
) -> tuple[ProxySettings, str]:
    settings = load_cli_settings(data_dir, config)
    return settings, _choose_backend(settings, backend)


def _choose_backend(settings: ProxySettings, requested: str | None) -> str:
    names = sorted(settings.backends)
    known = ", ".join(names)
    if requested is None:
        if len(names) == 1:
            return names[0]
        raise click.UsageError(
            f"{settings.source} configures several backends ({known}); "
            "choose one with --backend NAME"
        )
    if requested not in settings.backends:
        raise click.BadParameter(
            f"no backend named {requested!r} in {settings.source}; configured backends: {known}",
            param_hint="--backend",
        )
    return requested


def _valid_key_id(key_id: str, *, param_hint: str = "ID") -> str:
    try:
        return validate_key_id(key_id)
    except HyokError as exc:
        raise click.BadParameter(exc.message, param_hint=param_hint) from None


def _keys_path(backend: str) -> str:
    return f"/v1/backends/{quote(backend, safe='')}/keys"


def _key_path(backend: str, key_id: str) -> str:
    # Dots are percent-encoded because the URL parser removes the path
    # segments "." and "..", which are valid key IDs.
    segment = quote(key_id, safe="").replace(".", "%2E")
    return f"{_keys_path(backend)}/{segment}"


def _key_row(key: dict[str, Any]) -> list[str]:
    return [
        key["keyId"],
        key["keyStatus"],
        ", ".join(key["keyUsage"]),
        key["keySpec"],
        key["createdAt"],
    ]


def _print_key(key: dict[str, Any], output: OutputFormat, *, title: str | None = None) -> None:
    if output is OutputFormat.JSON:
        print_json(key)
        return
    if title is not None:
        click.echo(title)
    print_record(list(zip(_KEY_COLUMNS, _key_row(key), strict=True)))
