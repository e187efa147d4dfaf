"""A short run of benchmarks/file_crypto.py, as a user starts it, on a 2 MiB file.

The harness starts ``hyok up`` on loopback and runs the real CLI. The
figures depend on the machine, so only their presence is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "file_crypto.py"

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_file_harness_reports_every_row(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--size-mib", "2", "--frame-size", "65536", "--rounds", "2",
         "--work-dir", str(tmp_path / "work"), "--json", str(report_path)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    names = [row["name"] for row in json.loads(report_path.read_text())["rows"]]
    # The second round starts with the second row.
    assert names == [
        "aes-gcm #1",
        "encrypt-file #1",
        "decrypt-file #1",
        "encrypt-file #2",
        "decrypt-file #2",
        "aes-gcm #2",
        "encrypt-file, empty input",
        "decrypt-file, empty input",
        "aws-encryption-sdk 0x0478 encrypt",
        "aws-encryption-sdk 0x0478 decrypt",
        "aws-encryption-sdk 0x0578 encrypt",
        "aws-encryption-sdk 0x0578 decrypt",
    ]
    assert "encrypt-file: " in completed.stdout
    assert "decrypt-file: " in completed.stdout
    assert "median wall time of the rounds: aes-gcm " in completed.stdout
    # The harness removes its files, the stack of hyok up included.
    assert list((tmp_path / "work").iterdir()) == []
