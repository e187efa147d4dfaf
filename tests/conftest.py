"""Suite-wide fixtures: one log file for the whole run and a registry of sensitive values.

Tests register every plaintext, secret, passphrase and token they use with
``sensitive``. The last test of the suite (``tests/zz_hygiene``) reads every
``*.log`` file under the run's temporary directory, including the suite log
that the root logger writes, and fails if any registered value appears.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SENSITIVE: set[bytes] = set()


def register_sensitive(value: bytes | str) -> None:
    data = value.encode("utf-8") if isinstance(value, str) else value
    # Short values would match by chance; tests use values of 12 bytes or more.
    if len(data) >= 12:
        SENSITIVE.add(data)


@pytest.fixture
def sensitive() -> Callable[[bytes | str], None]:
    return register_sensitive


@pytest.fixture(scope="session", autouse=True)
def suite_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Send every log record of the run, at DEBUG level, to one file under the run's temp dir."""
    path = tmp_path_factory.getbasetemp() / "suite.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # urllib3, the HTTP library of the Alibaba Cloud SDKs, logs each request line at
    # DEBUG. Those SDKs send every KMS parameter in the query string, plaintext and
    # proxy secrets included, so the client side would leak them into this file.
    http_logger = logging.getLogger("urllib3")
    previous_http = http_logger.level
    http_logger.setLevel(logging.INFO)
    yield path
    http_logger.setLevel(previous_http)
    root.removeHandler(handler)
    root.setLevel(previous)
    handler.close()
