"""A tiny run of the load harness (benchmarks/xki_load.py) as a user starts it.

Each test starts the real proxy and the floor app on 127.0.0.1, sends a few
hundred requests and checks that every figure is printed. The figures
themselves are not asserted: they depend on the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
