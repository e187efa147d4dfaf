"""The KMS's asynchronous client of an XKI proxy (XKS proxy API v1).

:class:`XkiClient` sends GetKeyMetadata, Encrypt, Decrypt and GetHealthStatus
to the proxy that a :class:`ProxyBinding` describes. Each request is signed with
SigV4 (service ``kms-xks-proxy``) and goes over a pooled HTTP/1.1 keep-alive
connection with TLS verification always on. A call must finish within one
budget (250 ms by default). The budget covers waiting for a pooled
connection, connecting, the TLS handshake, the request and any retries.

Example::

    binding = ProxyBinding(
        endpoint="https://xks.example.com",
        uri_path="/kms/xks/v1",
        region="cn-hangzhou",
        access_key_id="MUBSXM6K3KMXHN6RRCXI7TWQH4",
        secret=Secret(stored_secret),
    )
    async with XkiClient(binding) as client:
        metadata = RequestMetadata(
            kms_request_id=request_id, kms_operation="Encrypt",
            principal_arn="acs:ram::1234567890:user/alice", kms_key_arn=key_arn,
        )
        output = await client.encrypt("app-1", data_key, aad, metadata)

Retries: GetKeyMetadata, Decrypt and GetHealthStatus are idempotent and are
tried again, at most ``max_attempts`` times, after a failed TCP connection, a
connection lost before the response, or an HTTP 429 or 503 response. A retry
waits a few milliseconds (random jitter). It starts only if the time left in
the budget is at least the duration of the failed attempt. So a retry that
would likely time out is not made, and the more precise error is kept.
Encrypt is never retried, and no other 4xx or 5xx response is.

Errors: every failure of a call raises one subclass of :class:`ProxyError`,
which carries a :class:`ProxyErrorKind`. The docstring of ``_errors`` has
the table of the KMS condition that each one means.

The private modules, one concept each:

- ``_binding``: :class:`ProxyBinding`, the proxy's connection settings, and their checks.
- ``_models``: :class:`RequestMetadata` and the results of the operations.
- ``_errors``: the :class:`ProxyError` tree and :class:`ProxyErrorKind`.
- ``_requests``: the four operations, the description of one call, and argument checks.
- ``_responses``: reading and validating responses, and XKS error bodies.
- ``_pool``: the keep-alive connection pool (asyncio protocols, httptools).
- ``_transport``: certificate pinning, and the translation of pool failures.
- ``_client``: :class:`XkiClient`, with the budget and the retries.
- ``_text``: printable, length-limited text for messages and logs.
"""

from hyok.kms.xki_client._binding import Connectivity, ProxyBinding, ProxyBindingError
from hyok.kms.xki_client._client import DEFAULT_TIMEOUT, XkiClient
from hyok.kms.xki_client._errors import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
)
from hyok.kms.xki_client._models import (
    EkmFleetMember,
    EkmHealthStatus,
    EncryptOutput,
    ExternalKeyStatus,
    HealthResult,
    KeyMetadataResult,
    RequestMetadata,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Connectivity",
    "EkmFleetMember",
    "EkmHealthStatus",
    "EncryptOutput",
    "ExternalKeyStatus",
    "HealthResult",
    "KeyMetadataResult",
    "ProxyBinding",
    "ProxyBindingError",
    "ProxyError",
    "ProxyErrorKind",
    "ProxyInvalidResponseError",
    "ProxyRejectedError",
    "ProxyTimeoutError",
    "ProxyTlsError",
    "ProxyUnreachableError",
    "RequestMetadata",
    "XkiClient",
]
