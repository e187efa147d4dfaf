"""``hyok xki init --kmi``: the key manager of a new proxy configuration.

The PKCS#11 cases run the CLI as a child process on a SoftHSMv2 token of
their own, because SoftHSMv2 reads SOFTHSM2_CONF once per process and the
test process may already use the suite's tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyok.kmi.pkcs11.softhsm import SOFTHSM_MODULE, SoftHsmToken, create_softhsm_token
from hyok.xki.settings import FileBackendSettings, Pkcs11BackendSettings, load_settings
from tests.conftest import register_sensitive

pytestmark = pytest.mark.integration

HYOK = [sys.executable, "-m", "hyok.cli"]
LIST_KEYS = """\
import sys
from pathlib import Path
from hyok.kmi.registry import open_backend
from hyok.xki.settings import load_settings
settings = load_settings(Path(sys.argv[1]))
name = settings.keystores[0].backend
manager = open_backend(name, settings.backends[name])
print(" ".join(key.key_id for key in manager.list_keys()))
manager.close()
"""


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    if not SOFTHSM_MODULE.is_file():
        pytest.skip("SoftHSMv2 is not installed: install the Debian package softhsm2")
    created = create_softhsm_token(
        tmp_path / "softhsm",
        "init-test",
        pin_file=tmp_path / "pin",
        so_pin_file=tmp_path / "so-pin",
    )
    register_sensitive(created.pin_file.read_text().strip())
    register_sensitive(created.so_pin_file.read_text().strip())
    return created


def run_hyok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HYOK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_init_default_is_file_keystore(tmp_path: Path) -> None:
    result = run_hyok("xki", "init", "--dir", str(tmp_path / "proxy"), "--output", "json")
    assert result.returncode == 0, result.stderr
    settings = load_settings(tmp_path / "proxy" / "xki.toml")
    assert [type(item) for item in settings.backends.values()] == [FileBackendSettings]
    assert settings.keystores[0].backend == "local"
    assert (tmp_path / "proxy" / "keystore.hyok").is_file()


def test_init_pkcs11_token_by_label(tmp_path: Path, token: SoftHsmToken) -> None:
    directory = tmp_path / "proxy"
    environment = {"SOFTHSM2_CONF": str(token.conf), "INIT_TEST_PIN": ""}
    result = run_hyok(
        "xki", "init", "--dir", str(directory), "--kmi", "pkcs11",
        "--pkcs11-token-label", token.label, "--pkcs11-pin-env", "INIT_TEST_PIN",
        "--pkcs11-pin-file", str(token.pin_file), "--key-id", "first-on-token",
        "--output", "json",
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keyId"] == "first-on-token"
    settings = load_settings(directory / "xki.toml")
    backend = settings.backends[settings.keystores[0].backend]
    assert isinstance(backend, Pkcs11BackendSettings)
    assert backend.module == SOFTHSM_MODULE
    assert [(item.label, item.slot) for item in backend.tokens] == [(token.label, None)]
    assert backend.pin.env == "INIT_TEST_PIN"
    assert backend.pin.file == token.pin_file
    assert not (directory / "keystore.hyok").exists()
    pin = token.pin_file.read_text().strip()
    assert pin not in (directory / "xki.toml").read_text()
    assert pin not in result.stdout + result.stderr

    listed = subprocess.run(
        [sys.executable, "-c", LIST_KEYS, str(directory / "xki.toml")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SOFTHSM2_CONF": str(token.conf)},
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["first-on-token"]


def test_init_pkcs11_unknown_label_leaves_nothing(tmp_path: Path, token: SoftHsmToken) -> None:
    directory = tmp_path / "proxy"
    result = run_hyok(
        "xki", "init", "--dir", str(directory), "--kmi", "pkcs11",
        "--pkcs11-token-label", "no-such-token", "--pkcs11-pin-file", str(token.pin_file),
        env={"SOFTHSM2_CONF": str(token.conf)},
    )
    assert result.returncode == 1
    assert "no PKCS#11 token labelled 'no-such-token'" in result.stderr
    assert not directory.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kmi", "pkcs11", "--pkcs11-pin-env", "PIN"],
         "needs one of --pkcs11-token-label and --pkcs11-slot"),
        (["--kmi", "pkcs11", "--pkcs11-slot", "1"], "needs --pkcs11-pin-env or --pkcs11-pin-file"),
        (["--kmi", "pkcs11", "--pkcs11-slot", "1", "--pkcs11-token-label", "a",
          "--pkcs11-pin-env", "PIN"], "needs one of --pkcs11-token-label and --pkcs11-slot"),
        (["--kmi", "pkcs11", "--pkcs11-slot", "1", "--pkcs11-pin-env", "1PIN"],
         "'1PIN' is not an environment variable name"),
        (["--kmi", "pkcs11", "--pkcs11-token-label", "x" * 33, "--pkcs11-pin-env", "PIN"],
         "a token label has 1 to 32 bytes"),
        (["--pkcs11-slot", "1"], "--pkcs11-slot: valid only with --kmi pkcs11"),
    ],
)
def test_init_pkcs11_option_errors(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = run_hyok("xki", "init", "--dir", str(tmp_path / "proxy"), *arguments)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "proxy").exists()


def test_softhsm_token_directory_must_be_new(tmp_path: Path, token: SoftHsmToken) -> None:
    from hyok.common.errors import ConfigError

    with pytest.raises(ConfigError, match="already exists"):
        create_softhsm_token(
            token.conf.parent, "again", pin_file=tmp_path / "p", so_pin_file=tmp_path / "s"
        )
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"1BAD": "x"}, "environment variable name '1BAD' is invalid"),
        ({"SOFTHSM2_CONF": ""}, "must have 1 to 4,096 characters"),
        ({"SOFTHSM2_CONF": "a\0b"}, "must have 1 to 4,096 characters"),
        ({f"V{index}": "x" for index in range(17)}, "at most 16 items"),
    ],
)
def test_pkcs11_environment_setting_checked(environment: dict[str, str], message: str) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match=message):
        Pkcs11BackendSettings.model_validate({
            "type": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so",
            "pin": {"env": "PIN"}, "tokens": [{"label": "a"}], "environment": environment,
        })
