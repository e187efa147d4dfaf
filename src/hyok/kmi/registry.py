"""Open a backend from its settings."""

from __future__ import annotations

from hyok.common.secrets import read_secret
from hyok.kmi.base import KeyManager
from hyok.xki.settings import BackendSettings, FileBackendSettings, Pkcs11BackendSettings

__all__ = ["open_backend"]


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

        return Pkcs11KeyManager.from_settings(settings, name)
    raise NotImplementedError(f"backend type {settings.type!r} of backend {name!r}")
