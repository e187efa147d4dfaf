"""The KMS as an operator runs it: ``hyok kms init``, the account and AccessKey commands,
and ``hyok kms serve`` in its own process, called by the official Alibaba Cloud SDK over TLS.

The served KMS runs once on a SQLite file and once on a fresh PostgreSQL schema.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
)

from tests.conftest import register_sensitive
from tests.integration._kms import postgres_server
from tests.integration._postgres import PostgresServer, fresh_schema
from tests.integration._sdk import call, close_sdk_connections, runtime

__all__ = ["postgres_server"]  # a pytest fixture, found by name

pytestmark = pytest.mark.integration

HYOK = [sys.executable, "-m", "hyok.cli"]
REGION = "cn-hangzhou"
REQUEST_LINE_BYTES = 128 * 1024
# The API reuses a found AccessKey for 5 seconds before it reads the store again.
CREDENTIAL_CACHE_SECONDS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_hyok(
    *args: str, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*HYOK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=input_text,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hyok {' '.join(args)} failed: {result.stderr}")
    return result


def init_kms(directory: Path, port: int) -> dict[str, str]:
    output = run_hyok(
        "kms", "init", "--dir", str(directory), "--port", str(port), "--output", "json"
    ).stdout
    created: dict[str, str] = json.loads(output)
    register_sensitive((directory / "secrets" / "root-key").read_text().strip())
    return created


@dataclass
class RunningKms:
    directory: Path
    config: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "tls" / "ca.pem"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_kms(directory: Path, port: int, *, scheme: str = "https") -> RunningKms:
    config = directory / "kms.toml"
    log = directory / "serve.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*HYOK, "kms", "serve", "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = RunningKms(directory, config, port, process, log)
    try:
        wait_until_serving(running, scheme)
    except BaseException:
        stop(running)
        raise
    return running


def wait_until_serving(kms: RunningKms, scheme: str, timeout: float = 30.0) -> None:
    verify: ssl.SSLContext | bool = False
    if scheme == "https":
        verify = ssl.create_default_context(cafile=str(kms.ca_file))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kms.process.poll() is not None:
            raise AssertionError(f"the KMS exited early: {kms.log.read_text()}")
        try:
            # An unsigned call; a GET of / without a query would go to the console.
            response = httpx.get(
                f"{scheme}://{kms.endpoint}/?Action=DescribeRegions",
                verify=verify,
                trust_env=False,
                timeout=2,
            )
            if response.status_code == 400:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the KMS did not start serving: {kms.log.read_text()}")


def stop(kms: RunningKms) -> int:
    close_sdk_connections(kms.endpoint)
    if kms.process.poll() is None:
        kms.process.send_signal(signal.SIGINT)
        try:
            kms.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kms.process.kill()
            kms.process.wait()
    return kms.process.returncode


# The served KMS, on SQLite and on PostgreSQL --------------------------------------------


@dataclass
class Served:
    kms: RunningKms
    account_id: str
    access_key_id: str
    secret: str

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_hyok(*args, "--config", str(self.kms.config), check=check)

    def sdk(self, access_key_id: str | None = None, secret: str | None = None) -> Client:
        return Client(
            Config(
                access_key_id=access_key_id or self.access_key_id,
                access_key_secret=secret or self.secret,
                endpoint=self.kms.endpoint,
                protocol="https",
                region_id=REGION,
                ca=str(self.kms.ca_file),
            )
        )


def create_access_key(served: Served) -> dict[str, str]:
    output = served.cli(
        "kms", "access-key", "create", "--account-id", served.account_id, "--output", "json"
    ).stdout
    created: dict[str, str] = json.loads(output)
    register_sensitive(created["accessKeySecret"])
    return created


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp(f"kms-serve-{request.param}") / "kms"
    port = free_port()
    init_kms(directory, port)
    config = directory / "kms.toml"
    if request.param == "postgresql":
        with fresh_schema(postgres_server) as (url, schema):
            text = (
                config.read_text()
                .replace('url = "sqlite:///kms.db"', f'url = "{url}"\nschema = "{schema}"')
                .replace('nonce_cache = "memory"', 'nonce_cache = "database"')
            )
            config.write_text(text)
            yield from _serve(directory, port)
    else:
        yield from _serve(directory, port)


def _serve(directory: Path, port: int) -> Iterator[Served]:
    config = str(directory / "kms.toml")
    account_id = run_hyok("kms", "account", "create", "--config", config).stdout.strip()
    output = run_hyok(
        "kms",
        "access-key",
        "create",
        "--config",
        config,
        "--account-id",
        account_id,
        "--output",
        "json",
    ).stdout
    created = json.loads(output)
    register_sensitive(created["accessKeySecret"])
    kms = start_kms(directory, port)
    try:
        yield Served(kms, account_id, created["accessKeyId"], created["accessKeySecret"])
    finally:
        stop(kms)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these variables; the requests must go straight to loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def wait_for_code(function: Callable[[], object], code: str) -> ClientException:
    """Repeat a call until it fails with ``code``, for up to the credential cache time."""
    deadline = time.monotonic() + CREDENTIAL_CACHE_SECONDS + 3
    while True:
        try:
            function()
        except ClientException as exc:
            if exc.code == code or time.monotonic() > deadline:
                return exc
        else:
            if time.monotonic() > deadline:
                raise AssertionError(f"the call kept succeeding; expected {code}")
        time.sleep(0.25)


# The API over TLS --------------------------------------------------------------------


def test_describe_regions_over_tls(served: Served) -> None:
    response = served.sdk().describe_regions_with_options(runtime())
    assert response.status_code == 200
    assert [region.region_id for region in response.body.regions.region] == [REGION]


def test_request_line_of_128_kb_accepted(served: Served) -> None:
    padding = "A" * REQUEST_LINE_BYTES
    body = call(served.sdk(), "DescribeRegions", {"HyokTestPadding": padding})
    assert body["Regions"]["Region"] == [{"RegionId": REGION}]


def test_untrusted_certificate_rejected(served: Served, tmp_path: Path) -> None:
    from hyok.common.tls import create_ca

    other = tmp_path / "other-ca.pem"
    other.write_bytes(create_ca("another CA", days=1).cert_pem)
    client = Client(
        Config(
            access_key_id=served.access_key_id,
            access_key_secret=served.secret,
            endpoint=served.kms.endpoint,
            protocol="https",
            region_id=REGION,
            ca=str(other),
        )
    )
    # A pooled connection was verified with the right CA; only a new one shows the check.
    close_sdk_connections(served.kms.endpoint)
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        client.describe_regions_with_options(runtime())
    close_sdk_connections(served.kms.endpoint)


def test_audit_trail_has_the_request_without_values(served: Served) -> None:
    """With its audit trail, hyok kms serve records each request there, never a parameter value."""
    padding = "hyok-log-probe-" * 10
    request_id = call(served.sdk(), "DescribeRegions", {"HyokTestPadding": padding})["RequestId"]
    trail = served.kms.config.parent / "audit" / "kms-audit.jsonl"
    deadline = time.monotonic() + 5
    text = ""
    while request_id not in text and time.monotonic() < deadline:
        text = trail.read_text() if trail.exists() else ""
        time.sleep(0.1)
    [line] = [line for line in text.splitlines() if request_id in line]
    event = json.loads(line)
    assert (event["action"], event["outcome"], event["code"]) == (
        "DescribeRegions",
        "success",
        "OK",
    )
    assert "hyok-log-probe" not in text
    assert "hyok-log-probe" not in served.kms.log.read_text()
    result = served.cli("kms", "audit", "verify")
    assert "verified" in result.stdout


# Accounts ------------------------------------------------------------------------------


def test_account_create_with_id(served: Served) -> None:
    result = served.cli("kms", "account", "create", "--account-id", "123456789012")
    assert result.stdout.strip() == "123456789012"
    listed = json.loads(served.cli("kms", "account", "list", "--output", "json").stdout)
    assert "123456789012" in [item["accountId"] for item in listed["accounts"]]


def test_account_create_generates_16_digits(served: Served) -> None:
    account_id = served.cli("kms", "account", "create").stdout.strip()
    assert len(account_id) == 16
    assert account_id.isdigit()
    assert account_id[0] != "0"


def test_account_create_duplicate_fails(served: Served) -> None:
    result = served.cli("kms", "account", "create", "--account-id", served.account_id, check=False)
    assert result.returncode == 1
    assert f"account {served.account_id} already exists" in result.stderr


def test_account_create_invalid_id_fails(served: Served) -> None:
    result = served.cli("kms", "account", "create", "--account-id", "12ab", check=False)
    assert result.returncode == 1
    assert "12 to 16 digits" in result.stderr


# AccessKeys ----------------------------------------------------------------------------


def test_access_key_create_prints_secret_once(
    served: Served, sensitive: Callable[[str], None]
) -> None:
    result = served.cli("kms", "access-key", "create", "--account-id", served.account_id)
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    sensitive(lines["AccessKey secret"])
    assert lines["Account"] == served.account_id
    assert lines["AccessKey ID"].startswith("LTAI")
    assert "shown" in result.stdout or "cannot be shown again" in result.stdout
    client = served.sdk(lines["AccessKey ID"], lines["AccessKey secret"])
    assert client.describe_regions_with_options(runtime()).status_code == 200


def test_access_key_list_hides_secrets(served: Served) -> None:
    listed = json.loads(
        served.cli(
            "kms", "access-key", "list", "--account-id", served.account_id, "--output", "json"
        ).stdout
    )
    assert listed["accountId"] == served.account_id
    ids = [item["accessKeyId"] for item in listed["accessKeys"]]
    assert served.access_key_id in ids
    assert all(
        set(item) == {"accessKeyId", "accountId", "status", "createdAt"}
        for item in listed["accessKeys"]
    )
    table = served.cli("kms", "access-key", "list", "--account-id", served.account_id).stdout
    assert served.access_key_id in table
    assert served.secret not in table


def test_access_key_for_unknown_account_fails(served: Served) -> None:
    result = served.cli("kms", "access-key", "create", "--account-id", "999999999999", check=False)
    assert result.returncode == 1
    assert "account '999999999999' does not exist" in result.stderr


def test_access_key_deactivate_and_activate(served: Served) -> None:
    created = create_access_key(served)
    client = served.sdk(created["accessKeyId"], created["accessKeySecret"])
    assert client.describe_regions_with_options(runtime()).status_code == 200

    result = served.cli("kms", "access-key", "deactivate", created["accessKeyId"])
    assert "is Inactive" in result.stdout
    error = wait_for_code(
        lambda: client.describe_regions_with_options(runtime()), "InvalidAccessKeyId.Inactive"
    )
    assert error.code == "InvalidAccessKeyId.Inactive"

    served.cli("kms", "access-key", "activate", created["accessKeyId"])
    deadline = time.monotonic() + CREDENTIAL_CACHE_SECONDS + 3
    while True:
        try:
            assert client.describe_regions_with_options(runtime()).status_code == 200
            break
        except ClientException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_access_key_status_checks_owner(served: Served) -> None:
    result = served.cli(
        "kms",
        "access-key",
        "deactivate",
        served.access_key_id,
        "--account-id",
        "999999999999",
        check=False,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_access_key_delete_needs_confirmation(served: Served) -> None:
    created = create_access_key(served)
    result = served.cli("kms", "access-key", "delete", created["accessKeyId"], check=False)
    assert result.returncode == 1
    assert "Aborted" in result.stderr
    listed = served.cli("kms", "access-key", "list", "--account-id", served.account_id).stdout
    assert created["accessKeyId"] in listed


def test_access_key_delete(served: Served) -> None:
    created = create_access_key(served)
    client = served.sdk(created["accessKeyId"], created["accessKeySecret"])
    assert client.describe_regions_with_options(runtime()).status_code == 200
    result = served.cli("kms", "access-key", "delete", "--yes", created["accessKeyId"])
    assert f"Deleted AccessKey {created['accessKeyId']}" in result.stdout
    error = wait_for_code(
        lambda: client.describe_regions_with_options(runtime()), "InvalidAccessKeyId.NotFound"
    )
    assert error.code == "InvalidAccessKeyId.NotFound"
    again = served.cli("kms", "access-key", "delete", "--yes", created["accessKeyId"], check=False)
    assert again.returncode == 1
    assert "does not exist" in again.stderr


# init and serve ------------------------------------------------------------------------


def test_init_writes_private_files(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    created = init_kms(directory, 19443)
    assert created["endpoint"] == "127.0.0.1:19443"
    assert created["region"] == REGION
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "secrets" / "root-key").stat().st_mode & 0o777 == 0o600
    assert (directory / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert (directory / "kms.toml").stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex((directory / "secrets" / "root-key").read_text().strip())) == 32
    root_key = (directory / "secrets" / "root-key").read_text().strip()
    assert root_key not in (directory / "kms.toml").read_text()


def test_init_refuses_existing_configuration(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    init_kms(directory, free_port())
    result = run_hyok("kms", "init", "--dir", str(directory), check=False)
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_data_dir_finds_up_layout(tmp_path: Path) -> None:
    init_kms(tmp_path / "data" / "kms", free_port())
    account_id = run_hyok(
        "kms", "account", "create", "--data-dir", str(tmp_path / "data")
    ).stdout.strip()
    listed = run_hyok(
        "kms", "account", "list", "--data-dir", str(tmp_path / "data"), "--output", "json"
    ).stdout
    assert json.loads(listed)["accounts"][0]["accountId"] == account_id


def test_serve_without_tls_refused(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    init_kms(directory, free_port())
    config = directory / "kms.toml"
    text = config.read_text()
    text = text.replace('cert_file = "tls/server.pem"\n', "").replace(
        'key_file = "tls/server-key.pem"\n', ""
    )
    config.write_text(text)
    result = run_hyok("kms", "serve", "--config", str(config), check=False)
    assert result.returncode == 1
    assert "cert_file and key_file are missing" in result.stderr
    assert "insecure_plain_http" in result.stderr


def test_serve_refuses_open_root_key(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    init_kms(directory, free_port())
    os.chmod(directory / "secrets" / "root-key", 0o644)
    result = run_hyok("kms", "serve", "--config", str(directory / "kms.toml"), check=False)
    assert result.returncode == 1
    assert "chmod 600" in result.stderr


def test_serve_reports_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "kms.toml"
    config.write_text("[server]\nport = 'x'\n")
    result = run_hyok("kms", "serve", "--config", str(config), check=False)
    assert result.returncode == 1
    assert "invalid KMS configuration" in result.stderr
    assert "server.port" in result.stderr


def test_plain_http_with_flag_and_sigint_stop(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    port = free_port()
    init_kms(directory, port)
    config = directory / "kms.toml"
    text = config.read_text().replace(
        'cert_file = "tls/server.pem"\nkey_file = "tls/server-key.pem"\n',
        "insecure_plain_http = true\n",
    )
    config.write_text(text)
    kms = start_kms(directory, port, scheme="http")
    try:
        response = httpx.get(
            f"http://{kms.endpoint}/?Action=DescribeRegions", trust_env=False, timeout=5
        )
        assert response.status_code == 400
        assert response.json()["Code"] == "MissingParameter"
    finally:
        status = stop(kms)
    assert status == 0
    log = kms.log.read_text()
    assert "serving plain HTTP" in log
    assert "Finished server process" in log


def test_two_workers_serve_requests(tmp_path: Path) -> None:
    directory = tmp_path / "kms"
    port = free_port()
    init_kms(directory, port)
    config = directory / "kms.toml"
    config.write_text(
        config.read_text()
        .replace("workers = 1", "workers = 2")
        .replace('nonce_cache = "memory"', 'nonce_cache = "database"')
    )

    account_id = run_hyok("kms", "account", "create", "--config", str(config)).stdout.strip()
    created = json.loads(
        run_hyok(
            "kms",
            "access-key",
            "create",
            "--config",
            str(config),
            "--account-id",
            account_id,
            "--output",
            "json",
        ).stdout
    )
    register_sensitive(created["accessKeySecret"])

    kms = start_kms(directory, port)
    try:
        served = Served(kms, account_id, created["accessKeyId"], created["accessKeySecret"])
        for _ in range(6):
            close_sdk_connections(kms.endpoint)
            response = served.sdk().describe_regions_with_options(runtime())
            assert response.status_code == 200
    finally:
        status = stop(kms)
    assert status == 0
    assert "with 2 workers" in kms.log.read_text()
