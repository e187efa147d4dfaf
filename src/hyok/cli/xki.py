"""``hyok xki``: set up and run the XKI proxy, and manage its SigV4 credentials."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import pydantic

from hyok.cli._common import (
    OutputFormat,
    config_options,
    load_cli_settings,
    output_option,
    resolve_config_path,
)
from hyok.common.secrets import read_secret
from hyok.xki.backend_init import KmipInit, Pkcs11Init
from hyok.xki.credentials import CredentialFile
from hyok.xki.settings import KeyStoreSettings, ProxySettings

__all__ = ["kmip_init", "kmip_options", "pkcs11_init", "pkcs11_options", "xki"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The key managers that ``--kmi`` selects.
KMI_CHOICES = ("file", "pkcs11", "kmip")
_ENVIRONMENT_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,127}"


def pkcs11_options(function: _F) -> _F:
    """Add the options that name a PKCS#11 token and its user PIN."""
    options = [
        click.option("--pkcs11-module", type=click.Path(path_type=Path, dir_okay=False),
                     default=None,
                     help="PKCS#11 library of the token. Default: SoftHSMv2's "
                          "/usr/lib/softhsm/libsofthsm2.so."),
        click.option("--pkcs11-token-label", default=None, metavar="LABEL",
                     help="Label of the PKCS#11 token that holds the keys."),
        click.option("--pkcs11-slot", type=click.IntRange(0), default=None, metavar="ID",
                     help="Slot ID of the PKCS#11 token, instead of --pkcs11-token-label."),
        click.option("--pkcs11-pin-env", default=None, metavar="NAME",
                     help="Environment variable that holds the token's user PIN when the "
                          "proxy starts."),
        click.option("--pkcs11-pin-file", type=click.Path(path_type=Path, dir_okay=False),
                     default=None,
                     help="File with the token's user PIN (keep it mode 0600). With "
                          "--pkcs11-pin-env too, the variable wins when it is set."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def pkcs11_init(kmi: str, *, own_token_allowed: bool, **values: Any) -> Pkcs11Init | None:
    """Build the PKCS#11 part of the init options from the ``--pkcs11-*`` values.

    Returns None for ``--kmi file``, which takes no ``--pkcs11-*`` option.
    With ``own_token_allowed`` and no token named, the result asks for a
    SoftHSMv2 token of its own.
    """
    from hyok.kmi.pkcs11.softhsm import SOFTHSM_MODULE

    given = {name: value for name, value in values.items() if value is not None}
    if kmi != "pkcs11":
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in sorted(given))
            raise click.UsageError(f"{names}: valid only with --kmi pkcs11")
        return None
    module = values.get("pkcs11_module") or SOFTHSM_MODULE
    label, slot = values.get("pkcs11_token_label"), values.get("pkcs11_slot")
    pin_env, pin_file = values.get("pkcs11_pin_env"), values.get("pkcs11_pin_file")
    if own_token_allowed and label is None and slot is None:
        if pin_env is not None or pin_file is not None:
            raise click.UsageError(
                "--pkcs11-pin-env and --pkcs11-pin-file need --pkcs11-token-label or "
                "--pkcs11-slot; without a token, hyok creates a SoftHSMv2 token with its own PIN"
            )
        return Pkcs11Init(module=module.absolute(), own_softhsm_token=True)
    if (label is None) == (slot is None):
        raise click.UsageError("--kmi pkcs11 needs one of --pkcs11-token-label and --pkcs11-slot")
    if pin_env is None and pin_file is None:
        raise click.UsageError("--kmi pkcs11 needs --pkcs11-pin-env or --pkcs11-pin-file")
    if label is not None and not 1 <= len(label.encode("utf-8")) <= 32:
        raise click.BadParameter("a token label has 1 to 32 bytes",
                                 param_hint="--pkcs11-token-label")
    if pin_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", pin_env):
        raise click.BadParameter(f"{pin_env!r} is not an environment variable name",
                                 param_hint="--pkcs11-pin-env")
    return Pkcs11Init(
        module=module.absolute(),
        token_label=label,
        slot=slot,
        pin_env=pin_env,
        pin_file=pin_file.absolute() if pin_file is not None else None,
    )


def kmip_options(function: _F) -> _F:
    """Add the options that name a KMIP server and the client certificate for it."""
    file_type = click.Path(path_type=Path, dir_okay=False)
    options = [
        click.option("--kmip-host", default=None, metavar="HOST",
                     help="DNS name or IP address of the KMIP server."),
        click.option("--kmip-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
                     help="TCP port of the KMIP server. Default: 5696."),
        click.option("--kmip-server-name", default=None, metavar="NAME",
                     help="Name the server certificate must carry, when it differs from "
                          "--kmip-host."),
        click.option("--kmip-ca-file", type=file_type, default=None,
                     help="PEM file with the CA certificates of the KMIP server."),
        click.option("--kmip-cert-file", type=file_type, default=None,
                     help="PEM client certificate that the KMIP server authenticates the "
                          "proxy by."),
        click.option("--kmip-key-file", type=file_type, default=None,
                     help="PEM private key of the client certificate (keep it mode 0600)."),
        click.option("--kmip-key-password-env", default=None, metavar="NAME",
                     help="Environment variable that holds the password of an encrypted "
                          "client key."),
        click.option("--kmip-key-password-file", type=file_type, default=None,
                     help="File with the password of an encrypted client key."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def kmip_init(kmi: str, *, own_server_allowed: bool, **values: Any) -> KmipInit | None:
    """Build the KMIP part of the init options from the ``--kmip-*`` values.

    Returns None for another ``--kmi``, which takes no ``--kmip-*`` option.
    With ``own_server_allowed`` and no server named, the result requests a
    PyKMIP server of its own.
    """
    given = {name: value for name, value in values.items() if value is not None}
    if kmi != "kmip":
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in sorted(given))
            raise click.UsageError(f"{names}: valid only with --kmi kmip")
        return None
    if own_server_allowed and not given:
        return KmipInit(own_server=True)
    if values.get("kmip_host") is None:
        raise click.UsageError(
            "--kmi kmip needs --kmip-host"
            + ("" if not own_server_allowed else
               "; leave out every --kmip-* option to run a PyKMIP server of its own")
        )
    missing = [f"--kmip-{name}" for name in ("ca-file", "cert-file", "key-file")
               if values.get("kmip_" + name.replace("-", "_")) is None]
    if missing:
        raise click.UsageError(f"--kmi kmip needs {', '.join(missing)}")
    password_env = values.get("kmip_key_password_env")
    if password_env is not None and not re.fullmatch(_ENVIRONMENT_NAME, password_env):
        raise click.BadParameter(f"{password_env!r} is not an environment variable name",
                                 param_hint="--kmip-key-password-env")

    def absolute(name: str) -> Path | None:
        path = values.get(name)
        return path.absolute() if path is not None else None

    return KmipInit(
        host=values["kmip_host"],
        port=values.get("kmip_port") or 5696,
        server_name=values.get("kmip_server_name"),
        ca_file=absolute("kmip_ca_file"),
        cert_file=absolute("kmip_cert_file"),
        key_file=absolute("kmip_key_file"),
        key_password_env=password_env,
        key_password_file=absolute("kmip_key_password_file"),
    )


def _split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the backend options of a command into the ``--pkcs11-*`` and ``--kmip-*`` ones."""
    kmip = {name: value for name, value in values.items() if name.startswith("kmip_")}
    pkcs11 = {name: value for name, value in values.items() if not name.startswith("kmip_")}
    return pkcs11, kmip


@click.group()
def xki() -> None:
    """Run and configure the XKI proxy: the XKS proxy API v1 in front of your key manager."""


@xki.command()
@click.option("--dir", "directory", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to create the configuration in; must not hold one already.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the XKS listener binds to.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the XKS listener.")
@click.option("--admin-port", default=8444, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the admin listener (always bound to 127.0.0.1).")
@click.option("--region", default="cn-hangzhou", show_default=True,
              help="Region in the SigV4 credential scope the KMS signs with.")
@click.option("--path-prefix", default="", show_default=True,
              help="URI path prefix of the key store, such as /keystores/team-a.")
@click.option("--key-id", default=None, help="ID of the first key (default: a generated UUID).")
@click.option("--hostname", "hostnames", multiple=True,
              help="Extra DNS name or IP address for the server certificate (repeatable).")
@click.option("--kmi", type=click.Choice(KMI_CHOICES), default="file", show_default=True,
              help="Key manager: a new file keystore, an existing PKCS#11 token named by "
                   "the --pkcs11-* options, or a KMIP server named by the --kmip-* options.")
@pkcs11_options
@kmip_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def init(directory: Path, host: str, port: int, admin_port: int, region: str, path_prefix: str,
         key_id: str | None, hostnames: tuple[str, ...], kmi: str, output: str,
         **backend_values: Any) -> None:
    """Write a working configuration: CA and server certificate, a key manager with one key,
    a SigV4 credential, and the proxy configuration file a KMS needs.

    With --kmi pkcs11 the token must exist and its PIN must be readable now,
    because init logs in, runs the token's start-up checks and creates the
    first key there. With --kmi kmip the KMIP server must be reachable now,
    for the same reason.
    """
    from hyok.common.ids import validate_key_id
    from hyok.xki.bootstrap import InitOptions, initialise

    if key_id is not None:
        validate_key_id(key_id)
    try:
        KeyStoreSettings.model_validate({"name": "default", "path_prefix": path_prefix,
                                         "backend": "local", "credentials_file": "x"})
    except pydantic.ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise click.BadParameter(reason, param_hint="--path-prefix") from None
    pkcs11_values, kmip_values = _split_values(backend_values)
    pkcs11 = pkcs11_init(kmi, own_token_allowed=False, **pkcs11_values)
    kmip = kmip_init(kmi, own_server_allowed=False, **kmip_values)
    result = initialise(InitOptions(
        directory=directory, host=host, port=port, admin_port=admin_port, region=region,
        path_prefix=path_prefix, key_id=key_id, hostnames=hostnames, pkcs11=pkcs11, kmip=kmip,
    ))
    document = json.loads(result.proxy_configuration_path.read_text())
    if output == "json":
        click.echo(json.dumps({
            "config": str(result.config_path),
            "endpoint": result.endpoint,
            "keyId": result.key_id,
            "caFile": str(result.ca_file),
            "proxyConfiguration": document,
        }, indent=2))
        return
    click.echo(f"Wrote {result.config_path}")
    click.echo(f"XKS endpoint:   {result.endpoint}  (CA certificate: {result.ca_file})")
    click.echo(f"URI path:       {result.uri_path}")
    click.echo(f"First key ID:   {result.key_id}")
    click.echo(f"Proxy configuration for the KMS ({result.proxy_configuration_path}):")
    click.echo(json.dumps(document, indent=2))
    click.echo("This configuration contains the secret access key: keep the file and this "
               "output private.")
    click.echo(f"Start the proxy with: hyok xki serve --config {result.config_path}")


@xki.command()
@config_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve(data_dir: Path | None, config: Path | None, log_level: str) -> None:
    """Run the proxy until interrupted. SIGHUP or a changed credential file reloads credentials."""
    from hyok.xki.server import serve as run

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(resolve_config_path(data_dir, config))


@xki.group()
def credentials() -> None:
    """List, add and remove the SigV4 credentials of a key store."""


def _credential_file(
    settings: ProxySettings, store: str | None
) -> tuple[KeyStoreSettings, CredentialFile]:
    from hyok.common.sealed import Sealer

    if store is None:
        if len(settings.keystores) != 1:
            names = ", ".join(s.name for s in settings.keystores)
            raise click.UsageError(f"several key stores are configured ({names}); pass --store")
        keystore = settings.keystores[0]
    else:
        keystore = settings.keystore(store)
    passphrase = read_secret(env=settings.secrets.env, file=settings.secrets.file,
                             what="secrets passphrase")
    return keystore, CredentialFile(keystore.credentials_file, Sealer(passphrase))


_store_option = click.option(
    "--store", default=None, help="Key store name (default: the only one)."
)


@credentials.command("list")
@config_options
@_store_option
@output_option
def list_credentials(data_dir: Path | None, config: Path | None, store: str | None,
                     output: OutputFormat) -> None:
    """Show access key IDs and their age (never the secrets)."""
    settings = load_cli_settings(data_dir, config)
    keystore, credential_file = _credential_file(settings, store)
    now = datetime.now(UTC)
    rows = [
        {"accessKeyId": item.access_key_id, "createdAt": item.created_at.isoformat(),
         "ageDays": round((now - item.created_at).total_seconds() / 86400, 1)}
        for item in credential_file.load()
    ]
    if output is OutputFormat.JSON:
        click.echo(json.dumps({"keyStore": keystore.name, "credentials": rows}, indent=2))
        return
    for row in rows:
        click.echo(f"{row['accessKeyId']}  created {row['createdAt']}  ({row['ageDays']} days)")


@credentials.command("add")
@config_options
@_store_option
@click.option("--write", "write_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="File for the proxy configuration JSON (mode 0600). Default: "
                   "xks-proxy-configuration.json beside the configuration file for the "
                   "'default' key store, xks-proxy-configuration-<store>.json for others.")
def add_credential(data_dir: Path | None, config: Path | None, store: str | None,
                   write_path: Path | None) -> None:
    """Add a new credential and write the proxy configuration that carries it.

    The running proxy accepts it within a second. Give the file to the KMS,
    then remove the old credential.
    """
    from hyok.common.fileio import atomic_write
    from hyok.xki.bootstrap import PROXY_CONFIGURATION_NAME
    from hyok.xki.credentials import generate_credential, proxy_configuration

    settings = load_cli_settings(data_dir, config)
    keystore, credential_file = _credential_file(settings, store)
    if write_path is None:
        assert settings.source is not None
        name = PROXY_CONFIGURATION_NAME
        if keystore.name != "default":
            name = name.replace(".json", f"-{keystore.name}.json")
        write_path = settings.source.parent / name
    item = generate_credential()
    credential_file.add(item)
    text = json.dumps(proxy_configuration(keystore.uri_path, item.credential), indent=2) + "\n"
    atomic_write(write_path, text.encode("utf-8"), mode=0o600)
    click.echo(f"Added access key ID {item.access_key_id} to key store {keystore.name}.")
    click.echo(f"Wrote the proxy configuration with its secret to {write_path} (mode 0600).")


@credentials.command("remove")
@config_options
@_store_option
@click.argument("access_key_id")
def remove_credential(data_dir: Path | None, config: Path | None, store: str | None,
                      access_key_id: str) -> None:
    """Remove a credential; requests signed with it fail from the next second on."""
    settings = load_cli_settings(data_dir, config)
    _, credential_file = _credential_file(settings, store)
    remaining = credential_file.remove(access_key_id)
    click.echo(f"Removed {access_key_id}; {len(remaining)} credential(s) remain.")
