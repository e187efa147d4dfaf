"""RAM identities and STS of the KMS: users, AccessKeys, roles, custom policies, AssumeRole.

- ``errors``: :class:`RamError` with the RAM and STS error codes.
- ``identities``: :class:`RamService`, the rules of the RAM API actions.
- ``sts``: :class:`StsService`, AssumeRole with its trust and permission checks.
- ``login_profiles``: :class:`LoginProfileService`, console passwords of RAM users and
  account roots, and console sign-in.

The wire format of both APIs lives in :mod:`hyok.kms.api.ram`.
"""

from hyok.kms.ram.errors import ConsoleSignInError, RamError
from hyok.kms.ram.identities import CUSTOM_POLICY_TYPE, SYSTEM_POLICY_TYPE, RamService
from hyok.kms.ram.login_profiles import LoginProfileService
from hyok.kms.ram.sts import DEFAULT_SESSION_DURATION, AssumedRole, StsService

__all__ = [
    "CUSTOM_POLICY_TYPE",
    "DEFAULT_SESSION_DURATION",
    "SYSTEM_POLICY_TYPE",
    "AssumedRole",
    "ConsoleSignInError",
    "LoginProfileService",
    "RamError",
    "RamService",
    "StsService",
]
