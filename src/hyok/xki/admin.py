"""The admin API of the XKI proxy: key management in the backends over HTTPS.

The admin API runs on its own listener and is separate from the XKS API. It
never accepts the SigV4 credentials: every request must carry the admin bearer
token (``Authorization: Bearer <token>``). Routes, all JSON:

    GET    /v1/backends                                  ListBackends
    GET    /v1/backends/{backend}/keys                   ListKeys
    POST   /v1/backends/{backend}/keys                   CreateKey  -> 201
    GET    /v1/backends/{backend}/keys/{key_id}          DescribeKey
    POST   /v1/backends/{backend}/keys/{key_id}/enable   EnableKey
    POST   /v1/backends/{backend}/keys/{key_id}/disable  DisableKey
    DELETE /v1/backends/{backend}/keys/{key_id}          DeleteKey  -> 204

Errors have the body ``{"code": ..., "message": ...}`` with the code and
HTTP status of the :mod:`hyok.common.errors` class. Every request, including
a rejected one, produces exactly one audit event and one log line. Neither
contains the token or key material.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hyok.common.errors import (
    AuthenticationFailedError,
    HyokError,
    InternalError,
    InvalidUriPathError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    ThrottlingError,
    UnsupportedOperationError,
    ValidationError,
)
from hyok.common.ids import is_valid_key_id, validate_key_id
from hyok.common.jsontypes import json_type_name
from hyok.common.secrets import Secret
from hyok.kmi.base import Capabilities, KeyInfo, KeyManager, KeyUsage

__all__ = ["MAX_BODY_BYTES", "AuditSink", "create_admin_app"]

#: Maximum size of a request body; the largest valid body is well under 1 KiB.
MAX_BODY_BYTES: Final = 8 * 1024

#: Receives one event per request; see :func:`create_admin_app` for the fields.
AuditSink = Callable[[Mapping[str, object]], None]

_LOG = logging.getLogger(__name__)
_REALM: Final = 'Bearer realm="hyok-admin"'
_CREATE_FIELDS: Final = ("keyId", "usages")
_USAGE_NAMES: Final = frozenset(usage.value for usage in KeyUsage)
# Values taken from the URL or body are capped before they reach a message,
# a log line or an audit event, because they are caller input of any length.
_MAX_ECHO_CHARS: Final = 128
_MAX_ECHO_PATH_CHARS: Final = 256

_T = TypeVar("_T")


class _BearerError(AuthenticationFailedError):
    """An authentication failure with the ``WWW-Authenticate`` challenge to return."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


@dataclass(slots=True)
class _AuditRecord:
    """Fields of the audit event that the handler fills in as it learns them."""

    action: str
    backend: str | None
    key_id: str | None


def create_admin_app(
    backends: Mapping[str, KeyManager],
    *,
    token: Secret,
    audit: AuditSink,
    executor: Executor | None = None,
) -> Starlette:
    """Build the admin ASGI app over the named backends.

    ``token`` is the bearer token every request must present. It is compared
    in constant time and never logged.

    ``audit`` is called once per request, allowed or not. Its mapping has the
    keys ``event`` ("admin"), ``action``, ``backend``, ``keyId``, ``outcome``,
    ``status`` (the HTTP status), ``latencyMs`` and ``source`` (the client IP
    address). ``action`` is a name such as "CreateKey", or "Unknown" for a path
    or method with no route. ``outcome`` is "ok" or the error code. The
    callback runs on the event loop, so it must not block, for example on a
    slow disk. An exception it raises is logged, and the response is still sent.

    Backend calls run in ``executor``. When it is None they run in the
    thread pool of Starlette (anyio), so a slow device never blocks the event
    loop.

    Example::

        app = create_admin_app({"local": keystore}, token=Secret(value), audit=audit_log.write)
        uvicorn.run(app, host="127.0.0.1", port=8444, ssl_certfile=..., ssl_keyfile=...)
    """
    api = _AdminApi(dict(backends), token=token, audit=audit, executor=executor)
    routes = [
        Route("/v1/backends", api.backends, methods=["GET"]),
        Route("/v1/backends/{backend}/keys", api.keys, methods=["GET", "POST"]),
        Route("/v1/backends/{backend}/keys/{key_id}", api.key, methods=["GET", "DELETE"]),
        Route("/v1/backends/{backend}/keys/{key_id}/enable", api.enable, methods=["POST"]),
        Route("/v1/backends/{backend}/keys/{key_id}/disable", api.disable, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: api.route_error})
    # A trailing-slash redirect would bypass authentication and auditing.
    app.router.redirect_slashes = False
    return app


class _AdminApi:
    """Request handlers bound to one set of backends, one token and one audit sink."""

    def __init__(
        self,
        backends: dict[str, KeyManager],
        *,
        token: Secret,
        audit: AuditSink,
        executor: Executor | None,
    ) -> None:
        self._backends = backends
        # Comparing digests keeps the comparison time independent of the
        # token's length as well as its content.
        self._token_digest = hashlib.sha256(token.reveal_bytes()).digest()
        self._audit = audit
        self._executor = executor
        self._failures = _FailureCounter()

    # Route endpoints: each names its action and hands the work to _serve.

    async def backends(self, request: Request) -> Response:
        return await self._serve(request, "ListBackends", self._list_backends)

    async def keys(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._serve(request, "CreateKey", self._create_key)
        return await self._serve(request, "ListKeys", self._list_keys)

    async def key(self, request: Request) -> Response:
        if request.method == "DELETE":
            return await self._serve(request, "DeleteKey", self._delete_key)
        return await self._serve(request, "DescribeKey", self._describe_key)

    async def enable(self, request: Request) -> Response:
        return await self._serve(request, "EnableKey", self._enable_key)

    async def disable(self, request: Request) -> Response:
        return await self._serve(request, "DisableKey", self._disable_key)

    async def route_error(self, request: Request, exc: Exception) -> Response:
        """Turn the router's 404 and 405 into API errors, after authentication."""
        assert isinstance(exc, HTTPException)
        path = _echo(request.url.path, _MAX_ECHO_PATH_CHARS)
        error: HyokError
        headers: dict[str, str] = {}
        if exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
            allowed = ", ".join(sorted(exc.headers["Allow"].split(", ")))
            headers["Allow"] = allowed
            error = MethodNotAllowedError(
                f"method {request.method} is not allowed on {path}; allowed methods: {allowed}"
            )
        else:
            error = InvalidUriPathError(
                f"no admin API route matches {path}; routes start with /v1/backends"
            )

        async def reject(_request: Request, _record: _AuditRecord) -> Response:
            raise error

        response = await self._serve(request, "Unknown", reject)
        if response.status_code == error.http_status:
            response.headers.update(headers)
        return response

    # Request pipeline.

    async def _serve(
        self,
        request: Request,
        action: str,
        handler: Callable[[Request, _AuditRecord], Awaitable[Response]],
    ) -> Response:
        started = time.perf_counter()
        backend = request.path_params.get("backend")
        key_id = request.path_params.get("key_id")
        record = _AuditRecord(
            action=action,
            backend=None if backend is None else _echo(backend),
            key_id=None if key_id is None else _echo(key_id),
        )

        try:
            self._authenticate(request)
            response = await handler(request, record)
            outcome = "ok"
        except HyokError as exc:
            response = _error_response(exc)
            outcome = exc.code
            if exc.http_status >= 500:
                _LOG.warning(
                    "admin %s on backend %s failed with %s: %s",
                    action,
                    record.backend,
                    exc.code,
                    exc.message,
                )
        except Exception:
            # The detail stays in the log, and the caller gets a generic message.
            _LOG.exception("admin %s on backend %s failed unexpectedly", action, record.backend)
            response = _error_response(
                InternalError("internal error in the admin API; the proxy log has the details")
            )
            outcome = InternalError.code

        response.headers["Cache-Control"] = "no-store"
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self._record(request, record, response.status_code, outcome, latency_ms)
        return response

    def _authenticate(self, request: Request) -> None:
        source = request.client.host if request.client else ""
        if self._failures.blocked(source):
            raise ThrottlingError(
                f"too many failed admin API authentications from {source}; wait "
                f"{_FAILURE_WINDOW_SECONDS:.0f} seconds and use the admin token of the proxy "
                "configuration"
            )
        try:
            self._check_token(request)
        except _BearerError:
            self._failures.add(source)
            raise

    def _check_token(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if header is None:
            raise _BearerError(
                "missing bearer token: send the header 'Authorization: Bearer <token>' "
                "with the admin token of the proxy configuration",
                _REALM,
            )
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _BearerError(
                "unsupported Authorization header: the admin API accepts only "
                "'Authorization: Bearer <token>'",
                _REALM,
            )
        # Starlette decodes header values as Latin-1, so this recovers the bytes sent.
        presented = hashlib.sha256(credentials.strip().encode("latin-1")).digest()
        if not hmac.compare_digest(presented, self._token_digest):
            raise _BearerError(
                "invalid bearer token: use the admin token of the proxy configuration "
                "([admin] token)",
                f'{_REALM}, error="invalid_token"',
            )

    def _record(
        self,
        request: Request,
        record: _AuditRecord,
        status: int,
        outcome: str,
        latency_ms: float,
    ) -> None:
        source = request.client.host if request.client else None
        _LOG.info(
            "admin %s %s -> %d %s action=%s backend=%s keyId=%s source=%s %.1f ms",
            request.method,
            _echo(request.url.path, _MAX_ECHO_PATH_CHARS),
            status,
            outcome,
            record.action,
            record.backend,
            record.key_id,
            source,
            latency_ms,
        )
        event: dict[str, object] = {
            "event": "admin",
            "action": record.action,
            "backend": record.backend,
            "keyId": record.key_id,
            "outcome": outcome,
            "status": status,
            "latencyMs": latency_ms,
            "source": source,
        }
        try:
            self._audit(event)
        except Exception:
            # The backend call has already happened, so failing the response
            # would mislead the caller. The log is the remaining trace.
            _LOG.exception(
                "audit callback failed; the event of admin %s on backend %s key %s is lost",
                record.action,
                record.backend,
                record.key_id,
            )

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        if self._executor is None:
            return await run_in_threadpool(function, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def _backend(self, request: Request) -> tuple[str, KeyManager]:
        name: str = request.path_params["backend"]
        backend = self._backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self._backends)) or "none"
            raise InvalidUriPathError(
                f"no backend named {_echo(name)!r}; configured backends: {known}"
            )
        return name, backend

    # Actions.

    async def _list_backends(self, _request: Request, _record: _AuditRecord) -> Response:
        def describe() -> list[dict[str, object]]:
            return [
                {
                    "name": name,
                    "vendor": backend.vendor,
                    "capabilities": _capabilities_json(backend.capabilities),
                }
                for name, backend in sorted(self._backends.items())
            ]

        return _json({"backends": await self._run(describe)})

    async def _list_keys(self, request: Request, _record: _AuditRecord) -> Response:
        name, backend = self._backend(request)
        keys = await self._run(backend.list_keys)
        return _json({"backend": name, "keys": [_key_json(info) for info in keys]})

    async def _create_key(self, request: Request, record: _AuditRecord) -> Response:
        name, backend = self._backend(request)
        body = await _read_json_object(request)
        key_id, usages = _parse_create(body)
        if key_id is not None:
            record.key_id = key_id

        def create() -> KeyInfo:
            if usages is not None:
                _check_usages(name, usages, backend.capabilities)
            return backend.create_key(key_id, usages)

        info = await self._run(create)
        record.key_id = info.key_id
        location = f"/v1/backends/{name}/keys/{info.key_id}"
        return _json(_key_json(info), status=201, headers={"Location": location})

    async def _describe_key(self, request: Request, _record: _AuditRecord) -> Response:
        _name, backend = self._backend(request)
        key_id = validate_key_id(request.path_params["key_id"])
        return _json(_key_json(await self._run(backend.describe_key, key_id)))

    async def _enable_key(self, request: Request, _record: _AuditRecord) -> Response:
        return await self._change_state(request, enable=True)

    async def _disable_key(self, request: Request, _record: _AuditRecord) -> Response:
        return await self._change_state(request, enable=False)

    async def _change_state(self, request: Request, *, enable: bool) -> Response:
        name, backend = self._backend(request)
        key_id = validate_key_id(request.path_params["key_id"])
        _reject_fields(await _read_json_object(request))

        def change() -> KeyInfo:
            if not backend.capabilities.can_disable:
                raise UnsupportedOperationError(
                    f"backend {name!r} cannot enable or disable keys; "
                    "manage the key state in the key manager itself"
                )
            if enable:
                return backend.enable_key(key_id)
            return backend.disable_key(key_id)

        return _json(_key_json(await self._run(change)))

    async def _delete_key(self, request: Request, _record: _AuditRecord) -> Response:
        name, backend = self._backend(request)
        key_id = validate_key_id(request.path_params["key_id"])

        def delete() -> None:
            if not backend.capabilities.can_delete:
                raise UnsupportedOperationError(
                    f"backend {name!r} cannot delete keys; "
                    "delete the key in the key manager itself, or disable it"
                )
            backend.delete_key(key_id)

        await self._run(delete)
        return Response(status_code=204)


# Request parsing.


async def _read_json_object(request: Request) -> dict[str, object]:
    """Read at most MAX_BODY_BYTES of body and parse it as a JSON object; empty means {}."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ValidationError(
                "invalid Content-Length header: send the body size in bytes as a decimal number"
            ) from None
        if length > MAX_BODY_BYTES:
            raise PayloadTooLargeError(_too_large(length))

    # A chunked body has no declared length, so the limit is also checked while reading.
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise PayloadTooLargeError(_too_large(None))
    except ClientDisconnect:
        # The client is gone and never reads this response, but the audit
        # event still records the attempt.
        raise ValidationError(
            "the client closed the connection before sending the whole request body"
        ) from None

    if not body.strip():
        return {}
    try:
        data = json.loads(bytes(body))
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f'{exc.colno}); send a JSON object such as {{"keyId": "my-key"}}'
        ) from None
    except UnicodeDecodeError:
        raise ValidationError("the request body is not valid UTF-8; send JSON in UTF-8") from None
    except RecursionError:
        raise ValidationError(
            "the request body nests too deeply; send a flat JSON object"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(
            f"the request body is a JSON {json_type_name(data)}; send a JSON object such as "
            '{"keyId": "my-key"}'
        )
    return data


def _too_large(length: int | None) -> str:
    size = "the request body" if length is None else f"the request body of {length} bytes"
    return f"{size} exceeds the limit of {MAX_BODY_BYTES} bytes; send only the documented fields"


def _parse_create(body: dict[str, object]) -> tuple[str | None, list[KeyUsage] | None]:
    """Check a CreateKey body and return its key ID and usages, each None when absent."""
    _reject_fields(body, allowed=_CREATE_FIELDS)

    key_id: str | None = None
    raw_id = body.get("keyId")
    if raw_id is not None:
        if not isinstance(raw_id, str):
            raise ValidationError(
                f"keyId must be a string, not a JSON {json_type_name(raw_id)}; "
                "omit it to have a UUID generated"
            )
        key_id = validate_key_id(raw_id)

    usages: list[KeyUsage] | None = None
    raw_usages = body.get("usages")
    if raw_usages is not None:
        allowed = ", ".join(usage.value for usage in KeyUsage)
        if not isinstance(raw_usages, list):
            raise ValidationError(
                f'usages must be a list of strings such as ["ENCRYPT", "DECRYPT"], not a '
                f"JSON {json_type_name(raw_usages)}"
            )
        if not raw_usages:
            raise ValidationError("usages must not be empty; omit it to get ENCRYPT and DECRYPT")
        usages = []
        for index, item in enumerate(raw_usages):
            if not isinstance(item, str) or item not in _USAGE_NAMES:
                if isinstance(item, str):
                    shown = repr(_echo(item))
                else:
                    shown = f"a JSON {json_type_name(item)}"
                raise ValidationError(
                    f"usages[{index}] is {shown}, which is not a key usage; use one of {allowed}"
                )
            usage = KeyUsage(item)
            if usage not in usages:
                usages.append(usage)
    return key_id, usages


def _reject_fields(body: dict[str, object], allowed: tuple[str, ...] = ()) -> None:
    for field in body:
        if field not in allowed:
            hint = f"allowed fields: {', '.join(allowed)}" if allowed else "send no body or {}"
            raise ValidationError(f"unknown field {_echo(field)!r} in the request body; {hint}")


def _check_usages(backend: str, usages: list[KeyUsage], capabilities: Capabilities) -> None:
    for usage in usages:
        if usage not in capabilities.usages:
            supported = ", ".join(u.value for u in KeyUsage if u in capabilities.usages)
            raise ValidationError(
                f"backend {backend!r} does not support key usage {usage.value}; "
                f"supported usages: {supported}"
            )


# Response building.


def _json(
    content: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)


def _error_response(exc: HyokError) -> Response:
    headers: dict[str, str] | None = None
    if isinstance(exc, _BearerError):
        headers = {"WWW-Authenticate": exc.challenge}
    elif isinstance(exc, ThrottlingError):
        headers = {"Retry-After": str(int(_FAILURE_WINDOW_SECONDS))}
    return _json(
        {"code": exc.code, "message": exc.message}, status=exc.http_status, headers=headers
    )


def _key_json(info: KeyInfo) -> dict[str, object]:
    """Describe a key for the wire; KeyInfo has no key material to leak."""
    return {
        "keyId": info.key_id,
        "keySpec": info.spec.value,
        "keyUsage": [usage.value for usage in KeyUsage if usage in info.usages],
        "keyStatus": info.state.value,
        "createdAt": _iso_utc(info.created_at),
    }


def _capabilities_json(capabilities: Capabilities) -> dict[str, object]:
    return {
        "usages": [usage.value for usage in KeyUsage if usage in capabilities.usages],
        "decryptIvLengths": sorted(capabilities.decrypt_iv_lengths),
        "canDisable": capabilities.can_disable,
        "canDelete": capabilities.can_delete,
        "blocking": capabilities.blocking,
        "extra": dict(capabilities.extra),
    }


def _iso_utc(moment: datetime) -> str:
    # A naive datetime from a backend is taken to be UTC already.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



def _echo(value: str, limit: int = _MAX_ECHO_CHARS) -> str:
    """Make caller input safe to repeat in a message, log line or audit event.

    Non-printable characters become '?' and the text is cut at ``limit`` characters.
    """
    if is_valid_key_id(value):
        return value
    printable = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return printable + ("..." if len(value) > limit else "")


_FAILURE_WINDOW_SECONDS: Final = 60.0
_MAX_FAILURES: Final = 10


class _FailureCounter:
    """Failed authentications per client address in a sliding window, to slow token guessing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, source: str) -> collections.deque[float]:
        times = self._failures.setdefault(source, collections.deque())
        horizon = self._clock() - _FAILURE_WINDOW_SECONDS
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            del self._failures[source]
            return collections.deque()
        return times

    def blocked(self, source: str) -> bool:
        return len(self._recent(source)) >= _MAX_FAILURES

    def add(self, source: str) -> None:
        self._failures.setdefault(source, collections.deque()).append(self._clock())
