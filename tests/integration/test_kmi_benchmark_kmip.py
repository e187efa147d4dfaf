"""A short run of benchmarks/kmi_load.py on the KMIP backend, with its PyKMIP server.

The figures depend on the machine, so only their presence and the decrypt
checks are asserted. PyKMIP may let a request miss the proxy's deadline on a
busy machine, so the harness's error count is not asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import register_sensitive

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "kmi_load.py"

pytestmark = pytest.mark.integration


def test_kmi_harness_reports_kmip(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed: install the Debian package wrk")
    work = tmp_path / "work"
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "--backends",
            "kmip",
            "--duration",
            "1",
            "--raw-seconds",
            "0.5",
            "--warmup",
            "0",
            "--verify",
            "5",
            "--pool",
            "16",
            "--connections",
            "2",
            "--work-dir",
            str(work),
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    for path in (work / "kmip" / "secrets").glob("*"):
        register_sensitive(path.read_text().strip())
    assert completed.returncode in (0, 1), completed.stderr[-3000:]

    report = json.loads(report_path.read_text())
    rows = {row["operation"]: row for row in report["rows"] if row["backend"] == "kmip"}
    assert sorted(rows) == ["decrypt", "encrypt"]
    for operation, row in rows.items():
        assert row["raw_per_second"] > 0, operation
        assert row["proxy_per_second"] > 0, operation
    for stage, result in report["verification"]["kmip"].items():
        assert result["failures"] == 0, stage
