"""RAM identities and STS of the KMS: users, AccessKeys, roles, custom policies, AssumeRole.

- ``errors``: :class:`RamError` with the RAM and STS error codes.
- ``identities``: :class:`RamService`, the rules of the RAM API actions.
- ``sts``: :class:`StsService`, AssumeRole with its trust and permission checks.

The wire format of both APIs lives in :mod:`hyok.kms.api.ram`.
"""

from hyok.kms.ram.errors import RamError
from hyok.kms.ram.identities import CUSTOM_POLICY_TYPE, SYSTEM_POLICY_TYPE, RamService
from hyok.kms.ram.sts import DEFAULT_SESSION_DURATION, AssumedRole, StsService

__all__ = [
    "CUSTOM_POLICY_TYPE",
    "DEFAULT_SESSION_DURATION",
    "SYSTEM_POLICY_TYPE",
    "AssumedRole",
    "RamError",
    "RamService",
    "StsService",
]
