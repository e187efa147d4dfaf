"""Tests of hyok.kms.settings: defaults, path resolution, every rejected value, and the root key."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hyok.common.errors import ConfigError
from hyok.kms.settings import (
    DEFAULT_PORT,
    ROOT_KEY_ENV,
    KmsSettings,
    decode_root_key,
    load_root_key,
    load_settings,
)

ROOT_KEY = bytes(range(32))
TLS = """
[server]
cert_file = "tls/server.pem"
key_file = "tls/server-key.pem"
"""
ROOT_KEY_FILE = 'root_key = { file = "secrets/root-key" }\n'


def write_config(directory: Path, text: str) -> Path:
    path = directory / "kms.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(directory: Path, text: str) -> KmsSettings:
    return load_settings(write_config(directory, text))


def config_error(directory: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(directory, text)
    return caught.value.message


def write_root_key(directory: Path, data: bytes, mode: int = 0o600) -> Path:
    path = directory / "secrets" / "root-key"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.fixture(autouse=True)
def _no_root_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_KEY_ENV, raising=False)


# Defaults and resolution ---------------------------------------------------------------


def test_minimal_config_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    assert settings.region == "cn-hangzhou"
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == DEFAULT_PORT
    assert settings.server.workers == 1
    assert settings.server.nonce_cache == "database"
    assert settings.server.min_tls_version == "1.2"
    assert settings.server.tls
    assert settings.proxy.timeout_ms == 250
    assert settings.proxy.ca_file is None
    assert settings.proxy.vpc_endpoints == {}
    assert settings.health.interval_seconds == 30
    assert settings.source == (tmp_path / "kms.toml").resolve()


def test_default_database_beside_config(tmp_path: Path) -> None:
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    assert settings.database.resolved_url == f"sqlite:///{tmp_path.resolve() / 'kms.db'}"


def test_relative_paths_resolve_against_config(tmp_path: Path) -> None:
    text = (
        ROOT_KEY_FILE
        + TLS
        + '[database]\nurl = "sqlite:///data/kms.db"\n[proxy]\nca_file = "../proxy/ca.pem"\n'
    )
    settings = load(tmp_path, text)
    base = tmp_path.resolve()
    assert settings.server.cert_file == base / "tls" / "server.pem"
    assert settings.server.key_file == base / "tls" / "server-key.pem"
    assert settings.root_key.file == base / "secrets" / "root-key"
    assert settings.proxy.ca_file == base / ".." / "proxy" / "ca.pem"
    assert settings.database.resolved_url == f"sqlite:///{base / 'data' / 'kms.db'}"


def test_absolute_paths_kept(tmp_path: Path) -> None:
    text = (
        'root_key = { file = "/etc/hyok/root-key" }\n'
        '[server]\ncert_file = "/etc/hyok/server.pem"\nkey_file = "/etc/hyok/key.pem"\n'
        '[database]\nurl = "sqlite:////var/lib/hyok/kms.db"\n'
    )
    settings = load(tmp_path, text)
    assert settings.root_key.file == Path("/etc/hyok/root-key")
    assert settings.server.cert_file == Path("/etc/hyok/server.pem")
    assert settings.database.resolved_url == "sqlite:////var/lib/hyok/kms.db"


def test_postgresql_url_and_schema(tmp_path: Path) -> None:
    text = (
        ROOT_KEY_FILE
        + TLS
        + '[database]\nurl = "postgresql://kms@db.internal:5432/hyok"\nschema = "kms_a"\n'
    )
    settings = load(tmp_path, text)
    assert settings.database.resolved_url == "postgresql://kms@db.internal:5432/hyok"
    assert settings.database.db_schema == "kms_a"


def test_full_config(tmp_path: Path) -> None:
    text = f"""
region = "cn-shanghai"
root_key = {{ env = "{ROOT_KEY_ENV}", file = "secrets/root-key" }}

[server]
host = "::1"
port = 10443
workers = 4
threads = 8
cert_file = "c.pem"
key_file = "k.pem"
min_tls_version = "1.3"
max_body_bytes = 65536
nonce_cache = "database"

[proxy]
timeout_ms = 500
max_connections = 8

[proxy.vpc_endpoints]
"com.example.vpce.xki" = "10.0.0.5:8443"
"xki-v6" = "[fd00::5]:8443"

[health]
interval_seconds = 5
"""
    settings = load(tmp_path, text)
    assert settings.region == "cn-shanghai"
    assert settings.server.workers == 4
    assert settings.server.min_tls_version == "1.3"
    assert settings.proxy.timeout_ms == 500
    assert settings.proxy.vpc_endpoints["com.example.vpce.xki"] == "10.0.0.5:8443"
    assert settings.health.interval_seconds == 5
    assert settings.root_key.env == ROOT_KEY_ENV


def test_insecure_plain_http_without_certificates(tmp_path: Path) -> None:
    settings = load(tmp_path, ROOT_KEY_FILE + "[server]\ninsecure_plain_http = true\n")
    assert not settings.server.tls


# Rejected values -----------------------------------------------------------------------


def test_missing_certificates_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + "[server]\nport = 9443\n")
    assert "server:" in message
    assert "cert_file and key_file are missing" in message
    assert "insecure_plain_http" in message


def test_certificate_without_key_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + '[server]\ncert_file = "c.pem"\n')
    assert "key_file is missing" in message


def test_insecure_with_certificates_rejected(tmp_path: Path) -> None:
    text = ROOT_KEY_FILE + TLS + "insecure_plain_http = true\n"
    message = config_error(tmp_path, text)
    assert "insecure_plain_http = true contradicts" in message


def test_missing_server_table_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE)
    assert "server: is missing" in message


def test_missing_root_key_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, TLS)
    assert "root_key: is missing" in message


def test_inline_root_key_rejected(tmp_path: Path, sensitive: Callable[[str], None]) -> None:
    inline = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    sensitive(inline)
    message = config_error(tmp_path, f'root_key = "{inline}"\n' + TLS)
    assert "root_key" in message
    assert "must not be written in the configuration" in message
    assert inline not in message


def test_root_key_without_source_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, "root_key = {}\n" + TLS)
    assert "set 'env'" in message


def test_root_key_bad_env_name_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'root_key = { env = "NOT A NAME" }\n' + TLS)
    assert "root_key.env" in message
    assert "not an environment variable name" in message


def test_unknown_key_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + "prot = 1\n")
    assert "server.prot: is not a known setting" in message


def test_port_out_of_range_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + "port = 70000\n")
    assert "server.port" in message
    assert "65535" in message


def test_invalid_region_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'region = "CN Hangzhou"\n' + ROOT_KEY_FILE + TLS)
    assert "region:" in message
    assert "cn-hangzhou" in message


def test_memory_nonces_with_workers_rejected(tmp_path: Path) -> None:
    text = ROOT_KEY_FILE + TLS + 'workers = 2\nnonce_cache = "memory"\n'
    message = config_error(tmp_path, text)
    assert "nonce_cache = 'database'" in message


def test_bad_nonce_cache_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + 'nonce_cache = "redis"\n')
    assert "server.nonce_cache" in message


def test_schema_with_sqlite_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + '[database]\nschema = "kms"\n')
    assert "database.schema applies only to PostgreSQL" in message


@pytest.mark.parametrize(
    "url",
    ["mysql://db/kms", "not a url at all"],
)
def test_unsupported_database_url_rejected(tmp_path: Path, url: str) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + f'[database]\nurl = "{url}"\n')
    assert "database.url" in message
    assert "sqlite:///path/to/kms.db" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('"xki" = "10.0.0.5"', "write host:port"),
        ('"xki" = "10.0.0.5:0"', "write host:port"),
        ('"xki" = ":8443"', "write host:port"),
        ('"-bad" = "10.0.0.5:8443"', "invalid VPC endpoint service name"),
    ],
)
def test_bad_vpc_endpoint_rejected(tmp_path: Path, entry: str, expected: str) -> None:
    text = ROOT_KEY_FILE + TLS + f"[proxy.vpc_endpoints]\n{entry}\n"
    message = config_error(tmp_path, text)
    assert "proxy.vpc_endpoints" in message
    assert expected in message


def test_proxy_timeout_bounds(tmp_path: Path) -> None:
    message = config_error(tmp_path, ROOT_KEY_FILE + TLS + "[proxy]\ntimeout_ms = 1\n")
    assert "proxy.timeout_ms" in message


def test_invalid_toml_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[server\n")
    assert "is not valid TOML" in message


def test_missing_file_names_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml")
    assert "does not exist" in caught.value.message
    assert "hyok kms init" in caught.value.message


def test_directory_as_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert "is a directory" in caught.value.message


# The root key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        ROOT_KEY.hex().encode() + b"\n",
        ROOT_KEY.hex().upper().encode(),
        base64.b64encode(ROOT_KEY) + b"\n",
        ROOT_KEY,
    ],
    ids=["hex", "hex-upper", "base64", "raw"],
)
def test_root_key_file_forms(tmp_path: Path, data: bytes) -> None:
    write_root_key(tmp_path, data)
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    assert load_root_key(settings) == ROOT_KEY


def test_root_key_file_mode_checked(tmp_path: Path) -> None:
    path = write_root_key(tmp_path, ROOT_KEY.hex().encode(), mode=0o644)
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    with pytest.raises(ConfigError) as caught:
        load_root_key(settings)
    assert "mode 0644" in caught.value.message
    assert f"chmod 600 {path}" in caught.value.message


def test_root_key_file_read_only_accepted(tmp_path: Path) -> None:
    write_root_key(tmp_path, ROOT_KEY.hex().encode(), mode=0o400)
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    assert load_root_key(settings) == ROOT_KEY


def test_root_key_file_missing(tmp_path: Path) -> None:
    settings = load(tmp_path, ROOT_KEY_FILE + TLS)
    with pytest.raises(ConfigError) as caught:
        load_root_key(settings)
    assert "does not exist" in caught.value.message
    assert "backup" in caught.value.message


def test_root_key_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_root_key(tmp_path, bytes(32).hex().encode())
    monkeypatch.setenv(ROOT_KEY_ENV, base64.b64encode(ROOT_KEY).decode())
    text = f'root_key = {{ env = "{ROOT_KEY_ENV}", file = "secrets/root-key" }}\n' + TLS
    settings = load(tmp_path, text)
    assert load_root_key(settings) == ROOT_KEY


def test_root_key_env_falls_back_to_file(tmp_path: Path) -> None:
    write_root_key(tmp_path, ROOT_KEY.hex().encode())
    text = f'root_key = {{ env = "{ROOT_KEY_ENV}", file = "secrets/root-key" }}\n' + TLS
    assert load_root_key(load(tmp_path, text)) == ROOT_KEY


def test_root_key_env_only_missing(tmp_path: Path) -> None:
    settings = load(tmp_path, f'root_key = {{ env = "{ROOT_KEY_ENV}" }}\n' + TLS)
    with pytest.raises(ConfigError) as caught:
        load_root_key(settings)
    assert f"set the environment variable {ROOT_KEY_ENV}" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [b"short", b"zz" * 32, base64.b64encode(bytes(16)), bytes(31)],
    ids=["short", "not-hex", "16-bytes-base64", "31-raw-bytes"],
)
def test_bad_root_key_rejected_without_echo(data: bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        decode_root_key(data, "file /x")
    message = caught.value.message
    assert "is not 32 bytes" in message
    assert "file /x" in message
    assert data.decode("latin-1") not in message


def test_memory_nonces_with_postgresql_rejected(tmp_path: Path) -> None:
    text = (
        ROOT_KEY_FILE
        + TLS
        + 'nonce_cache = "memory"\n\n[database]\nurl = "postgresql://hyok@127.0.0.1:5432/kms"\n'
    )
    message = config_error(tmp_path, text)
    assert "nonce_cache = 'database' with PostgreSQL" in message
