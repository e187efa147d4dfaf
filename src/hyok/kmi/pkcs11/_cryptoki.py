"""The few Cryptoki calls and structures that python-pkcs11 does not expose, through ctypes.

python-pkcs11 0.10 logs in only while opening a session, logs out when that
session closes (which ends the login of every session of the process), cannot
read a session's state, and accepts AES-GCM IVs of at most 12 bytes in
``GCMParams``. The backend therefore opens every pooled session without a PIN
and uses this module to:

- read a session's state (logged in or public) with ``C_GetSessionInfo``,
- log in with ``C_Login``, so that no session owns the login,
- close every session of the process on a slot (``C_CloseAllSessions``), which
  the tests use to break sessions the way a device reset does,
- build ``CK_GCM_PARAMS`` itself, for 16-byte IVs and for tokens that write
  the IV they generate into the caller's buffer.

The functions come from the module's ``C_GetFunctionList``, so modules that do
not export each ``C_*`` symbol work too. Structures use the platform's C
layout, which is the PKCS#11 layout on every platform except Windows (which
packs them to 1 byte and is not supported here).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any, Final

from pkcs11 import Mechanism

__all__ = [
    "CKR_OK",
    "CKR_USER_ALREADY_LOGGED_IN",
    "CryptokiError",
    "GcmParameters",
    "RawFunctions",
]

CKR_OK: Final = 0x000
CKR_USER_ALREADY_LOGGED_IN: Final = 0x100
_CKU_USER: Final = 1
# CK_STATE values of sessions in which the normal user is logged in.
_CKS_RO_USER_FUNCTIONS: Final = 1
_CKS_RW_USER_FUNCTIONS: Final = 3

_ULONG = ctypes.c_ulong
_RV = ctypes.c_ulong


class CryptokiError(Exception):
    """A raw Cryptoki call returned ``rv``, a CKR_* code other than CKR_OK."""

    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} returned 0x{rv:08x}")
        self.function = function
        self.rv = rv


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _SessionInfo(ctypes.Structure):
    _fields_ = (
        ("slot_id", _ULONG),
        ("state", _ULONG),
        ("flags", _ULONG),
        ("device_error", _ULONG),
    )


# CK_GCM_PARAMS of PKCS#11 v2.40 and later, which has ulIvBits: pIv, ulIvLen,
# ulIvBits, pAAD, ulAADLen, ulTagBits, in the platform's C layout ("@"), where
# "L" is a C unsigned long like CK_ULONG.
_GCM_PARAMS: Final = struct.Struct("@PLLPLL")


# The first 20 entries of CK_FUNCTION_LIST, in the order of the specification.
_FUNCTION_NAMES: Final = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
)


class _FunctionList(ctypes.Structure):
    _fields_ = (("version", _Version), *((name, ctypes.c_void_p) for name in _FUNCTION_NAMES))


class RawFunctions:
    """Cryptoki functions of one loaded module, called without python-pkcs11.

    The module must already be initialised (python-pkcs11 does that when it
    loads the module), because these calls share its state.
    """

    def __init__(self, path: str) -> None:
        # dlopen returns the handle python-pkcs11 already holds for this path.
        library = ctypes.CDLL(path)
        get_function_list = library.C_GetFunctionList
        get_function_list.restype = _RV
        get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_FunctionList)),)
        pointer = ctypes.POINTER(_FunctionList)()
        rv = get_function_list(ctypes.byref(pointer))
        if rv != CKR_OK:
            raise CryptokiError("C_GetFunctionList", rv)
        functions = pointer.contents
        self._library = library
        self._get_session_info = ctypes.CFUNCTYPE(_RV, _ULONG, ctypes.POINTER(_SessionInfo))(
            functions.C_GetSessionInfo
        )
        self._login = ctypes.CFUNCTYPE(_RV, _ULONG, _ULONG, ctypes.c_char_p, _ULONG)(
            functions.C_Login
        )
        self._close_all_sessions = ctypes.CFUNCTYPE(_RV, _ULONG)(functions.C_CloseAllSessions)

    def is_logged_in(self, session_handle: int) -> bool:
        """Return True when the normal user is logged in to the session's token."""
        info = _SessionInfo()
        rv = self._get_session_info(session_handle, ctypes.byref(info))
        if rv != CKR_OK:
            raise CryptokiError("C_GetSessionInfo", rv)
        return info.state in (_CKS_RO_USER_FUNCTIONS, _CKS_RW_USER_FUNCTIONS)

    def login(self, session_handle: int, pin: bytes) -> None:
        """Log the normal user in to the session's token; an existing login is kept."""
        rv = self._login(session_handle, _CKU_USER, pin, len(pin))
        if rv not in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            raise CryptokiError("C_Login", rv)

    def close_all_sessions(self, slot_id: int) -> None:
        """Close every session of this process on the slot, which also ends its login."""
        rv = self._close_all_sessions(slot_id)
        if rv != CKR_OK:
            raise CryptokiError("C_CloseAllSessions", rv)


class GcmParameters:
    """A ``CK_GCM_PARAMS`` structure with one buffer that contains the IV and then the AAD.

    The buffer is writable, so a token that generates the IV itself can store
    it there during ``C_EncryptInit``. The structure points into the buffer,
    so the operations run through :meth:`encrypt` and :meth:`decrypt`, which
    keep this object alive until the token returns.
    """

    __slots__ = ("_buffer", "_iv_length", "_raw")

    def __init__(self, iv: bytes, aad: bytes, tag_bits: int = 128) -> None:
        # One ctypes array and struct.pack cost a third of what two
        # create_string_buffer calls and a ctypes.Structure cost, which shows
        # on every SoftHSMv2 operation.
        data = iv + aad
        self._buffer = (ctypes.c_char * len(data)).from_buffer_copy(data)
        self._iv_length = len(iv)
        address = ctypes.addressof(self._buffer)
        # python-pkcs11 passes a bytes parameter to the token as it is.
        self._raw = _GCM_PARAMS.pack(
            address,
            len(iv),
            len(iv) * 8,
            address + len(iv) if aad else 0,
            len(aad),
            tag_bits,
        )

    def encrypt(self, key: Any, plaintext: bytes) -> bytes:
        """Encrypt with CKM_AES_GCM under ``key``; return the ciphertext followed by the tag."""
        result: bytes = key.encrypt(
            plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=self._raw
        )
        return result

    def decrypt(self, key: Any, sealed: bytes) -> bytes:
        """Decrypt the ciphertext followed by the tag with CKM_AES_GCM under ``key``."""
        result: bytes = key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=self._raw)
        return result

    @property
    def iv(self) -> bytes:
        """The IV buffer as it is now, including any IV the token wrote into it."""
        return ctypes.string_at(ctypes.addressof(self._buffer), self._iv_length)

    def __repr__(self) -> str:
        return f"GcmParameters(iv=<{self._iv_length} bytes>)"
