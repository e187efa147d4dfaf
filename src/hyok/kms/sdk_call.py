"""The official SDK's description of one KMS API call, for its generic ``call_api``.

hyok's own clients (the ``hyok kms`` commands and ``hyok up``) send the
hyok extension actions, such as CreateKmsInstance, through the SDK's generic
call, which signs them like any other action.

Example::

    body = client.call_api(rpc_params("GetKmsInstance"), OpenApiRequest(query=query), runtime)
"""

from __future__ import annotations

from typing import Any

from hyok.kms import API_VERSION

__all__ = ["rpc_params"]


def rpc_params(action: str, version: str = API_VERSION) -> Any:
    """Return the SDK ``Params`` of an RPC-style KMS call: POST on ``/`` over HTTPS, JSON back."""
    from alibabacloud_tea_openapi.utils_models import Params  # type: ignore[import-untyped]

    return Params(
        action=action,
        version=version,
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
