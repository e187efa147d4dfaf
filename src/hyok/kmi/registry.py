"""Open a backend from its settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from hyok.common.secrets import read_secret
from hyok.kmi.base import KeyManager
from hyok.xki.settings import (
    BackendSettings,
    FileBackendSettings,
    KmipBackendSettings,
    Pkcs11BackendSettings,
)

__all__ = ["open_backend"]

logger = logging.getLogger(__name__)


def open_backend(name: str, settings: BackendSettings) -> KeyManager:
    """Open the backend ``name``; raise ConfigError or a Keystore*Error when it cannot be used."""
    if isinstance(settings, FileBackendSettings):
        from hyok.kmi.file import FileKeyManager

        passphrase = read_secret(
            env=settings.passphrase.env,
            file=settings.passphrase.file,
            what=f"passphrase of backend {name!r}",
        )
        return FileKeyManager(settings.path, passphrase, kdf_cost=settings.kdf_cost)
    if isinstance(settings, Pkcs11BackendSettings):
        from hyok.kmi.pkcs11 import Pkcs11KeyManager

        _set_module_environment(name, settings.environment)
        return Pkcs11KeyManager.from_settings(settings, name)
    if isinstance(settings, KmipBackendSettings):
        from hyok.kmi.kmip import KmipKeyManager

        return KmipKeyManager.from_settings(settings, name)
    raise NotImplementedError(f"backend type {settings.type!r} of backend {name!r}")


def _set_module_environment(name: str, environment: Mapping[str, str]) -> None:
    """Set the variables a PKCS#11 module reads its configuration from, before it loads.

    A module reads them once, when it is first initialised in a process, so a
    change after that takes effect only after a restart.
    """
    for variable, value in environment.items():
        previous = os.environ.get(variable)
        if previous is not None and previous != value:
            logger.info(
                "backend %s replaces the inherited environment variable %s", name, variable
            )
        os.environ[variable] = value
