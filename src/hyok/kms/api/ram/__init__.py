"""The RAM (2015-05-01) and STS (2015-04-01) APIs, served by the KMS app beside the KMS API.

- ``identities``: the RAM actions (users, AccessKeys, roles, custom policies).
- ``login_profiles``: the RAM login profile actions (console passwords of RAM users).
- ``sts``: AssumeRole and GetCallerIdentity.

:class:`~hyok.kms.api.app.KmsApp` dispatches a request here when its
``x-acs-version`` (or ``Version``) is :data:`RAM_API_VERSION` or
:data:`STS_API_VERSION`.
"""

from typing import Final

from hyok.kms.api.ram._wire import Runner
from hyok.kms.api.ram.identities import ram_handlers
from hyok.kms.api.ram.sts import sts_handlers

__all__ = ["RAM_API_VERSION", "STS_API_VERSION", "Runner", "ram_handlers", "sts_handlers"]

RAM_API_VERSION: Final = "2015-05-01"
"""The version of the Alibaba Cloud RAM API that the KMS serves."""
STS_API_VERSION: Final = "2015-04-01"
"""The version of the Alibaba Cloud STS API that the KMS serves."""
