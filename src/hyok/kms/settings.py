"""Typed KMS configuration, read from a TOML file and checked before use.

Relative paths in the file are resolved against the file's own directory, and
so is the file path of a ``sqlite:///`` database URL, so a directory written
by ``hyok kms init`` can be moved as a whole.

The root key that encrypts the secrets in the database (AccessKey secrets,
XKI proxy credentials) is never written in this file: ``[root_key]`` names a
file of mode 0600 or an environment variable that contains it.
:func:`load_root_key` reads it.

Example::

    settings = load_settings(Path("/etc/hyok/kms.toml"))
    root_key = load_root_key(settings)
    database = open_database(settings.database.resolved_url, ...)
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from hyok.common.errors import ConfigError, HyokError
from hyok.kms.domain._checks import check_region
from hyok.kms.store.secretbox import ROOT_KEY_LENGTH

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_PORT",
    "DEFAULT_REGION",
    "ROOT_KEY_ENV",
    "ConsoleSettings",
    "DatabaseSettings",
    "HealthSettings",
    "KmsSettings",
    "ProxySettings",
    "RootKeySettings",
    "ServerSettings",
    "decode_root_key",
    "load_root_key",
    "load_settings",
]

CONFIG_NAME: Final = "kms.toml"
"""Name of the configuration file that ``hyok kms init`` writes in its directory."""
DEFAULT_PORT: Final = 9443
"""Default KMS port: apart from the proxy's defaults, 8443 (XKS) and 8444 (admin)."""
DEFAULT_REGION: Final = "cn-hangzhou"
ROOT_KEY_ENV: Final = "HYOK_KMS_ROOT_KEY"
"""The environment variable that ``hyok kms init`` names as the root key's first source."""

_VPC_ENDPOINT_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_ENVIRONMENT_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEX_ROOT_KEY_LENGTH: Final = 2 * ROOT_KEY_LENGTH


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    """The API listener.

    TLS is required: ``cert_file`` and ``key_file`` are both set, unless
    ``insecure_plain_http`` is true and neither is set. Plain HTTP exposes
    every parameter, plaintext included, so it is meant only for a KMS
    behind a TLS-terminating proxy on the same host.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    # Processes that serve requests; each opens its own database pool.
    workers: int = Field(default=1, ge=1, le=64)
    # Threads per process for blocking work: store transactions and signature checks.
    threads: int = Field(default=16, ge=1, le=256)
    cert_file: Path | None = None
    key_file: Path | None = None
    min_tls_version: Literal["1.2", "1.3"] = "1.2"
    insecure_plain_http: bool = False
    # Bound of one request body. Only Recipient travels in the body; every
    # other parameter is in the query string.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Where signature nonces are kept for replay checks: "database" works
    # across several processes and nodes, "memory" only within one process.
    nonce_cache: Literal["database", "memory"] = "database"
    # With nonce_cache = "memory": how many nonces the replay window may hold
    # (about 90 bytes each). At the bound, new requests get Throttling until
    # nonces expire; the default sustains about 4,400 signed requests a second.
    nonce_cache_entries: int = Field(default=4_000_000, ge=1_000, le=100_000_000)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        has_cert, has_key = self.cert_file is not None, self.key_file is not None
        if has_cert != has_key:
            missing = "key_file" if has_cert else "cert_file"
            raise ValueError(
                f"{missing} is missing: TLS needs both cert_file (PEM certificate) and "
                "key_file (PEM private key)"
            )
        if has_cert and self.insecure_plain_http:
            raise ValueError(
                "insecure_plain_http = true contradicts cert_file and key_file: remove "
                "insecure_plain_http to serve HTTPS"
            )
        if not has_cert and not self.insecure_plain_http:
            raise ValueError(
                "cert_file and key_file are missing: set both to serve HTTPS (hyok kms init "
                "writes a local CA and a server certificate), or set insecure_plain_http = "
                "true to serve plain HTTP behind a TLS-terminating proxy"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the listener serves HTTPS."""
        return self.cert_file is not None


class RootKeySettings(_Model):
    """Source of the 32-byte root key: an environment variable, a file, or both (the variable wins).

    The key is written as 64 hex digits or as Base64; a file may also
    contain the 32 raw bytes. The file must not be readable or writable by
    the group or others (mode 0600 or 0400).
    """

    env: str | None = None
    file: Path | None = None

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENVIRONMENT_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an environment variable name: use letters, digits and '_', "
                f"such as {ROOT_KEY_ENV!r}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            raise ValueError(
                "the root key must not be written in the configuration: set root_key = "
                f'{{ env = "{ROOT_KEY_ENV}" }} or root_key = {{ file = "secrets/root-key" }}'
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> RootKeySettings:
        if not self.env and self.file is None:
            raise ValueError(
                f"set 'env' (an environment variable name, such as {ROOT_KEY_ENV!r}) or "
                "'file' (the path of a file of mode 0600)"
            )
        return self


class DatabaseSettings(_Model):
    """The KMS database: a SQLite file (one node) or PostgreSQL (several nodes).

    Give a PostgreSQL password through ``PGPASSWORD`` or a ``.pgpass`` file
    rather than in the URL, so that it stays out of this file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # None means sqlite:///kms.db beside the configuration file.
    url: str | None = None
    # PostgreSQL only: the schema that contains the tables.
    db_schema: str | None = Field(default=None, alias="schema")
    # How long a statement waits for a lock (SQLite busy timeout, PostgreSQL lock_timeout).
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    pool_size: int = Field(default=5, ge=1, le=200)
    max_overflow: int = Field(default=10, ge=0, le=200)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError(
                "not a database URL: write sqlite:///path/to/kms.db or "
                "postgresql://user@host:5432/database"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"the URL names {backend!r}: use sqlite:///path/to/kms.db or "
                "postgresql://user@host:5432/database"
            )
        return value

    @property
    def resolved_url(self) -> str:
        """The URL to open, which :func:`load_settings` fills in and makes absolute for SQLite."""
        if self.url is None:
            raise ConfigError("database.url is not resolved: load settings with load_settings")
        return self.url


class ProxySettings(_Model):
    """How the KMS reaches XKI proxies."""

    # PEM CA certificates that proxy certificates must chain to, in place of
    # the system's trusted roots.
    ca_file: Path | None = None
    # Budget of one proxy call; XKS proxies answer within 250 ms.
    timeout_ms: int = Field(default=250, ge=10, le=60_000)
    max_connections: int = Field(default=64, ge=1, le=10_000)
    # VPC endpoint service name -> private "host:port" that the KMS dials for it.
    vpc_endpoints: dict[str, str] = Field(default_factory=dict)

    @field_validator("vpc_endpoints")
    @classmethod
    def _check_vpc_endpoints(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not _VPC_ENDPOINT_SERVICE.fullmatch(name):
                raise ValueError(
                    f"invalid VPC endpoint service name {name!r}: use up to 255 letters, "
                    "digits, '.', '_' and '-', starting with a letter or digit"
                )
            _check_host_port(name, address)
        return value


def _check_host_port(name: str, address: str) -> None:
    host, separator, port = address.rpartition(":")
    host = host.strip("[]")
    valid_port = port.isdigit() and 0 < int(port) <= 65535
    if not separator or not host or not valid_port or any(c.isspace() for c in host):
        raise ValueError(
            f"the address {address!r} of VPC endpoint service {name!r} is invalid: write "
            "host:port, such as '10.0.0.5:8443' or '[fd00::5]:8443'"
        )


class HealthSettings(_Model):
    """The background health checks of every instance's XKI proxy."""

    interval_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)


class AuditSettings(_Model):
    """Where the KMS appends its hash-chained audit trail (see hyok.kms.audit)."""

    # Relative to the configuration file's directory.
    path: Path = Path("audit/kms-audit.jsonl")


class ConsoleSettings(_Model):
    """The web console at ``/console``: sessions and the limit of failed sign-ins."""

    enabled: bool = True
    # A session ends after this long without a request.
    idle_timeout_seconds: int = Field(default=15 * 60, ge=1, le=24 * 3600)
    # A session ends this long after sign-in, however active.
    session_lifetime_seconds: int = Field(default=12 * 3600, ge=60, le=7 * 24 * 3600)
    # Failed sign-ins allowed per source IP address, and per sign-in name, in the window.
    max_failed_sign_ins: int = Field(default=5, ge=1, le=1000)
    failed_sign_in_window_seconds: int = Field(default=5 * 60, ge=1, le=24 * 3600)


class KmsSettings(_Model):
    """The whole KMS configuration."""

    region: str = DEFAULT_REGION
    server: ServerSettings
    root_key: RootKeySettings
    database: DatabaseSettings = DatabaseSettings()
    proxy: ProxySettings = ProxySettings()
    health: HealthSettings = HealthSettings()
    audit: AuditSettings = AuditSettings()
    console: ConsoleSettings = ConsoleSettings()
    # The file these settings came from; set by load_settings.
    source: Path | None = None

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        try:
            return check_region(value)
        except HyokError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _cross_check(self) -> KmsSettings:
        if self.server.workers > 1 and self.server.nonce_cache == "memory":
            raise ValueError(
                "server.nonce_cache = 'memory' keeps nonces per process, so a replayed "
                "request would pass in another worker: use nonce_cache = 'database' with "
                "workers > 1"
            )
        sqlite = self.database.url is None or self.database.url.startswith("sqlite")
        if not sqlite and self.server.nonce_cache == "memory":
            raise ValueError(
                "server.nonce_cache = 'memory' keeps nonces in this process only, and a "
                "PostgreSQL database is for several KMS nodes, where a replayed request would "
                "pass on another node: use nonce_cache = 'database' with PostgreSQL"
            )
        if sqlite and self.database.db_schema is not None:
            raise ValueError(
                "database.schema applies only to PostgreSQL: remove it, or set database.url "
                "to a postgresql:// URL"
            )
        return self


# Loading.

_MESSAGES: Final = {
    "missing": "is missing: add it",
    "extra_forbidden": "is not a known setting: check its spelling and its [table]",
}


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = _MESSAGES.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    return base / path


def _resolve_database_url(url: str | None, base: Path) -> str:
    if url is None:
        return f"sqlite:///{base / 'kms.db'}"
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    database = Path(parsed.database)
    if parsed.database.startswith("file:") or database.is_absolute():
        return url
    return parsed.set(database=str(base / database)).render_as_string(hide_password=False)


def _absolute(settings: KmsSettings, base: Path, source: Path) -> KmsSettings:
    server = settings.server.model_copy(
        update={
            "cert_file": _resolve(settings.server.cert_file, base),
            "key_file": _resolve(settings.server.key_file, base),
        }
    )
    root_key = settings.root_key.model_copy(update={"file": _resolve(settings.root_key.file, base)})
    database = settings.database.model_copy(
        update={"url": _resolve_database_url(settings.database.url, base)}
    )
    proxy = settings.proxy.model_copy(update={"ca_file": _resolve(settings.proxy.ca_file, base)})
    audit = settings.audit.model_copy(update={"path": _resolve(settings.audit.path, base)})
    return settings.model_copy(
        update={
            "server": server,
            "root_key": root_key,
            "database": database,
            "proxy": proxy,
            "audit": audit,
            "source": source,
        }
    )


def load_settings(path: Path) -> KmsSettings:
    """Read and check a KMS configuration file; raise ConfigError naming each bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"KMS configuration file {path} does not exist: pass --config FILE or --data-dir "
            "DIR of an existing configuration, or create one with 'hyok kms init --dir DIR'"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"KMS configuration {path} is a directory: pass the kms.toml file inside it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read KMS configuration file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"KMS configuration file {path} is not valid TOML: {exc}") from None
    try:
        settings = KmsSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid KMS configuration in {path}: {_describe(exc)}") from None
    resolved = path.resolve()
    return _absolute(settings, resolved.parent, resolved)


# The root key.


def decode_root_key(data: bytes, source: str) -> bytes:
    """Decode a root key written as 64 hex digits, as Base64, or as 32 raw bytes.

    Surrounding whitespace of the text forms is ignored. ``source`` names
    where the key came from in the ConfigError, which never shows the key.
    """
    if len(data) == ROOT_KEY_LENGTH:
        return data
    text = data.strip()
    if len(text) == _HEX_ROOT_KEY_LENGTH:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == ROOT_KEY_LENGTH:
        return decoded
    raise ConfigError(
        f"the root key in {source} is not {ROOT_KEY_LENGTH} bytes written as 64 hex digits "
        "or as Base64: generate one with \"python3 -c 'import secrets; "
        "print(secrets.token_hex(32))'\""
    )


def _check_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(
            f"the root key file {path} does not exist: restore it from your backup, because "
            "the secrets in the database can be decrypted only with it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the root key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"the root key file {path} has mode {mode:04o}, which lets other users read or "
            f"change it: run chmod 600 {path}"
        )


def load_root_key(settings: KmsSettings) -> bytes:
    """Read the root key from its environment variable or, failing that, its file.

    Raises ConfigError when the variable and the file are both missing or
    empty, when the file's mode lets the group or others in, or when the
    value is not a 32-byte key.
    """
    source = settings.root_key
    if source.env:
        value = os.environ.get(source.env)
        if value:
            return decode_root_key(value.encode("utf-8"), f"environment variable {source.env}")
        if source.file is None:
            raise ConfigError(
                f"the root key is missing: set the environment variable {source.env} to 64 hex "
                "digits, or configure root_key.file"
            )
    assert source.file is not None  # RootKeySettings requires env or file.
    _check_private(source.file)
    try:
        data = source.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the root key file {source.file}: {exc.strerror}") from None
    return decode_root_key(data, f"file {source.file}")
