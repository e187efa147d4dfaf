"""A short run of benchmarks/kmi_load.py, as a user starts it, on both backends.

The figures depend on the machine, so only their presence and the absence of
errors are checked.
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


def test_kmi_harness_reports_both_backends(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed: install the Debian package wrk")
    if shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSMv2 is not installed: install the Debian package softhsm2")
    work = tmp_path / "work"
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--duration", "1", "--raw-seconds", "0.5",
         "--warmup", "0", "--verify", "5", "--pool", "16", "--backend-threads", "2",
         "--work-dir", str(work), "--json", str(report_path)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    for backend in ("file", "pkcs11"):
        secrets = work / backend / "secrets"
        for path in secrets.glob("*") if secrets.is_dir() else ():
            register_sensitive(path.read_text().strip())
    assert completed.returncode == 0, completed.stderr[-3000:]

    report = json.loads(report_path.read_text())
    rows = {(row["backend"], row["operation"]): row for row in report["rows"]}
    assert sorted(rows) == [
        ("file", "decrypt"), ("file", "encrypt"), ("pkcs11", "decrypt"), ("pkcs11", "encrypt"),
    ]
    for key, row in rows.items():
        assert row["raw_per_second"] > 0, key
        assert row["proxy_per_second"] > 0, key
        assert row["proxy_errors"] == 0, key
        assert 0 < row["proxy_p50_ms"] <= row["proxy_p99_ms"], key
        assert row["proxy_to_raw"] > 0, key
    for backend, stages in report["verification"].items():
        for stage, result in stages.items():
            assert result["failures"] == 0, (backend, stage)
    assert "proxy/raw" in completed.stdout
