"""SoftHSMv2 tokens for the PKCS#11 backend tests, initialised once per test run.

SoftHSMv2 reads ``SOFTHSM2_CONF`` and discovers its tokens when the module is
initialised, which happens once per process. The session fixture
``softhsm`` therefore writes a configuration in a temporary directory,
initialises every token the tests use with ``softhsm2-util``, and sets
``SOFTHSM2_CONF`` before any test loads the module. Each test module uses its
own tokens, so that breaking one (closing its sessions, changing its PIN)
does not affect the others.

Without SoftHSMv2 the tests are skipped with the reason; ``scripts/test``
installs the Debian package ``softhsm2``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from hyok.common.secrets import Secret
from hyok.kmi.pkcs11 import MemberOptions, Pkcs11KeyManager, TokenSelector
from hyok.kmi.pkcs11._module import load_module
from tests.conftest import register_sensitive

__all__ = [
    "SOFTHSM_MODULE",
    "TOKENS",
    "USER_PIN",
    "SoftHsm",
    "open_manager",
    "softhsm",
]

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
# Distinctive values, so that the log hygiene check can find them.
USER_PIN = "hyok-user-pin-4d1c9e7a"
_SO_PIN = "hyok-so-pin-8b2f60d3"
# Every token the suite uses; SoftHSMv2 sees only tokens that exist when it starts.
TOKENS = ("hyok-main", "hyok-reset", "hyok-fleet-a", "hyok-fleet-b", "hyok-xks")


@dataclass(frozen=True)
class SoftHsm:
    """A SoftHSMv2 configuration with initialised tokens, and the module loaded from it."""

    directory: Path
    conf: Path

    def slot_of(self, label: str) -> int:
        lib = load_module(SOFTHSM_MODULE).lib
        token = lib.get_token(token_label=label)
        slot_id: int = token.slot.slot_id
        return slot_id

    def close_all_sessions(self, label: str) -> None:
        """Close every session of this process on the token, which also ends its login."""
        load_module(SOFTHSM_MODULE).raw.close_all_sessions(self.slot_of(label))

    def change_pin(self, label: str, old: str, new: str) -> None:
        """Change the user PIN of a token, in a session of its own."""
        token = load_module(SOFTHSM_MODULE).lib.get_token(token_label=label)
        session = token.open(rw=True)
        try:
            if not load_module(SOFTHSM_MODULE).raw.is_logged_in(session.handle):
                load_module(SOFTHSM_MODULE).raw.login(session.handle, old.encode())
            session.set_pin(old, new)
        finally:
            session.close()

    def import_key(self, label: str, key_id: str, material: bytes) -> None:
        """Store the same AES key on a token as a replica would hold it: sensitive, not extractable.

        The tests use this to build a fleet of tokens that share keys, which
        an HSM cluster does by its own replication.
        """
        register_sensitive(material)
        token = load_module(SOFTHSM_MODULE).lib.get_token(token_label=label)
        session = token.open(rw=True)
        try:
            raw = load_module(SOFTHSM_MODULE).raw
            if not raw.is_logged_in(session.handle):
                raw.login(session.handle, USER_PIN.encode())
            session.create_object(_replica_template(key_id, material))
        finally:
            session.close()


def _replica_template(key_id: str, material: bytes) -> dict[Attribute, Any]:
    return {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: material,
        Attribute.LABEL: key_id,
        Attribute.ID: key_id.encode("ascii"),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
    }


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """Initialise the suite's SoftHSMv2 tokens in a temporary directory.

    Sets SOFTHSM2_CONF to the new configuration for the rest of the run.
    """
    if not SOFTHSM_MODULE.is_file() or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSMv2 is not installed: install the Debian package softhsm2")
    register_sensitive(USER_PIN)
    register_sensitive(_SO_PIN)
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    environment = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in TOKENS:
        subprocess.run(
            [
                "softhsm2-util", "--init-token", "--free", "--label", label,
                "--pin", USER_PIN, "--so-pin", _SO_PIN,
            ],
            env=environment,
            check=True,
            capture_output=True,
        )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    load_module(SOFTHSM_MODULE)
    yield SoftHsm(directory=directory, conf=conf)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def open_manager(*labels: str, pin: str = USER_PIN, **options: Any) -> Pkcs11KeyManager:
    """Open a backend over the SoftHSMv2 tokens ``labels``, in that fleet order."""
    selectors = [TokenSelector(label, None, Secret(pin), "test PIN") for label in labels]
    member_options = {
        name: options.pop(name)
        for name in ("key_attribute", "max_sessions", "state_cache_seconds", "parallel_calls")
        if name in options
    }
    return Pkcs11KeyManager(
        SOFTHSM_MODULE, selectors, options=MemberOptions(**member_options), **options
    )
