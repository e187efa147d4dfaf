"""``hyok xki init``: write a working proxy configuration and everything it names."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from hyok.common.errors import ConfigError
from hyok.common.fileio import atomic_write
from hyok.common.sealed import Sealer
from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate
from hyok.xki.backend_init import (
    KmipInit,
    Pkcs11Init,
    backend_table,
    create_first_key,
    prepare_own_token,
)
from hyok.xki.credentials import CredentialFile, StoredCredential, generate_credential
from hyok.xki.credentials import proxy_configuration as configuration_document

__all__ = ["InitOptions", "InitResult", "initialise"]

CONFIG_NAME = "xki.toml"
PROXY_CONFIGURATION_NAME = "xks-proxy-configuration.json"


@dataclass(frozen=True)
class InitOptions:
    directory: Path
    host: str = "127.0.0.1"
    port: int = 8443
    admin_port: int = 8444
    region: str = "cn-hangzhou"
    path_prefix: str = ""
    key_id: str | None = None
    hostnames: tuple[str, ...] = ()
    kdf_cost: int = 17
    # A PKCS#11 token instead of the file keystore.
    pkcs11: Pkcs11Init | None = None
    # A KMIP server instead of the file keystore.
    kmip: KmipInit | None = None


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    proxy_configuration_path: Path
    endpoint: str
    uri_path: str
    key_id: str
    credential: StoredCredential
    ca_file: Path


def _random_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def _write_private(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"), mode=0o600)


def _toml_string(value: str) -> str:
    return json.dumps(value)


def _config_text(options: InitOptions, backend_extra: str) -> str:
    backend_name, backend = backend_table(options.pkcs11, options.kdf_cost, options.kmip)
    return f"""\
# hyok XKI proxy configuration, written by 'hyok xki init'.
# Relative paths are resolved against this file's directory.

# Passphrase that seals the credential files.
secrets = {{ env = "HYOK_XKI_PASSPHRASE", file = "secrets/passphrase" }}

[server]
host = {_toml_string(options.host)}
port = {options.port}
cert_file = "tls/server.pem"
key_file = "tls/server-key.pem"
min_tls_version = "1.2"
# Backend deadline per request, below the 250 ms budget of the KMS.
request_deadline_ms = 200
# For mutual TLS, name the CA of client certificates and the allowed subjects:
# client_ca_file = "tls/client-ca.pem"
# client_subjects = ["CN=kms.example.internal"]

[admin]
host = "127.0.0.1"
port = {options.admin_port}
token = {{ env = "HYOK_XKI_ADMIN_TOKEN", file = "secrets/admin-token" }}
ca_file = "tls/ca.pem"

[audit]
file = "logs/audit.log"

{backend}{backend_extra}
[[keystores]]
name = "default"
path_prefix = {_toml_string(options.path_prefix)}
region = {_toml_string(options.region)}
backend = {_toml_string(backend_name)}
keys = ["*"]
credentials_file = "credentials/default.sealed"
rate_limit = 10000
# cedar_policy_file = "policies/default.cedar"
"""


def initialise(options: InitOptions) -> InitResult:
    """Create the data directory; refuse to touch one that already has a configuration.

    When a step fails, everything this call created is removed again.
    """
    directory = options.directory
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        raise ConfigError(
            f"{config_path} already exists; choose an empty directory or remove the old one"
        )
    existed = directory.exists()
    before = set(directory.rglob("*")) if existed else set()
    try:
        return _write_all(options)
    except BaseException:
        if not existed:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            created = sorted(set(directory.rglob("*")) - before, reverse=True)
            for path in created:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def _write_all(options: InitOptions) -> InitResult:
    directory = options.directory
    config_path = directory / CONFIG_NAME
    for sub in ("", "secrets", "tls", "credentials", "logs"):
        (directory / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    passphrase = Secret(_random_secret())
    _write_private(directory / "secrets" / "passphrase", passphrase.reveal() + "\n")
    _write_private(directory / "secrets" / "admin-token", _random_secret() + "\n")

    hostnames = ["localhost", "127.0.0.1", "::1", *options.hostnames]
    # The machine's own name goes in only when it is a valid DNS name.
    own_name = socket.gethostname()
    if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", own_name):
        hostnames.append(own_name)
    wildcard = options.host in ("0.0.0.0", "::")  # noqa: S104 - comparing, not binding
    if not wildcard and options.host not in hostnames:
        hostnames.append(options.host)
    ca = create_ca("hyok local CA", days=3650)
    ca.write(directory / "tls" / "ca.pem", directory / "tls" / "ca-key.pem")
    server = issue_server_certificate(ca, hostnames=list(dict.fromkeys(hostnames)), days=825)
    server.write(directory / "tls" / "server.pem", directory / "tls" / "server-key.pem")

    credential = generate_credential()
    sealer = Sealer(passphrase, kdf_cost=options.kdf_cost)
    CredentialFile(directory / "credentials" / "default.sealed", sealer).create([credential])

    backend_extra = prepare_own_token(directory, options.pkcs11)
    _write_private(config_path, _config_text(options, backend_extra))
    key_id = create_first_key(config_path, passphrase, options.key_id, options.kdf_cost)
    uri_path = options.path_prefix.rstrip("/") + "/kms/xks/v1"
    document = configuration_document(uri_path, credential.credential)
    proxy_configuration_path = directory / PROXY_CONFIGURATION_NAME
    _write_private(proxy_configuration_path, json.dumps(document, indent=2) + "\n")

    shown_host = "localhost" if wildcard or options.host == "127.0.0.1" else options.host
    os.chmod(directory, 0o700)
    return InitResult(
        config_path=config_path,
        proxy_configuration_path=proxy_configuration_path,
        endpoint=f"https://{shown_host}:{options.port}",
        uri_path=uri_path,
        key_id=key_id,
        credential=credential,
        ca_file=directory / "tls" / "ca.pem",
    )
