"""Actions that external keys do not support, refused with ``UnsupportedOperation``.

External keys are symmetric AES-256 keys whose material and versions stay in
the customer's key manager. So key material import, rotation, new key
versions and the asymmetric and MAC operations are rejected, after the key
is found, with a message that gives the reason and what to do instead. The
2016-01-20 API has no backup or cross-region action. The key lookup rejects
a key ARN of another region.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from hyok.kms.api.actions._lookup import find_key
from hyok.kms.api.actions._services import Services
from hyok.kms.api.app import CallContext, Handler
from hyok.kms.api.errors import UnsupportedOperationError
from hyok.kms.api.params import Params

__all__ = ["REFUSED_ACTIONS", "unsupported_handlers"]

_KEY_MANAGER: Final = "your key manager owns the key material and its versions"
_SYMMETRIC: Final = "external keys are symmetric AES-256 keys for encryption"

REFUSED_ACTIONS: Final = {
    "CreateKeyVersion": f"new key versions are not supported for external keys: {_KEY_MANAGER}",
    "UpdateRotationPolicy": f"key rotation is not supported for external keys: {_KEY_MANAGER}",
    "GetParametersForImport": (
        f"key material import is not supported for external keys: {_KEY_MANAGER}"
    ),
    "ImportKeyMaterial": f"key material import is not supported for external keys: {_KEY_MANAGER}",
    "DeleteKeyMaterial": (
        f"deleting key material is not supported for external keys: {_KEY_MANAGER}; "
        "disable or delete the key there"
    ),
    "AsymmetricEncrypt": f"AsymmetricEncrypt is not supported: {_SYMMETRIC}; use Encrypt",
    "AsymmetricDecrypt": f"AsymmetricDecrypt is not supported: {_SYMMETRIC}; use Decrypt",
    "AsymmetricSign": f"AsymmetricSign is not supported: {_SYMMETRIC}",
    "AsymmetricVerify": f"AsymmetricVerify is not supported: {_SYMMETRIC}",
    "GetPublicKey": f"GetPublicKey is not supported: {_SYMMETRIC} and have no public key",
    "GenerateMac": f"GenerateMac is not supported: {_SYMMETRIC}, not MAC keys",
    "VerifyMac": f"VerifyMac is not supported: {_SYMMETRIC}, not MAC keys",
}


async def _refuse(
    reason: str, services: Services, ctx: CallContext, params: Params
) -> dict[str, Any]:
    found = await find_key(services, ctx, params)
    raise UnsupportedOperationError(f"Key {found.key.key_id}: {reason}.")


def unsupported_handlers(services: Services) -> dict[str, Handler]:
    """Return a refusing handler for each action in REFUSED_ACTIONS."""
    return {
        action: partial(_refuse, reason, services) for action, reason in REFUSED_ACTIONS.items()
    }
