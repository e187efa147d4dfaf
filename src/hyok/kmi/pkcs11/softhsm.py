"""A SoftHSMv2 token of its own, for ``hyok up --kmi pkcs11`` and the benchmarks.

:func:`create_softhsm_token` writes a SoftHSMv2 configuration whose token
directory lies in a directory of the caller, initialises one token there,
and stores its random user PIN and security officer (SO) PIN in files of
mode 0600. The token is initialised through the module's own C_InitToken
and C_InitPIN in a child process (``python -m hyok.kmi.pkcs11.softhsm``)
that reads the PINs from its standard input. The PINs therefore never
appear on a command line, as they would with ``softhsm2-util --pin``, and
the calling process never loads SoftHSMv2 under another configuration.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hyok.common.errors import ConfigError
from hyok.common.fileio import atomic_write

__all__ = ["SOFTHSM_CONF_VARIABLE", "SOFTHSM_MODULE", "SoftHsmToken", "create_softhsm_token"]

#: The library of the Debian and Ubuntu package softhsm2.
SOFTHSM_MODULE: Final = Path("/usr/lib/softhsm/libsofthsm2.so")
#: The environment variable from which SoftHSMv2 reads the path of its configuration.
SOFTHSM_CONF_VARIABLE: Final = "SOFTHSM2_CONF"

_PIN_BYTES: Final = 24
_LABEL_BYTES: Final = 32
_INIT_TIMEOUT_SECONDS: Final = 60.0
_CKR_OK: Final = 0


@dataclass(frozen=True)
class SoftHsmToken:
    """A SoftHSMv2 token that :func:`create_softhsm_token` initialised."""

    module: Path
    label: str
    #: The SoftHSMv2 configuration; SOFTHSM2_CONF must name it when the module loads.
    conf: Path
    #: The file with the user PIN (mode 0600).
    pin_file: Path
    #: The file with the SO PIN (mode 0600), needed only to reset the user PIN.
    so_pin_file: Path


def create_softhsm_token(
    directory: Path,
    label: str,
    *,
    pin_file: Path,
    so_pin_file: Path,
    module: Path = SOFTHSM_MODULE,
) -> SoftHsmToken:
    """Initialise a token ``label`` with random PINs in ``directory``, which must not exist.

    Raises ConfigError when SoftHSMv2 is missing or the initialisation fails.
    """
    if not module.is_file():
        raise ConfigError(
            f"SoftHSMv2 is not installed ({module} does not exist): install the Debian package "
            "softhsm2, or pass the module and token of another PKCS#11 device"
        )
    if not 1 <= len(label.encode("utf-8")) <= _LABEL_BYTES:
        raise ConfigError(f"token label {label!r} must have 1 to {_LABEL_BYTES} bytes")
    if directory.exists():
        raise ConfigError(
            f"{directory} already exists; remove it to initialise a new SoftHSMv2 token there"
        )
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700, parents=True)
    os.chmod(directory, 0o700)
    conf = directory / "softhsm2.conf"
    text = (
        f"directories.tokendir = {tokens.resolve()}\n"
        "objectstore.backend = file\nlog.level = ERROR\n"
    )
    atomic_write(conf, text.encode("utf-8"), mode=0o600)

    user_pin = secrets.token_urlsafe(_PIN_BYTES)
    so_pin = secrets.token_urlsafe(_PIN_BYTES)
    request = {"module": str(module), "label": label, "so_pin": so_pin, "user_pin": user_pin}
    result = subprocess.run(
        [sys.executable, "-m", "hyok.kmi.pkcs11.softhsm"],
        input=json.dumps(request).encode("utf-8"),
        env={**os.environ, SOFTHSM_CONF_VARIABLE: str(conf.resolve())},
        capture_output=True,
        timeout=_INIT_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigError(
            f"initialising a SoftHSMv2 token in {directory} failed: "
            f"{reason[-1] if reason else f'exit status {result.returncode}'}"
        )
    atomic_write(pin_file, (user_pin + "\n").encode("utf-8"), mode=0o600)
    atomic_write(so_pin_file, (so_pin + "\n").encode("utf-8"), mode=0o600)
    return SoftHsmToken(
        module=module,
        label=label,
        conf=conf.resolve(),
        pin_file=pin_file,
        so_pin_file=so_pin_file,
    )


def _initialise_token(module: str, label: str, so_pin: str, user_pin: str) -> None:
    """Run C_InitToken on the first slot, then C_InitPIN as the SO, in this process."""
    from pkcs11 import lib as pkcs11_lib

    from hyok.kmi.pkcs11._cryptoki import _FunctionList

    library = ctypes.CDLL(module)
    pointer = ctypes.POINTER(_FunctionList)()
    library.C_GetFunctionList.argtypes = (ctypes.POINTER(ctypes.POINTER(_FunctionList)),)
    _check("C_GetFunctionList", library.C_GetFunctionList(ctypes.byref(pointer)))
    functions = pointer.contents
    ulong = ctypes.c_ulong
    initialize = ctypes.CFUNCTYPE(ulong, ctypes.c_void_p)(functions.C_Initialize)
    finalize = ctypes.CFUNCTYPE(ulong, ctypes.c_void_p)(functions.C_Finalize)
    get_slot_list = ctypes.CFUNCTYPE(ulong, ctypes.c_ubyte, ctypes.POINTER(ulong),
                                     ctypes.POINTER(ulong))(functions.C_GetSlotList)
    init_token = ctypes.CFUNCTYPE(ulong, ulong, ctypes.c_char_p, ulong, ctypes.c_char_p)(
        functions.C_InitToken
    )

    _check("C_Initialize", initialize(None))
    try:
        # A new SoftHSMv2 token directory has exactly one slot, with a free token.
        slots = (ulong * 1)()
        count = ulong(1)
        _check("C_GetSlotList", get_slot_list(1, slots, ctypes.byref(count)))
        if count.value != 1:
            raise RuntimeError(f"expected one free slot, found {count.value}")
        padded = label.encode("utf-8").ljust(_LABEL_BYTES, b" ")
        so_pin_bytes = so_pin.encode("utf-8")
        _check("C_InitToken", init_token(slots[0], so_pin_bytes, len(so_pin_bytes), padded))
    finally:
        finalize(None)

    token = pkcs11_lib(module).get_token(token_label=label)
    with token.open(rw=True, so_pin=so_pin) as session:
        session.init_pin(user_pin)


def _check(function: str, rv: int) -> None:
    if rv != _CKR_OK:
        raise RuntimeError(f"{function} returned 0x{rv:08x}")


def _main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        _initialise_token(
            request["module"],
            request["label"],
            request["so_pin"],
            request["user_pin"],
        )
    except Exception as exc:  # the parent turns any failure into a ConfigError
        # The messages name a function and a return code, never a PIN.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
