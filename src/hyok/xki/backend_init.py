"""The key-manager part of ``hyok xki init``: the ``[backends]`` table and the first key.

``hyok xki init`` writes a file keystore by default. With
:class:`Pkcs11Init` it configures a PKCS#11 token instead, and with
:class:`KmipInit` a KMIP server; it checks that the token or server works by
opening it as the proxy will, and creates the first key there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hyok.common.errors import ConfigError
from hyok.common.secrets import Secret
from hyok.kmi.base import KeyManager
from hyok.kmi.file import FileKeyManager
from hyok.kmi.pkcs11.softhsm import (
    SOFTHSM_CONF_VARIABLE,
    SOFTHSM_MODULE,
    create_softhsm_token,
)

__all__ = [
    "FILE_BACKEND_NAME",
    "KMIP_BACKEND_NAME",
    "OWN_KMIP_DIRECTORY",
    "OWN_SOFTHSM_LABEL",
    "PKCS11_BACKEND_NAME",
    "KmipInit",
    "Pkcs11Init",
    "backend_table",
    "create_first_key",
]

FILE_BACKEND_NAME: Final = "local"
PKCS11_BACKEND_NAME: Final = "hsm"
KMIP_BACKEND_NAME: Final = "kmip"
#: The directory, relative to the configuration, of the PyKMIP server that
#: ``hyok up --kmi kmip`` runs when no KMIP server is named.
OWN_KMIP_DIRECTORY: Final = "kmip-server"
#: The label of the token that ``own_softhsm_token`` creates.
OWN_SOFTHSM_LABEL: Final = "hyok"
# Paths of an own SoftHSMv2 token, relative to the configuration directory.
_OWN_SOFTHSM_DIRECTORY: Final = "softhsm"
_OWN_PIN_FILE: Final = "secrets/pkcs11-pin"
_OWN_SO_PIN_FILE: Final = "secrets/pkcs11-so-pin"


@dataclass(frozen=True)
class Pkcs11Init:
    """A PKCS#11 token for the proxy, or a SoftHSMv2 token that init creates.

    With ``own_softhsm_token``, init initialises a SoftHSMv2 token in
    ``softhsm/`` of the configuration directory, with random PINs in
    ``secrets/pkcs11-pin`` and ``secrets/pkcs11-so-pin`` (mode 0600), and the
    other fields except ``module`` must stay unset.
    """

    module: Path = SOFTHSM_MODULE
    token_label: str | None = None
    slot: int | None = None
    pin_env: str | None = None
    pin_file: Path | None = None
    own_softhsm_token: bool = False

    def check(self) -> None:
        """Raise ConfigError naming the option that is missing or contradicts another."""
        if self.own_softhsm_token:
            token_options = [self.token_label, self.slot, self.pin_env, self.pin_file]
            if any(item is not None for item in token_options):
                raise ConfigError(
                    "a SoftHSMv2 token of its own takes no token label, slot or PIN source: "
                    "leave them out, or name an existing token without the own token"
                )
            return
        if (self.token_label is None) == (self.slot is None):
            raise ConfigError("name the PKCS#11 token by exactly one of token label and slot")
        if self.pin_env is None and self.pin_file is None:
            raise ConfigError(
                "the PKCS#11 user PIN has no source: give an environment variable or a file"
            )


@dataclass(frozen=True)
class KmipInit:
    """A KMIP server for the proxy, named by address, CA and client certificate.

    With ``own_server``, the backend uses the PyKMIP server whose files
    :func:`hyok.kmi.kmip.pykmip_server.prepare_server` wrote in
    ``kmip-server/`` of the configuration directory, on ``port``; the server
    must be running while init creates the first key.
    """

    host: str | None = None
    port: int = 5696
    server_name: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password_env: str | None = None
    key_password_file: Path | None = None
    own_server: bool = False

    def check(self) -> None:
        """Raise ConfigError naming the option that is missing."""
        if self.own_server:
            return
        missing = [
            name
            for name, value in (
                ("host", self.host),
                ("CA file", self.ca_file),
                ("client certificate file", self.cert_file),
                ("client key file", self.key_file),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(f"the KMIP server needs its {', '.join(missing)}")

    def table(self) -> str:
        """Return the ``[backends.kmip]`` table for xki.toml."""
        self.check()
        lines = [f"[backends.{KMIP_BACKEND_NAME}]", 'type = "kmip"']
        if self.own_server:
            lines += [
                "# The PyKMIP server that 'hyok up' runs; its files are in kmip-server/.",
                'host = "127.0.0.1"',
                f"port = {self.port}",
                f'ca_file = "{OWN_KMIP_DIRECTORY}/ca.pem"',
                f'cert_file = "{OWN_KMIP_DIRECTORY}/client.pem"',
                f'key_file = "{OWN_KMIP_DIRECTORY}/client-key.pem"',
            ]
            return "\n".join(lines) + "\n"
        assert self.host is not None
        lines += [f"host = {_toml_string(self.host)}", f"port = {self.port}"]
        if self.server_name is not None:
            lines.append(f"server_name = {_toml_string(self.server_name)}")
        for name, path in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                           ("key_file", self.key_file)):
            lines.append(f"{name} = {_toml_string(str(path))}")
        sources = []
        if self.key_password_env is not None:
            sources.append(f"env = {_toml_string(self.key_password_env)}")
        if self.key_password_file is not None:
            sources.append(f"file = {_toml_string(str(self.key_password_file))}")
        if sources:
            lines.append(f"key_password = {{ {', '.join(sources)} }}")
        return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    return json.dumps(value)


def backend_table(
    pkcs11: Pkcs11Init | None, kdf_cost: int, kmip: KmipInit | None = None
) -> tuple[str, str]:
    """Return the backend's name and its ``[backends.NAME]`` table for xki.toml."""
    if kmip is not None:
        if pkcs11 is not None:
            raise ConfigError("choose one key manager: a PKCS#11 token or a KMIP server")
        return KMIP_BACKEND_NAME, kmip.table()
    if pkcs11 is None:
        return FILE_BACKEND_NAME, f"""\
[backends.{FILE_BACKEND_NAME}]
type = "file"
path = "keystore.hyok"
passphrase = {{ env = "HYOK_KEYSTORE_PASSPHRASE", file = "secrets/passphrase" }}
kdf_cost = {kdf_cost}
"""
    pkcs11.check()
    lines = [
        f"[backends.{PKCS11_BACKEND_NAME}]",
        'type = "pkcs11"',
        f"module = {_toml_string(str(pkcs11.module))}",
    ]
    if pkcs11.own_softhsm_token:
        lines += [
            f"pin = {{ file = {_toml_string(_OWN_PIN_FILE)} }}",
            f"tokens = [{{ label = {_toml_string(OWN_SOFTHSM_LABEL)} }}]",
            "# SoftHSMv2 runs in the proxy's process and answers in well under a millisecond,",
            "# so the proxy calls it on its event loop rather than through its thread pool.",
            "event_loop_calls = true",
            "# SoftHSMv2 reads the location of its tokens from this file. The SO PIN,",
            f"# needed only to reset the user PIN, is in {_OWN_SO_PIN_FILE}.",
        ]
    else:
        sources = []
        if pkcs11.pin_env is not None:
            sources.append(f"env = {_toml_string(pkcs11.pin_env)}")
        if pkcs11.pin_file is not None:
            sources.append(f"file = {_toml_string(str(pkcs11.pin_file))}")
        lines.append(f"pin = {{ {', '.join(sources)} }}")
        if pkcs11.token_label is not None:
            lines.append(f"tokens = [{{ label = {_toml_string(pkcs11.token_label)} }}]")
        else:
            lines.append(f"tokens = [{{ slot = {pkcs11.slot} }}]")
    return PKCS11_BACKEND_NAME, "\n".join(lines) + "\n"


def prepare_own_token(directory: Path, pkcs11: Pkcs11Init | None) -> str:
    """Create the own SoftHSMv2 token when asked; return the rest of the backend table.

    The returned text is the ``environment`` line that points SoftHSMv2 at
    the token, or an empty string.
    """
    if pkcs11 is None or not pkcs11.own_softhsm_token:
        return ""
    token = create_softhsm_token(
        directory / _OWN_SOFTHSM_DIRECTORY,
        OWN_SOFTHSM_LABEL,
        pin_file=directory / _OWN_PIN_FILE,
        so_pin_file=directory / _OWN_SO_PIN_FILE,
        module=pkcs11.module,
    )
    return f"environment = {{ {SOFTHSM_CONF_VARIABLE} = {_toml_string(str(token.conf))} }}\n"


def create_first_key(
    config_path: Path, passphrase: Secret, key_id: str | None, kdf_cost: int
) -> str:
    """Create the first key in the backend that ``config_path`` configures; return its ID.

    The file backend gets a new keystore file. A PKCS#11 backend is opened
    as the proxy opens it, with its start-up checks.
    """
    from hyok.kmi.registry import open_backend
    from hyok.xki.settings import FileBackendSettings, load_settings

    settings = load_settings(config_path)
    name = settings.keystores[0].backend
    backend_settings = settings.backends[name]
    keystore: KeyManager
    if isinstance(backend_settings, FileBackendSettings):
        keystore = FileKeyManager.create_keystore(
            backend_settings.path, passphrase, kdf_cost=kdf_cost
        )
    else:
        keystore = open_backend(name, backend_settings)
    try:
        return keystore.create_key(key_id).key_id
    finally:
        keystore.close()
