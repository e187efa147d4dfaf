"""Loaded PKCS#11 modules, one per library file and process.

A module can be initialised only once per process, and python-pkcs11 keeps
one ``lib`` object per path, so every backend and fleet member that names the
same library shares one :class:`LoadedModule`.

python-pkcs11 initialises modules with ``C_Initialize(NULL)``, which tells a
module that the application will not call it from several threads at once.
SoftHSMv2 then turns its internal locks off. Each module therefore has one
call lock, which members hold around their PKCS#11 calls unless the backend
is configured with ``parallel_calls = true`` for a module that is known to be
thread-safe regardless.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11
import pkcs11.exceptions as p11

from hyok.common.errors import ConfigError
from hyok.common.secrets import Secret
from hyok.kmi.pkcs11._cryptoki import CryptokiError, RawFunctions
from hyok.kmi.pkcs11._errors import describe

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Library

__all__ = ["LoadedModule", "load_module"]

logger = logging.getLogger(__name__)

_modules: dict[str, LoadedModule] = {}
_modules_lock = threading.Lock()


class LoadedModule:
    """One initialised PKCS#11 library with its call lock."""

    def __init__(self, path: str, lib: Pkcs11Library, raw: RawFunctions) -> None:
        self.path = path
        self.lib = lib
        self.raw = raw
        #: Held around PKCS#11 calls of members that do not make parallel calls.
        self.call_lock = threading.Lock()
        #: Counts reinitialisations, so that members can tell that their
        #: sessions belong to an earlier one.
        self.generation = 0
        self._reinitialise_lock = threading.Lock()
        #: The PIN each token (by serial number) accepted last in this process.
        #: A login holds for every session of the process, so a second
        #: backend on a logged-in token is checked against this PIN instead.
        self.accepted_pins: dict[bytes, Secret] = {}
        self.description = f"{lib.manufacturer_id.strip()} {lib.library_description.strip()}"

    def reinitialise(self, seen_generation: int) -> None:
        """Finalise and initialise the module again, unless another thread already did.

        Every session and login of the process on this module ends.
        """
        with self._reinitialise_lock:
            if self.generation != seen_generation:
                return
            logger.warning("reinitialising PKCS#11 module %s", self.path)
            try:
                self.lib.reinitialize()
            except p11.PKCS11Error:
                # The module may already be finalised; initialise it as new.
                self.lib.initialize()
            self.generation += 1

    def __repr__(self) -> str:
        return f"LoadedModule(path={self.path!r})"


def load_module(path: Path) -> LoadedModule:
    """Load and initialise the library at ``path``, or return the module already loaded.

    Raises ConfigError naming the file and the reason when it cannot be loaded.
    """
    real = os.path.realpath(path)
    with _modules_lock:
        module = _modules.get(real)
        if module is not None:
            if not module.lib.initialized:
                module.lib.initialize()
            return module
        if not os.path.isfile(real):
            raise ConfigError(
                f"PKCS#11 module {path} does not exist; install the token's PKCS#11 library "
                "or correct the backend's 'module' path"
            )
        try:
            lib = pkcs11.lib(real)
        except p11.PKCS11Error as exc:
            reason = str(exc) if type(exc) is p11.PKCS11Error else describe(exc)
            raise ConfigError(
                f"cannot load PKCS#11 module {path}: {reason}. Check that the file is the "
                "token's PKCS#11 library and that its own configuration (for SoftHSMv2, the "
                "file named by SOFTHSM2_CONF) is readable"
            ) from None
        try:
            raw = RawFunctions(real)
        except (OSError, AttributeError, CryptokiError) as exc:
            raise ConfigError(
                f"cannot read the function list of PKCS#11 module {path}: {exc}"
            ) from None
        module = LoadedModule(real, lib, raw)
        _modules[real] = module
        logger.info("loaded PKCS#11 module %s (%s)", path, module.description)
        return module
