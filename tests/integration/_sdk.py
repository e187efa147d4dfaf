"""Calling a KMS under test through the official SDK (``alibabacloud_kms20160120``).

- ``runtime``: RuntimeOptions that go straight to loopback, with generous timeouts.
- ``call``: the SDK's generic call, for hyok extensions and raw response bodies.
- ``client_error``: run a call that must fail with a 4xx, and return the exception.
- ``close_sdk_connections``: drop the SDK's pooled connections to one server.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, Final

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    OpenApiRequest,
)
from darabonba.core import DaraCore  # type: ignore[import-untyped]
from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

from hyok.kms import API_VERSION
from hyok.kms.sdk_call import rpc_params

__all__ = [
    "API_VERSION",
    "ERROR_FIELDS",
    "call",
    "client_error",
    "close_sdk_connections",
    "runtime",
]

ERROR_FIELDS: Final = frozenset({"RequestId", "Code", "Message", "HostId", "Recommend"})


def runtime() -> RuntimeOptions:
    """Return options that bypass proxy variables and allow a busy test machine 20 seconds."""
    return RuntimeOptions(no_proxy="127.0.0.1", read_timeout=20_000, connect_timeout=5_000)


def call(
    client: Any, action: str, query: dict[str, str] | None = None, *, version: str = API_VERSION
) -> dict[str, Any]:
    """Call ``action`` through the SDK's generic call and return the response body."""
    params = rpc_params(action, version)
    result = client.call_api(params, OpenApiRequest(query=query or {}), runtime())
    body: dict[str, Any] = result["body"]
    return body


def client_error(function: Callable[[], object]) -> ClientException:
    """Run ``function``, expect a ClientException with the full Alibaba error body, return it."""
    with pytest.raises(ClientException) as caught:
        function()
    error: ClientException = caught.value
    assert error.data is not None
    assert set(error.data) >= ERROR_FIELDS, error.data
    assert error.request_id == error.data["RequestId"]
    return error


def close_sdk_connections(endpoint: str) -> None:
    """Close the SDK's pooled keep-alive connections to ``endpoint``, so a server stops at once.

    ``endpoint`` is ``host:port`` or an https URL. darabonba keeps one
    ``requests`` session per host and port in a class attribute, and after an
    error response a connection can sit in a reference cycle outside the pool
    until a garbage collection closes it.
    """
    host = endpoint.removeprefix("https://")
    gc.collect()
    for key in [key for key in DaraCore._sessions if host in key]:
        DaraCore._sessions.pop(key).close()
