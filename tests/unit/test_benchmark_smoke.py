"""A tiny run of the load harness (benchmarks/xki_load.py) as a user starts it.

Each test starts the real proxy and the floor app on 127.0.0.1, sends a few
hundred requests and checks that every figure is printed. The figures
themselves are not asserted: they depend on the machine.
"""

from __future__ import annotations

import importlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "xki_load.py"
OPERATIONS = ("encrypt", "decrypt", "floor")

pytestmark = pytest.mark.integration


def run_harness(work: Path, sensitive: Callable[[bytes | str], None], *args: str
                ) -> tuple[str, dict[str, Any]]:
    report_path = work.parent / "report.json"
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--workers", "1", "--warmup", "0", "--verify", "5",
         "--pool", "16", "--work-dir", str(work), "--json", str(report_path), *args],
        capture_output=True, text=True, timeout=90, check=False,
    )
    # The hygiene test at the end of the suite checks the logs under work/ for these.
    data_dir = work / "workers-1"
    configuration = json.loads((data_dir / "xks-proxy-configuration.json").read_text())
    secret = configuration["XksProxyAuthenticationCredential"]["RawSecretAccessKey"]
    sensitive(secret)
    sensitive((data_dir / "secrets" / "passphrase").read_text().strip())
    sensitive((data_dir / "secrets" / "admin-token").read_text().strip())

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert secret not in completed.stdout + completed.stderr
    return completed.stdout, json.loads(report_path.read_text())


def check_report(text: str, report: dict[str, Any], operations: tuple[str, ...]) -> None:
    results = {item["operation"]: item for item in report["results"]}
    assert sorted(results) == sorted(operations)
    for operation, item in results.items():
        assert item["workers"] == 1
        assert item["requests"] > 0, operation
        assert item["errors"] == 0, operation
        assert item["requests_per_second"] > 0, operation
        assert 0 < item["p50_ms"] <= item["p99_ms"], operation
        assert item["peak_rss_bytes"] > 10 * 2**20, operation
        if operation == "floor":
            assert item["ratio_to_floor"] is None
        else:
            assert item["ratio_to_floor"] > 0, operation
        assert f"      1 {operation:<9}" in text

    for stage in ("before load", "after load"):
        verification = report["verification"]["1"][stage]
        assert verification["failures"] == 0, verification
        assert verification["encrypt_round_trips"] == 5
    assert report["audit"]["1"]["not_ok"] == 0
    for column in ("req/s", "p50 ms", "p99 ms", "errors", "vs floor", "peak RSS"):
        assert column in text, column
    assert "0 failures" in text


def test_python_client_prints_every_figure(
    tmp_path: Path, sensitive: Callable[[bytes | str], None]
) -> None:
    text, report = run_harness(
        tmp_path / "work", sensitive, "--client", "python", "--duration", "5",
        "--requests", "150", "--connections", "4",
    )

    check_report(text, report, OPERATIONS)
    for item in report["results"]:
        assert item["requests"] == 150
        assert item["checked"] > 0
        assert item["check_failures"] == {}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_client_prints_every_figure(
    tmp_path: Path, sensitive: Callable[[bytes | str], None]
) -> None:
    text, report = run_harness(
        tmp_path / "work", sensitive, "--client", "wrk", "--duration", "1",
        "--connections", "4", "--operations", "encrypt,floor",
    )

    check_report(text, report, ("encrypt", "floor"))
    # The request files hold Base64 plaintexts and are deleted after each run.
    assert list((tmp_path / "work").rglob("*.requests")) == []


KMS_HARNESS = HARNESS.with_name("kms_load.py")
KMS_COLUMNS = ("req/s", "p50 ms", "p99 ms", "errors", "vs proxy", "KMS RSS", "proxy RSS")


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_kms_harness_prints_every_figure(
    tmp_path: Path, sensitive: Callable[[bytes | str], None]
) -> None:
    work = tmp_path / "work"
    report_path = tmp_path / "kms-report.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(KMS_HARNESS),
            "--duration",
            "1",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--verify",
            "3",
            "--pool",
            "16",
            "--work-dir",
            str(work),
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    # The hygiene test at the end of the suite checks the logs under work/ for these.
    proxy_dir = work / "workers-1"
    configuration = json.loads((proxy_dir / "xks-proxy-configuration.json").read_text())
    proxy_secret = configuration["XksProxyAuthenticationCredential"]["RawSecretAccessKey"]
    sensitive(proxy_secret)
    sensitive((proxy_dir / "secrets" / "passphrase").read_text().strip())
    sensitive((proxy_dir / "secrets" / "admin-token").read_text().strip())
    sensitive((work / "kms" / "secrets" / "root-key").read_text().strip())

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert proxy_secret not in completed.stdout + completed.stderr
    text, report = completed.stdout, json.loads(report_path.read_text())
    results = {(item["target"], item["operation"]): item for item in report["results"]}
    assert sorted(results) == [
        ("kms", "decrypt"),
        ("kms", "encrypt"),
        ("proxy", "decrypt"),
        ("proxy", "encrypt"),
    ]
    for (target, operation), item in results.items():
        name = f"{target} {operation}"
        assert item["requests"] > 0, name
        assert item["errors"] == 0, (name, item["error_kinds"])
        assert item["requests_per_second"] > 0, name
        assert 0 < item["p50_ms"] <= item["p99_ms"], name
        assert item["kms_peak_rss_bytes"] > 10 * 2**20, name
        assert item["proxy_peak_rss_bytes"] > 10 * 2**20, name
        if target == "kms":
            assert item["ratio_to_proxy"] > 0, name
        else:
            assert item["ratio_to_proxy"] is None, name
        assert f"{target:<6} {operation:<9}" in text, name

    assert sorted(report["target"]) == ["decrypt", "encrypt"]
    for stage in ("before load", "after load"):
        verification = report["verification"][stage]
        assert verification["failures"] == 0, verification
        assert verification["encrypt_round_trips"] == 3
        assert verification["replay_rejected"] is True
    assert report["audit"]["not_ok"] == 0
    for column in KMS_COLUMNS:
        assert column in text, column
    assert "0 failures" in text
    # The request files hold Base64 plaintexts and are deleted after each run.
    assert list(work.rglob("*.requests*")) == []


def _capture_one_request(server: socket.socket, captured: list[bytes]) -> None:
    connection, _ = server.accept()
    with connection:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        captured.append(data)
        body = b'{"RequestId":"4F5A2E64-0000-4000-8000-000000000000"}'
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )


def test_kms_signer_matches_sdk_requests() -> None:
    """The harness's pre-signed requests have the SDK's request line and header order."""
    from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
    from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
        Config,
        OpenApiRequest,
        Params,
    )
    from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

    sys.path.insert(0, str(KMS_HARNESS.parent))
    try:
        kms_load = importlib.import_module("kms_load")
    finally:
        sys.path.remove(str(KMS_HARNESS.parent))

    access_key_id, secret = "LTAI5tKmsLoadSignerTest", "kms-load-signer-test-secret"
    query = {"KeyId": "key-hzz62f1cb66fa42qo0001", "Plaintext": "aGVsbG8gd29ybGQ/+w=="}
    captured: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        thread = threading.Thread(target=_capture_one_request, args=(server, captured))
        thread.start()
        client = Client(
            Config(
                access_key_id=access_key_id,
                access_key_secret=secret,
                endpoint=f"127.0.0.1:{port}",
                protocol="http",
                region_id="cn-hangzhou",
            )
        )
        params = Params(
            action="Encrypt",
            version="2016-01-20",
            protocol="HTTP",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        client.call_api(params, OpenApiRequest(query=query), RuntimeOptions(no_proxy="127.0.0.1"))
        thread.join(10)

    signer = kms_load.AcsRequestSigner(port, access_key_id, secret)
    ours = signer.render("Encrypt", query).decode("ascii").split("\r\n")
    sdk = captured[0].decode("ascii").split("\r\n")

    assert ours[0] == sdk[0]
    assert [line.split(":", 1)[0] for line in ours] == [line.split(":", 1)[0] for line in sdk]
    changing = ("x-acs-date", "x-acs-signature-nonce", "Authorization")
    assert [line for line in ours if not line.startswith(changing)] == [
        line for line in sdk if not line.startswith(changing)
    ]
    signed = "SignedHeaders=accept;host;user-agent;x-acs-action;x-acs-content-sha256;"
    assert signed in next(line for line in ours if line.startswith("Authorization"))
