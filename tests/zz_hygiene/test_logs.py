"""Runs last: no log written during the suite contains a registered plaintext or secret."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import pytest

from tests.conftest import SENSITIVE


def forms(value: bytes) -> list[bytes]:
    """The value as written raw, in Base64 and in hex."""
    return [
        value,
        base64.b64encode(value),
        base64.urlsafe_b64encode(value).rstrip(b"="),
        binascii.hexlify(value),
    ]


def test_logs_hold_no_registered_secret(
    tmp_path_factory: pytest.TempPathFactory, suite_log: Path
) -> None:
    if not SENSITIVE:
        pytest.skip("no test registered sensitive values in this run (run the whole suite)")
    for handler in __import__("logging").getLogger().handlers:
        handler.flush()
    root = tmp_path_factory.getbasetemp()
    logs = [path for path in root.rglob("*.log") if path.is_file()]
    assert suite_log in logs
    leaks = []
    for path in logs:
        content = path.read_bytes()
        for value in SENSITIVE:
            if any(form in content for form in forms(value)):
                leaks.append(f"{path.relative_to(root)} contains a registered value")
    assert leaks == []
