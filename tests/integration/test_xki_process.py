"""The proxy as a user runs it: ``hyok xki init``, ``hyok xki serve`` in its own process,
and requests signed by curl's own SigV4 implementation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import register_sensitive

HYOK = [sys.executable, "-m", "hyok.cli"]
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_hyok(*args: str, check: bool = True, input_text: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*HYOK, *args], capture_output=True, text=True, timeout=120, input=input_text,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hyok {' '.join(args)} failed: {result.stderr}")
    return result


@dataclass
class RunningProxy:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    access_key_id: str
    secret: str
    key_id: str

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def curl(self, path: str, body: object, *, access_key_id: str | None = None,
             secret: str | None = None, method: str = "POST") -> tuple[int, dict[str, object]]:
        """Send one request signed by curl --aws-sigv4; return status and JSON body."""
        user = f"{access_key_id or self.access_key_id}:{secret or self.secret}"
        command = [
            "curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--cacert",
            str(self.directory / "tls" / "ca.pem"),
            "--aws-sigv4", "aws:amz:cn-hangzhou:kms-xks-proxy", "--user", user,
            "-X", method, "-H", "Content-Type: application/json",
            "--data-binary", "@-", f"{self.base}{path}",
        ]
        result = subprocess.run(command, input=json.dumps(body).encode(), capture_output=True,
                                timeout=30, check=True)
        text, _, code = result.stdout.decode().rpartition("\n")
        return int(code), json.loads(text) if text else {}


def metadata(operation: str = "Encrypt") -> dict[str, str]:
    return {
        "awsPrincipalArn": "acs:ram::1234567890:user/alice",
        "kmsKeyArn": "acs:kms:cn-hangzhou:1234567890:key/key-e2e",
        "kmsOperation": operation,
        "kmsRequestId": "e2e-request-0001",
    }


def wait_until_ready(proxy: RunningProxy, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=str(proxy.directory / "tls" / "ca.pem"))
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise AssertionError(f"proxy exited early: {proxy.log.read_text()}")
        try:
            response = httpx.get(f"{proxy.base}/healthz", verify=context, trust_env=False,
                                 timeout=2)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"proxy did not become ready: {proxy.log.read_text()}")


def start_proxy(directory: Path, *, extra_config: str = "", workers: int = 1) -> RunningProxy:
    port, admin_port = free_port(), free_port()
    result = run_hyok("xki", "init", "--dir", str(directory), "--port", str(port),
                      "--admin-port", str(admin_port), "--key-id", "key-e2e", "--output", "json")
    created = json.loads(result.stdout)
    credential = created["proxyConfiguration"]["XksProxyAuthenticationCredential"]
    register_sensitive(credential["RawSecretAccessKey"])
    register_sensitive((directory / "secrets" / "passphrase").read_text().strip())
    register_sensitive((directory / "secrets" / "admin-token").read_text().strip())
    config = directory / "xki.toml"
    text = config.read_text()
    if workers != 1:
        text = text.replace("[server]\n", f"[server]\nworkers = {workers}\n", 1)
    config.write_text(text + extra_config)
    log = directory / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*HYOK, "xki", "serve", "--config", str(config)],
            stdout=output, stderr=subprocess.STDOUT,
        )
    proxy = RunningProxy(directory, port, process, log, credential["AccessKeyId"],
                         credential["RawSecretAccessKey"], created["keyId"])
    try:
        wait_until_ready(proxy)
    except BaseException:
        stop(proxy)
        raise
    return proxy


def stop(proxy: RunningProxy) -> None:
    if proxy.process.poll() is None:
        proxy.process.send_signal(signal.SIGINT)
        try:
            proxy.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proxy.process.kill()
            proxy.process.wait()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    running = start_proxy(tmp_path_factory.mktemp("e2e") / "data")
    yield running
    stop(running)


def test_init_writes_proxy_configuration(proxy: RunningProxy) -> None:
    document = json.loads((proxy.directory / "xks-proxy-configuration.json").read_text())
    credential = document["XksProxyAuthenticationCredential"]
    assert document["XksProxyUriPath"] == "/kms/xks/v1"
    assert 20 <= len(credential["AccessKeyId"]) <= 30
    assert set(credential["AccessKeyId"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert len(base64.b64decode(credential["RawSecretAccessKey"])) == 32
    mode = (proxy.directory / "xks-proxy-configuration.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_init_refuses_existing_directory(proxy: RunningProxy) -> None:
    result = run_hyok("xki", "init", "--dir", str(proxy.directory), check=False)
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_curl_runs_all_four_operations(proxy: RunningProxy, sensitive) -> None:
    plaintext = b"curl plaintext 0123456789"
    sensitive(plaintext)
    key_path = f"/kms/xks/v1/keys/{proxy.key_id}"

    status, health = proxy.curl("/kms/xks/v1/health",
                                {"requestMetadata": {"kmsRequestId": "h1",
                                                     "kmsOperation": "KmsHealthCheck"}})
    assert status == 200
    assert health["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"

    status, info = proxy.curl(f"{key_path}/metadata",
                              {"requestMetadata": metadata("DescribeKey")})
    assert (status, info) == (200, {"keySpec": "AES_256", "keyUsage": ["DECRYPT", "ENCRYPT"],
                                    "keyStatus": "ENABLED"})

    status, sealed = proxy.curl(f"{key_path}/encrypt", {
        "requestMetadata": metadata("Encrypt"),
        "plaintext": base64.b64encode(plaintext).decode(),
        "encryptionAlgorithm": "AES_GCM",
    })
    assert status == 200
    status, opened = proxy.curl(f"{key_path}/decrypt", {
        "requestMetadata": metadata("Decrypt"),
        "encryptionAlgorithm": "AES_GCM",
        "ciphertext": sealed["ciphertext"],
        "ciphertextMetadata": sealed["ciphertextMetadata"],
        "initializationVector": sealed["initializationVector"],
        "authenticationTag": sealed["authenticationTag"],
    })
    assert status == 200
    assert base64.b64decode(str(opened["plaintext"])) == plaintext


def test_curl_get_is_405(proxy: RunningProxy) -> None:
    status, body = proxy.curl("/kms/xks/v1/health", {}, method="GET")
    assert status == 405
    assert body["errorName"] == "MethodNotAllowed"


def test_curl_wrong_secret_is_401(proxy: RunningProxy) -> None:
    wrong = base64.b64encode(b"w" * 32).decode()
    status, body = proxy.curl("/kms/xks/v1/health",
                              {"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "X"}},
                              secret=wrong)
    assert status == 401
    assert body["errorName"] == "AuthenticationFailedException"


def test_kmi_cli_disables_key_seen_by_proxy(proxy: RunningProxy) -> None:
    data_dir = str(proxy.directory)
    created = json.loads(run_hyok("kmi", "create-key", "--data-dir", data_dir, "--key-id",
                                  "cli-key", "--output", "json").stdout)
    assert created["keyStatus"] == "ENABLED"
    run_hyok("kmi", "disable-key", "--data-dir", data_dir, "cli-key")
    status, body = proxy.curl("/kms/xks/v1/keys/cli-key/encrypt", {
        "requestMetadata": metadata(), "plaintext": "aGVsbG8=", "encryptionAlgorithm": "AES_GCM",
    })
    assert status == 400
    assert body["errorName"] == "InvalidStateException"
    run_hyok("kmi", "enable-key", "--data-dir", data_dir, "cli-key")
    status, _ = proxy.curl("/kms/xks/v1/keys/cli-key/encrypt", {
        "requestMetadata": metadata(), "plaintext": "aGVsbG8=", "encryptionAlgorithm": "AES_GCM",
    })
    assert status == 200


def test_credential_rotation_without_restart(proxy: RunningProxy) -> None:
    health = {"requestMetadata": {"kmsRequestId": "rot", "kmsOperation": "KmsHealthCheck"}}
    before = (proxy.directory / "xks-proxy-configuration.json").read_text()
    output = run_hyok("xki", "credentials", "add", "--data-dir", str(proxy.directory)).stdout
    written = (proxy.directory / "xks-proxy-configuration.json").read_text()
    assert written != before
    new = json.loads(written)["XksProxyAuthenticationCredential"]
    assert new["RawSecretAccessKey"] not in output
    assert new["AccessKeyId"] in output
    register_sensitive(new["RawSecretAccessKey"])
    deadline = time.monotonic() + 5
    status = 0
    while time.monotonic() < deadline:
        status, _ = proxy.curl("/kms/xks/v1/health", health, access_key_id=new["AccessKeyId"],
                               secret=new["RawSecretAccessKey"])
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200
    assert proxy.curl("/kms/xks/v1/health", health)[0] == 200

    run_hyok("xki", "credentials", "remove", "--data-dir", str(proxy.directory),
             proxy.access_key_id)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, _ = proxy.curl("/kms/xks/v1/health", health)
        if status == 401:
            break
        time.sleep(0.2)
    assert status == 401
    assert proxy.process.poll() is None
    proxy.access_key_id, proxy.secret = new["AccessKeyId"], new["RawSecretAccessKey"]


def test_sighup_reloads_configuration(proxy: RunningProxy) -> None:
    config = proxy.directory / "xki.toml"
    original = config.read_text()
    config.write_text(original.replace('keys = ["*"]', 'keys = ["key-*"]'))
    try:
        proxy.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline:
            status, body = proxy.curl("/kms/xks/v1/keys/cli-key/metadata",
                                      {"requestMetadata": metadata("DescribeKey")})
            if status == 404:
                break
            time.sleep(0.1)
        assert status == 404
        assert body["errorName"] == "KeyNotFoundException"
        assert proxy.curl(f"/kms/xks/v1/keys/{proxy.key_id}/metadata",
                          {"requestMetadata": metadata("DescribeKey")})[0] == 200
    finally:
        config.write_text(original)
        proxy.process.send_signal(signal.SIGHUP)
    assert proxy.process.poll() is None


def test_audit_log_carries_request_id(proxy: RunningProxy) -> None:
    proxy.curl(f"/kms/xks/v1/keys/{proxy.key_id}/metadata",
               {"requestMetadata": {**metadata("DescribeKey"), "kmsRequestId": "trace-me-42"}})
    lines = [json.loads(line) for line in
             (proxy.directory / "logs" / "audit.log").read_text().splitlines()]
    matching = [line for line in lines if line.get("kmsRequestId") == "trace-me-42"]
    assert len(matching) == 1
    assert matching[0]["operation"] == "GetKeyMetadata"
    assert matching[0]["outcome"] == "ok"


def test_two_workers_serve_requests(tmp_path: Path) -> None:
    running = start_proxy(tmp_path / "data", workers=2)
    try:
        body = {"requestMetadata": metadata("DescribeKey")}
        statuses = {running.curl(f"/kms/xks/v1/keys/{running.key_id}/metadata", body)[0]
                    for _ in range(6)}
        assert statuses == {200}
    finally:
        stop(running)
    assert running.process.returncode == 0


def test_serve_reports_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "xki.toml"
    config.write_text("[server]\nport = 'x'\n")
    result = run_hyok("xki", "serve", "--config", str(config), check=False)
    assert result.returncode == 1
    assert "invalid configuration" in result.stderr


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")
