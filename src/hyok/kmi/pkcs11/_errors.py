"""The one place that turns PKCS#11 failures into recovery steps and hyok errors.

Every failure of python-pkcs11 or of a raw Cryptoki call is reduced to its
CKR_* return code. :func:`fault_of` says how the backend may recover from it
(:class:`Fault`), and :func:`request_error` builds the hyok error a caller
sees once recovery is over or not possible. Messages name the return code and
the token, never a PIN, a key or data.
"""

from __future__ import annotations

import enum
import re
from typing import Final

import pkcs11.exceptions as p11

from hyok.common.errors import (
    HyokError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    ValidationError,
)
from hyok.kmi.pkcs11._cryptoki import CryptokiError

__all__ = [
    "CKR_FUNCTION_FAILED",
    "CKR_GENERAL_ERROR",
    "Fault",
    "MemberUnavailableError",
    "Operation",
    "decrypt_failed",
    "describe",
    "fault_of",
    "request_error",
    "return_code",
]

CKR_GENERAL_ERROR: Final = 0x05
CKR_FUNCTION_FAILED: Final = 0x06

# Names of the return codes this backend treats specially, for messages and logs.
_NAMES: Final[dict[int, str]] = {
    0x02: "CKR_HOST_MEMORY",
    CKR_GENERAL_ERROR: "CKR_GENERAL_ERROR",
    CKR_FUNCTION_FAILED: "CKR_FUNCTION_FAILED",
    0x20: "CKR_DATA_INVALID",
    0x21: "CKR_DATA_LEN_RANGE",
    0x30: "CKR_DEVICE_ERROR",
    0x31: "CKR_DEVICE_MEMORY",
    0x32: "CKR_DEVICE_REMOVED",
    0x35: "CKR_AEAD_DECRYPT_FAILED",
    0x40: "CKR_ENCRYPTED_DATA_INVALID",
    0x41: "CKR_ENCRYPTED_DATA_LEN_RANGE",
    0x50: "CKR_FUNCTION_CANCELED",
    0x54: "CKR_FUNCTION_NOT_SUPPORTED",
    0x60: "CKR_KEY_HANDLE_INVALID",
    0x68: "CKR_KEY_FUNCTION_NOT_PERMITTED",
    0x70: "CKR_MECHANISM_INVALID",
    0x71: "CKR_MECHANISM_PARAM_INVALID",
    0x82: "CKR_OBJECT_HANDLE_INVALID",
    0x90: "CKR_OPERATION_ACTIVE",
    0x91: "CKR_OPERATION_NOT_INITIALIZED",
    0xA0: "CKR_PIN_INCORRECT",
    0xA1: "CKR_PIN_INVALID",
    0xA2: "CKR_PIN_LEN_RANGE",
    0xA3: "CKR_PIN_EXPIRED",
    0xA4: "CKR_PIN_LOCKED",
    0xB0: "CKR_SESSION_CLOSED",
    0xB1: "CKR_SESSION_COUNT",
    0xB3: "CKR_SESSION_HANDLE_INVALID",
    0xD0: "CKR_TEMPLATE_INCOMPLETE",
    0xD1: "CKR_TEMPLATE_INCONSISTENT",
    0xE0: "CKR_TOKEN_NOT_PRESENT",
    0xE1: "CKR_TOKEN_NOT_RECOGNIZED",
    0xE2: "CKR_TOKEN_WRITE_PROTECTED",
    0x101: "CKR_USER_NOT_LOGGED_IN",
    0x102: "CKR_USER_PIN_NOT_INITIALIZED",
    0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
}
_CODES_BY_NAME: Final = {name: code for code, name in _NAMES.items()}

# python-pkcs11 raises one class per return code. These are the classes of
# the codes above; the rest are unmapped, or plain PKCS11Error with the code
# in the message.
_CLASSES: Final[dict[type[p11.PKCS11Error], int]] = {
    p11.HostMemory: 0x02,
    p11.GeneralError: CKR_GENERAL_ERROR,
    p11.FunctionFailed: CKR_FUNCTION_FAILED,
    p11.DataInvalid: 0x20,
    p11.DataLenRange: 0x21,
    p11.DeviceError: 0x30,
    p11.DeviceMemory: 0x31,
    p11.DeviceRemoved: 0x32,
    p11.EncryptedDataInvalid: 0x40,
    p11.EncryptedDataLenRange: 0x41,
    p11.FunctionCancelled: 0x50,
    p11.FunctionNotSupported: 0x54,
    p11.KeyHandleInvalid: 0x60,
    p11.MechanismInvalid: 0x70,
    p11.MechanismParamInvalid: 0x71,
    p11.ObjectHandleInvalid: 0x82,
    p11.OperationActive: 0x90,
    p11.OperationNotInitialized: 0x91,
    p11.PinIncorrect: 0xA0,
    p11.PinInvalid: 0xA1,
    p11.PinLenRange: 0xA2,
    p11.PinExpired: 0xA3,
    p11.PinLocked: 0xA4,
    p11.SessionClosed: 0xB0,
    p11.SessionCount: 0xB1,
    p11.SessionHandleInvalid: 0xB3,
    p11.TemplateIncomplete: 0xD0,
    p11.TemplateInconsistent: 0xD1,
    p11.TokenNotPresent: 0xE0,
    p11.TokenNotRecognised: 0xE1,
    p11.TokenWriteProtected: 0xE2,
    p11.UserNotLoggedIn: 0x101,
    p11.UserPinNotInitialized: 0x102,
}
_UNMAPPED_CODE: Final = re.compile(r"0x([0-9A-Fa-f]+)")


@enum.unique
class Fault(enum.Enum):
    """How the backend recovers from a failed PKCS#11 call before it retries."""

    #: The session is closed or invalid, and likely every other session too:
    #: drop the idle sessions and open a new one.
    SESSION = "session"
    #: The login ended or an object handle is stale: open a new session, which
    #: logs in again, and find the key again.
    LOGIN = "login"
    #: The module was finalised: initialise it again.
    MODULE = "module"
    #: The device or token failed: drop the idle sessions and try again, then
    #: try another fleet member.
    DEVICE = "device"
    #: The PIN was rejected. Retrying could lock the PIN, so the member stays
    #: failed until its next health check.
    CREDENTIAL = "credential"


@enum.unique
class Operation(enum.Enum):
    """The backend operation that failed; some codes mean different things per operation."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    MANAGE = "manage"


_FAULTS: Final[dict[int, Fault]] = {
    0xB0: Fault.SESSION,
    0xB3: Fault.SESSION,
    0x90: Fault.SESSION,
    0x91: Fault.SESSION,
    0x101: Fault.LOGIN,
    0x60: Fault.LOGIN,
    0x82: Fault.LOGIN,
    0x190: Fault.MODULE,
    0x02: Fault.DEVICE,
    CKR_GENERAL_ERROR: Fault.DEVICE,
    CKR_FUNCTION_FAILED: Fault.DEVICE,
    0x30: Fault.DEVICE,
    0x31: Fault.DEVICE,
    0x32: Fault.DEVICE,
    0x50: Fault.DEVICE,
    0xB1: Fault.DEVICE,
    0xE0: Fault.DEVICE,
    0xE1: Fault.DEVICE,
    0xA0: Fault.CREDENTIAL,
    0xA1: Fault.CREDENTIAL,
    0xA2: Fault.CREDENTIAL,
    0xA3: Fault.CREDENTIAL,
    0xA4: Fault.CREDENTIAL,
    0x102: Fault.CREDENTIAL,
}
# Return codes that mean the ciphertext, tag, IV or AAD of a decrypt is wrong.
_DECRYPT_FAILURES: Final = frozenset({0x20, 0x21, 0x35, 0x40, 0x41, 0x71})
_DECRYPT_FAILED: Final = "decryption failed: the ciphertext, tag, IV or AAD does not match this key"


class MemberUnavailableError(InternalError):
    """A fleet member failed in a way that another member may not: the fleet tries the next one."""


def return_code(exc: BaseException) -> int | None:
    """Return the CKR_* code behind a python-pkcs11 or raw Cryptoki failure, if known."""
    if isinstance(exc, CryptokiError):
        return exc.rv
    for cls in type(exc).__mro__:
        code = _CLASSES.get(cls)
        if code is not None:
            return code
    if isinstance(exc, p11.PKCS11Error):
        text = str(exc)
        match = _UNMAPPED_CODE.search(text)
        if match is not None:
            return int(match.group(1), 16)
        if "not initialized" in text:
            return _CODES_BY_NAME["CKR_CRYPTOKI_NOT_INITIALIZED"]
    return None


def describe(exc: BaseException) -> str:
    """Name a failure by its return code, such as ``CKR_DEVICE_ERROR (0x00000030)``."""
    code = return_code(exc)
    if code is None:
        return type(exc).__name__
    return f"{_NAMES.get(code, 'CKR code')} (0x{code:08x})"


def fault_of(exc: BaseException) -> Fault | None:
    """Return how to recover from ``exc``, or None when retrying cannot help."""
    code = return_code(exc)
    if code is None:
        return None
    return _FAULTS.get(code)


def request_error(exc: BaseException, operation: Operation, member: str) -> HyokError:
    """Build the error a caller sees for a PKCS#11 failure on fleet member ``member``."""
    code = return_code(exc)
    if code == 0x68:
        return InvalidKeyUsageError(
            f"token {member} does not permit {operation.value} with this key "
            "(CKR_KEY_FUNCTION_NOT_PERMITTED); use a key created with that usage"
        )
    if operation is Operation.DECRYPT and code in _DECRYPT_FAILURES:
        return InvalidCiphertextError(_DECRYPT_FAILED)
    if operation is Operation.ENCRYPT and code == 0x21:
        return ValidationError(
            f"token {member} rejected the plaintext length (CKR_DATA_LEN_RANGE); send less data"
        )
    if fault_of(exc) is Fault.CREDENTIAL:
        return MemberUnavailableError(
            f"login to token {member} failed with {describe(exc)}; correct the PIN source of "
            "the backend, or unlock the PIN with the token's security officer"
        )
    return MemberUnavailableError(
        f"token {member} failed during {operation.value}: {describe(exc)}"
    )


def decrypt_failed() -> InvalidCiphertextError:
    """Return the one error of every decrypt whose input does not authenticate."""
    return InvalidCiphertextError(_DECRYPT_FAILED)
