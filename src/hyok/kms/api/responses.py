"""The HTTP responses of the KMS OpenAPI, in the form the official SDK parses.

Every response is a JSON object in UTF-8 with the content type
``application/json;charset=utf-8`` and the header ``x-acs-request-id``. A
success has status 200 and the action's fields plus ``RequestId``. An error
has the error's status (400 to 599) and the fields ``RequestId``, ``HostId``,
``Code``, ``Message``, ``Recommend`` and ``HttpStatus``.

How ``alibabacloud_tea_openapi`` 0.4.6 turns an error response into an
exception: a status of 500 or more raises ServerException and any other
error status raises ClientException, with ``code``, ``status_code`` and
``request_id`` from the body. A ``x-acs-retry-after`` header with a positive
integer (milliseconds) raises ThrottlingException in their place. That class
is not a subclass of ClientException, so the header is sent only for a
:class:`~hyok.kms.api.errors.RejectedThrottlingError` that sets ``retry_after_ms``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

from hyok.common.errors import RequestError
from hyok.kms.api.errors import ForbiddenNoPermissionError, RejectedThrottlingError

__all__ = ["CONTENT_TYPE", "Response", "error", "success"]

CONTENT_TYPE: Final = "application/json;charset=utf-8"

Response = tuple[int, list[tuple[str, str]], bytes]
"""An HTTP status, the response headers and the body."""


def success(request_id: str, body: Mapping[str, Any]) -> Response:
    """Build the 200 response of an action from its result fields, adding ``RequestId``."""
    if "RequestId" in body:
        raise ValueError("the result fields must not contain RequestId; success() adds it")
    return _response(200, request_id, {**body, "RequestId": request_id}, [])


def error(request_id: str, exc: RequestError, *, host_id: str, recommend_base: str) -> Response:
    """Build the error response for ``exc``, which carries the code, the status and the message.

    ``host_id`` is the service's host name (``kms.cn-hangzhou.example.com``).
    ``Recommend`` is ``recommend_base`` with the code and the request ID as
    query parameters ``q`` and ``requestId``. A ForbiddenNoPermissionError
    adds its ``AccessDeniedDetail`` object, and a RejectedThrottlingError
    with a positive ``retry_after_ms`` adds the ``x-acs-retry-after`` header.
    """
    status = exc.http_status
    if not 400 <= status <= 599:
        raise ValueError(f"an error response needs a status from 400 to 599, not {status}")

    separator = "&" if "?" in recommend_base else "?"
    recommend = recommend_base + separator + urlencode({"q": exc.code, "requestId": request_id})
    body: dict[str, Any] = {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": exc.code,
        "Message": exc.message,
        "Recommend": recommend,
        "HttpStatus": status,
    }
    headers: list[tuple[str, str]] = []

    if isinstance(exc, ForbiddenNoPermissionError) and exc.access_denied_detail:
        body["AccessDeniedDetail"] = dict(exc.access_denied_detail)
    if isinstance(exc, RejectedThrottlingError) and exc.retry_after_ms and exc.retry_after_ms > 0:
        headers.append(("x-acs-retry-after", str(exc.retry_after_ms)))
    return _response(status, request_id, body, headers)


def _response(
    status: int, request_id: str, body: Mapping[str, Any], headers: list[tuple[str, str]]
) -> Response:
    # A lone surrogate becomes a \uXXXX escape, which is still valid JSON.
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8", "backslashreplace")
    return (
        status,
        [
            ("content-type", CONTENT_TYPE),
            ("content-length", str(len(data))),
            ("x-acs-request-id", request_id),
            *headers,
        ],
        data,
    )
