"""``hyok up``: run a key manager, an XKI proxy and a KMS together on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from hyok.cli._common import DATA_DIR_ENV, DEFAULT_DATA_DIR
from hyok.cli.xki import KMI_CHOICES, kmip_init, kmip_options, pkcs11_init, pkcs11_options
from hyok.up import (
    DEFAULT_KMS_PORT,
    DEFAULT_XKI_ADMIN_PORT,
    DEFAULT_XKI_PORT,
    UpOptions,
    run_up,
)

__all__ = ["up"]


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=(
        "Directory for every file of the stack, created on the first run and reused "
        f"later. Default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR}."
    ),
)
@click.option(
    "--kms-port",
    type=click.IntRange(1, 65535),
    default=None,
    help=(
        f"Port of the KMS API on 127.0.0.1. Default: the configured one, {DEFAULT_KMS_PORT} "
        "at first."
    ),
)
@click.option(
    "--xki-port",
    type=click.IntRange(1, 65535),
    default=None,
    help=f"Port of the XKI proxy. Default: the configured one, {DEFAULT_XKI_PORT} at first.",
)
@click.option(
    "--xki-admin-port",
    type=click.IntRange(1, 65535),
    default=None,
    help=(
        "Port of the proxy's admin API. Default: the configured one, "
        f"{DEFAULT_XKI_ADMIN_PORT} at first."
    ),
)
@click.option(
    "--region",
    default=None,
    help="Region of the KMS and the proxy, set on the first run only. Default: cn-hangzhou.",
)
@click.option(
    "--kmi",
    type=click.Choice(KMI_CHOICES),
    default=None,
    help=(
        "Key manager, set on the first run only: a file keystore (the default), a "
        "PKCS#11 token, or a KMIP server. With pkcs11 and no --pkcs11-token-label or "
        "--pkcs11-slot, hyok initialises a SoftHSMv2 token of its own in DIR/softhsm. "
        "With kmip and no --kmip-* option, hyok runs a PyKMIP server of its own from "
        "DIR/kmip-server."
    ),
)
@pkcs11_options
@kmip_options
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level of both servers, whose logs go to DIR/logs.",
)
def up(
    data_dir: Path | None,
    kms_port: int | None,
    xki_port: int | None,
    xki_admin_port: int | None,
    region: str | None,
    kmi: str | None,
    log_level: str,
    **backend_values: Any,
) -> None:
    """Run a key manager, an XKI proxy and a KMS on loopback over TLS until Ctrl-C.

    The first run creates everything in the data directory. The proxy gets a
    local CA, a key manager with one key and a SigV4 credential. The key
    manager is a file keystore, or with --kmi pkcs11 a PKCS#11 token: the one
    that the --pkcs11-* options name, or else a SoftHSMv2 token that hyok
    initialises in DIR/softhsm, with random PINs in DIR/secrets (mode 0600). With
    --kmi kmip it is a KMIP server: the one that the --kmip-* options name, or
    else a PyKMIP server that hyok runs from DIR/kmip-server and stops with the
    stack. The KMS gets its
    own CA, root key and SQLite database, an account with an AccessKey, and an
    external key management instance bound to the proxy and connected. Later
    runs reuse it. The connection details for the SDK, AccessKey secret
    included, go to hyok-up.json (mode 0600) in the data directory, with
    console_password: the password of the account root on the web console at
    https://127.0.0.1:<kms-port>/console, which is never printed.
    """
    if data_dir is None:
        from_env = os.environ.get(DATA_DIR_ENV)
        data_dir = Path(from_env) if from_env else DEFAULT_DATA_DIR
    kmip_values = {k: v for k, v in backend_values.items() if k.startswith("kmip_")}
    pkcs11_values = {k: v for k, v in backend_values.items() if not k.startswith("kmip_")}
    pkcs11 = pkcs11_init(kmi or "file", own_token_allowed=True, **pkcs11_values)
    kmip = kmip_init(kmi or "file", own_server_allowed=True, **kmip_values)
    options = UpOptions(
        data_dir=data_dir,
        kms_port=kms_port,
        xki_port=xki_port,
        xki_admin_port=xki_admin_port,
        region=region,
        log_level=log_level,
        kmi=kmi,
        pkcs11=pkcs11,
        kmip=kmip,
    )
    status = run_up(options, click.echo)
    if status:
        # SystemExit rather than click's Exit, because ``main`` runs click in
        # non-standalone mode, where Exit would become exit status 0.
        sys.exit(status)
