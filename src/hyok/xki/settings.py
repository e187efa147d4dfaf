"""Typed proxy configuration, read from a TOML file and checked before use.

Relative paths in the file are resolved against the file's own directory, so a
data directory written by ``hyok xki init`` can be moved as a whole.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hyok.common.errors import ConfigError

__all__ = [
    "AdminSettings",
    "AuditSettings",
    "BackendSettings",
    "FileBackendSettings",
    "KeyStoreSettings",
    "KmipBackendSettings",
    "Pkcs11BackendSettings",
    "Pkcs11TokenSettings",
    "ProxySettings",
    "SecretSource",
    "ServerSettings",
    "load_settings",
]

# XKS v1: the URI path (prefix plus /kms/xks/v1) is at most 128 characters of
# letters, digits, '/', '-' and '_'.
XKS_PATH_SUFFIX = "/kms/xks/v1"
_PREFIX = re.compile(r"(/[A-Za-z0-9_-]+)*")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(_Model):
    """Source of a secret: an environment variable, a file, or both (the variable wins)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if not self.env and self.file is None:
            raise ValueError("set 'env' (an environment variable name) or 'file' (a path)")
        return self


class ServerSettings(_Model):
    """The XKS listener."""

    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    cert_file: Path
    key_file: Path
    min_tls_version: Literal["1.2", "1.3"] = "1.2"
    # mTLS: both set, or neither.
    client_ca_file: Path | None = None
    client_subjects: list[str] = Field(default_factory=list)
    # Deadline for the backend call of one request, below the 250 ms budget of the KMS.
    request_deadline_ms: int = Field(200, ge=1, le=60_000)
    # Bound of one request body; the largest valid XKS request is about 25 KB.
    max_body_bytes: int = Field(65_536, ge=16_384, le=1_048_576)
    # Threads for blocking backend calls; unset means a count derived from the
    # backends (see hyok.xki.runtime.backend_thread_count).
    backend_threads: int | None = Field(None, ge=1, le=256)
    # How long a deep health check result is reused; XKS allows at most 60 s.
    health_cache_seconds: float = Field(10.0, ge=0.0, le=60.0)
    # The xksProxyFleetSize reported by health: how many proxy nodes serve this endpoint.
    fleet_size: int = Field(1, ge=1, le=1000)
    metrics: bool = True

    @model_validator(mode="after")
    def _mtls_pair(self) -> ServerSettings:
        if self.client_subjects and self.client_ca_file is None:
            raise ValueError("client_subjects needs client_ca_file (the CA of client certificates)")
        if self.client_ca_file is not None and not self.client_subjects:
            raise ValueError(
                "client_ca_file needs client_subjects, the allowed subject names such as "
                "'CN=kms.example.internal'"
            )
        return self


class AdminSettings(_Model):
    """The admin listener: key management in the backend, authenticated by a bearer token."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8444, ge=0, le=65535)
    token: SecretSource
    # CA certificate that local tools (``hyok kmi``) trust for this listener,
    # which serves the same certificate as the XKS listener.
    ca_file: Path | None = None


class AuditSettings(_Model):
    """Audit log destination: a file path, or "-" for standard output."""

    file: str = "-"


class FileBackendSettings(_Model):
    type: Literal["file"]
    path: Path
    passphrase: SecretSource
    # scrypt cost exponent (N = 2**cost); lower it only for tests.
    kdf_cost: int = Field(17, ge=10, le=20)


class Pkcs11TokenSettings(_Model):
    """One token of a PKCS#11 fleet, selected by its label or by its slot ID."""

    label: str | None = Field(None, min_length=1, max_length=32)
    slot: int | None = Field(None, ge=0)
    # Overrides the backend's PIN for this token.
    pin: SecretSource | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> Pkcs11TokenSettings:
        if (self.label is None) == (self.slot is None):
            raise ValueError("set exactly one of 'label' (the token label) and 'slot' (a slot ID)")
        return self


class Pkcs11BackendSettings(_Model):
    """A PKCS#11 backend: one module and one to ten tokens that hold the same keys."""

    type: Literal["pkcs11"]
    # The vendor's PKCS#11 library, such as /usr/lib/softhsm/libsofthsm2.so.
    module: Path
    # The user PIN of every token without a 'pin' of its own.
    pin: SecretSource
    tokens: list[Pkcs11TokenSettings] = Field(min_length=1, max_length=10)
    # The key attribute that holds the External Key ID: CKA_LABEL or CKA_ID.
    key_attribute: Literal["label", "id"] = "label"
    # Sessions per token.
    max_sessions: int = Field(8, ge=1, le=256)
    # Time in which one operation is retried after session or device errors,
    # below the proxy's request_deadline_ms.
    retry_deadline_ms: int = Field(180, ge=1, le=60_000)
    # Seconds during which requests avoid a token that failed.
    member_retry_seconds: float = Field(5.0, ge=0.1, le=3600.0)
    # Seconds a key's ENABLED/DISABLED state is reused before it is read from
    # the token again; a change made by another process shows after this time.
    state_cache_seconds: float = Field(1.0, ge=0.0, le=60.0)
    # Call the module from several threads at once. Only for modules that are
    # thread-safe even when initialised without locking (not SoftHSMv2).
    parallel_calls: bool = False
    # Call the module on the proxy's event loop instead of in its thread pool.
    # Only for a module in the proxy's process that answers in well under a
    # millisecond, such as SoftHSMv2: while a call runs, the worker serves no
    # other request, and the request deadline cannot interrupt the call.
    event_loop_calls: bool = False
    # Environment variables that the module reads its own configuration from,
    # such as SOFTHSM2_CONF. They are set in the proxy's process before the
    # module loads, and they replace inherited values of the same names.
    environment: dict[str, str] = Field(default_factory=dict, max_length=16)

    @field_validator("environment")
    @classmethod
    def _check_environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENVIRONMENT_NAME.fullmatch(name):
                raise ValueError(
                    f"environment variable name {name!r} is invalid: use letters, digits and "
                    "'_', not starting with a digit"
                )
            if not 1 <= len(item) <= 4096 or "\0" in item:
                raise ValueError(
                    f"the value of environment variable {name} must have 1 to 4,096 characters "
                    "and no NUL"
                )
        return value


class KmipBackendSettings(_Model):
    """A KMIP backend: one server that accepts KMIP 1.4, over TLS with a client certificate."""

    type: Literal["kmip"]
    host: str = Field(min_length=1, max_length=253)
    # 5696 is the IANA port of KMIP over TLS.
    port: int = Field(5696, ge=1, le=65535)
    # The DNS name or IP address the server certificate must carry; default: host.
    server_name: str | None = Field(None, min_length=1, max_length=253)
    # The CA certificates that the server certificate must chain to.
    ca_file: Path
    # The client certificate and its private key, which authenticate the proxy.
    cert_file: Path
    key_file: Path
    # The password of an encrypted client key.
    key_password: SecretSource | None = None
    # TLS connections to the server; each carries one request at a time.
    max_connections: int = Field(8, ge=1, le=256)
    connect_timeout_ms: int = Field(2_000, ge=1, le=60_000)
    # Time in which an encrypt or decrypt is retried on a new connection after
    # a broken one, below the proxy's request_deadline_ms.
    retry_deadline_ms: int = Field(180, ge=1, le=60_000)
    # Time for creating, listing, enabling, disabling and deleting keys.
    manage_deadline_ms: int = Field(10_000, ge=100, le=600_000)
    # Seconds a key's ENABLED/DISABLED state is reused before it is read from
    # the server again; a change made by another proxy shows after this time.
    state_cache_seconds: float = Field(1.0, ge=0.0, le=60.0)


BackendSettings = Annotated[
    FileBackendSettings | Pkcs11BackendSettings | KmipBackendSettings,
    Field(discriminator="type"),
]


class KeyStoreSettings(_Model):
    """One logical key store: a URI path prefix with its own keys, backend and credentials."""

    name: str
    path_prefix: str = ""
    region: str = "cn-hangzhou"
    backend: str
    # Glob patterns of the external key IDs this key store may use.
    keys: list[str] = Field(default_factory=lambda: ["*"])
    credentials_file: Path
    # Requests per second for the whole key store; 0 disables the limit.
    rate_limit: float = Field(0, ge=0)
    rate_burst: int = Field(0, ge=0)
    cedar_policy_file: Path | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use 1 to 64 letters, digits, '-' or '_'")
        return value

    @field_validator("path_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if not _PREFIX.fullmatch(value):
            raise ValueError(
                "use '' or segments such as '/keystores/team-a' of letters, digits, '-' and '_'"
            )
        if len(value + XKS_PATH_SUFFIX) > 128:
            raise ValueError(f"the URI path {value + XKS_PATH_SUFFIX!r} exceeds 128 characters")
        return value

    @property
    def uri_path(self) -> str:
        """The XksProxyUriPath a KMS is configured with."""
        return self.path_prefix + XKS_PATH_SUFFIX


class ProxySettings(_Model):
    """The whole proxy configuration."""

    server: ServerSettings
    admin: AdminSettings | None = None
    audit: AuditSettings = AuditSettings()
    # Passphrase that seals the credential files.
    secrets: SecretSource
    backends: dict[str, BackendSettings]
    keystores: list[KeyStoreSettings]
    # The file these settings came from; set by load_settings.
    source: Path | None = None

    @model_validator(mode="after")
    def _cross_check(self) -> ProxySettings:
        if not self.keystores:
            raise ValueError("configure at least one [[keystores]] entry")
        names: set[str] = set()
        prefixes: set[str] = set()
        for store in self.keystores:
            if store.name in names:
                raise ValueError(f"key store name {store.name!r} is used twice")
            if store.path_prefix in prefixes:
                raise ValueError(f"path_prefix {store.path_prefix!r} is used by two key stores")
            if store.backend not in self.backends:
                known = ", ".join(sorted(self.backends)) or "none"
                raise ValueError(
                    f"key store {store.name!r} names backend {store.backend!r}; "
                    f"configured backends: {known}"
                )
            names.add(store.name)
            prefixes.add(store.path_prefix)
        return self

    def keystore(self, name: str) -> KeyStoreSettings:
        for store in self.keystores:
            if store.name == name:
                return store
        known = ", ".join(s.name for s in self.keystores)
        raise ConfigError(f"no key store named {name!r}; configured: {known}")


def _resolve_paths(value: Any, base: Path) -> Any:
    if isinstance(value, dict):
        return {key: _resolve_paths(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_paths(item, base) for item in value]
    if isinstance(value, Path) and not value.is_absolute():
        return base / value
    return value


def _absolute(model: BaseModel, base: Path) -> Any:
    data = model.model_dump()
    return type(model).model_validate(_resolve_paths(data, base))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{where}: {error['msg']}")
    return "; ".join(lines)


def load_settings(path: Path) -> ProxySettings:
    """Read and check a proxy configuration file; raise ConfigError naming each bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} does not exist; pass --data-dir DIR or --config FILE "
            "of an existing configuration, or create one with 'hyok xki init --dir DIR'"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    try:
        settings = ProxySettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration in {path}: {_describe(exc)}") from None
    base = path.resolve().parent
    resolved = _absolute(settings, base)
    audit_file = resolved.audit.file
    if audit_file != "-" and not Path(audit_file).is_absolute():
        resolved = resolved.model_copy(
            update={"audit": AuditSettings(file=str(base / audit_file))}
        )
    return resolved.model_copy(update={"source": path.resolve()})  # type: ignore[no-any-return]
