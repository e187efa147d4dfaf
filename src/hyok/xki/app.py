"""The XKS proxy API v1 as a plain ASGI application.

The hot path (encrypt and decrypt) avoids framework routing: the URI is split
by hand into key-store prefix, key ID and operation, which keeps the per-request
overhead small enough for thousands of requests per second per core.

Order of checks for an XKS request: key-store prefix and operation in the URI
(InvalidUriPathException), method (405), body size, SigV4 signature
(AuthenticationFailedException), rate limit (ThrottlingException), content type
and body (ValidationException and friends), key ID and allowed keys,
secondary authorization (AccessDeniedException), then the backend within the
request deadline (DependencyTimeoutException).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from hyok.common.errors import (
    AccessDeniedError,
    DependencyTimeoutError,
    HyokError,
    InternalError,
    InvalidKeyUsageError,
    InvalidUriPathError,
    KeyNotFoundError,
    MethodNotAllowedError,
    RequestError,
    ThrottlingError,
    UnsupportedOperationError,
    ValidationError,
)
from hyok.common.ids import is_valid_key_id, validate_key_id
from hyok.kmi.base import HealthStatus
from hyok.xki import xks
from hyok.xki.metrics import CONTENT_TYPE_LATEST
from hyok.xki.runtime import PROXY_MODEL, KeyStore, Proxy
from hyok.xki.xks import Operation

__all__ = ["XksApp"]

logger = logging.getLogger("hyok.xki")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SUFFIX: Final = "/kms/xks/v1/"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_CREDENTIAL_POLL_SECONDS: Final = 1.0


class _Context:
    """Per-request facts gathered for the audit line and metrics."""

    __slots__ = ("access_key_id", "body", "deadline", "key_id", "metadata", "operation", "policy",
                 "store")

    def __init__(self, deadline: float) -> None:
        # Monotonic time by which every backend call of the request must finish.
        self.deadline = deadline
        self.store: KeyStore | None = None
        self.operation: Operation | None = None
        self.key_id = ""
        self.access_key_id = ""
        self.metadata: xks.RequestMetadata | None = None
        self.policy = ""
        # Kept only so that a rejected request's metadata can still be audited.
        self.body = b""


class XksApp:
    """ASGI callable serving the XKS routes, ``/healthz`` and ``/metrics``."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._max_body = proxy.settings.server.max_body_bytes
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # Lifespan ---------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        # Signal handlers can only be installed from the main thread; tests
        # run the app in a thread and reload explicitly.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self.proxy.reload)
        self._tasks.append(loop.create_task(self._watch_credentials()))
        for name in self.proxy.health:
            members = await self.proxy.fleet(name)
            logger.info("backend %s health: %s", name,
                        ", ".join(f"{m.id}={m.status.value}" for m in members))

    async def _watch_credentials(self) -> None:
        while True:
            await asyncio.sleep(_CREDENTIAL_POLL_SECONDS)
            self.proxy.reload_changed_credentials()

    # HTTP -------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/healthz":
            await self._load_balancer_health(scope, send)
            return
        if path == "/metrics" and self.proxy.settings.server.metrics:
            await self._metrics(scope, send)
            return

        started = time.perf_counter()
        context = _Context(time.monotonic() + self.proxy.deadline)
        status = 200
        outcome = "ok"
        message = ""
        try:
            body = await self._handle(scope, receive, context)
        except RequestError as exc:
            status, outcome, message = exc.http_status, exc.code, exc.message
            body = xks.error_body(exc.code, exc.message)
            if context.metadata is None and context.access_key_id:
                # Audit the KMS request ID of an authenticated request even when
                # another field of its body was invalid.
                with contextlib.suppress(RequestError):
                    context.metadata = xks.parse_metadata_request(context.body,
                                                                  Operation.HEALTH)
        except HyokError as exc:
            logger.error("request failed: %s", exc.message)
            status, outcome, message = 500, InternalError.code, "internal error"
            body = xks.error_body(outcome, "the proxy failed to process the request")
        except Exception:
            logger.exception("unexpected error in %s", context.operation or "request")
            status, outcome, message = 500, InternalError.code, "internal error"
            body = xks.error_body(outcome, "the proxy failed to process the request")
        # An explicit length spares uvicorn the chunked framing of the body.
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii"))]
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._record(scope, context, status, outcome, message=message,
                     seconds=time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, context: _Context) -> bytes:
        store, operation, key_id = self._route(scope["path"], context)
        if scope["method"] != "POST":
            raise MethodNotAllowedError(
                f"{scope['method']} is not allowed on XKS URIs; send a POST request"
            )
        body = context.body = await self._read_body(scope, receive)
        # Signatures cover the path as sent, before percent-decoding.
        raw_path = scope.get("raw_path") or scope["path"].encode("ascii", "replace")
        credential = store.verifier.verify(
            "POST", raw_path.decode("ascii", "replace"), scope["query_string"], scope["headers"],
            body,
        )
        context.access_key_id = credential.access_key_id
        state = store.state
        if state.bucket is not None and not state.bucket.try_acquire():
            raise ThrottlingError(
                f"key store {store.name} exceeds its rate limit of "
                f"{state.settings.rate_limit:g} requests per second; retry with backoff"
            )
        if operation is Operation.HEALTH:
            # The error table allows no ValidationException for GetHealthStatus,
            # so a malformed health body is audited but still gets a health response.
            with contextlib.suppress(RequestError):
                context.metadata = xks.parse_metadata_request(body, operation)
            return await self._health(store)

        query = scope["query_string"]
        if query:
            shown = query[:100].decode("ascii", "replace")
            raise ValidationError(
                f"the XKS API takes no query parameters; remove {shown!r} from the URI"
            )
        _check_content_type(scope["headers"])

        validate_key_id(key_id)
        if operation is Operation.ENCRYPT:
            encrypt = xks.parse_encrypt(body)
            context.metadata = encrypt.metadata
        elif operation is Operation.DECRYPT:
            decrypt = xks.parse_decrypt(body)
            context.metadata = decrypt.metadata
        else:
            context.metadata = xks.parse_metadata_request(body, operation)
        if not state.allows_key(key_id):
            raise KeyNotFoundError(f"key {key_id} is not found in key store {store.name}")
        self._authorize(store, operation, key_id, context)

        if operation is Operation.ENCRYPT:
            return await self._encrypt(store, context, key_id, encrypt)
        if operation is Operation.DECRYPT:
            return await self._decrypt(store, context, key_id, decrypt)
        info = await self._call(store, context, store.backend.describe_key, key_id)
        return xks.metadata_response(info)

    def _route(self, path: str, context: _Context) -> tuple[KeyStore, Operation, str]:
        cut = path.rfind(_SUFFIX)
        if cut < 0:
            raise InvalidUriPathError(
                f"URI path {path[:100]!r} is not an XKS v1 path; expected "
                "[/<prefix>]/kms/xks/v1/keys/<keyId>/<operation> or [/<prefix>]/kms/xks/v1/health"
            )
        store = self.proxy.keystores.get(path[:cut])
        if store is None:
            raise InvalidUriPathError(
                f"no key store has the URI path prefix {path[:cut][:100]!r}; check XksProxyUriPath"
            )
        context.store = store
        rest = path[cut + len(_SUFFIX):]
        if rest == "health":
            context.operation = Operation.HEALTH
            return store, Operation.HEALTH, ""
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "keys" and parts[1]:
            try:
                operation = Operation(parts[2])
            except ValueError:
                operation = None
            if operation is not None and operation is not Operation.HEALTH:
                context.operation = operation
                context.key_id = parts[1] if is_valid_key_id(parts[1]) else parts[1][:128]
                return store, operation, parts[1]
        raise InvalidUriPathError(
            f"URI path {path[:100]!r} names no XKS operation; use keys/<keyId>/metadata, "
            "keys/<keyId>/encrypt, keys/<keyId>/decrypt or health"
        )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise ValidationError("the Content-Length header is not a number") from None
                if declared > self._max_body:
                    raise UnsupportedOperationError(
                        f"the request body has {declared} bytes; this proxy accepts at most "
                        f"{self._max_body}"
                    )
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise UnsupportedOperationError(
                    f"the request body exceeds {self._max_body} bytes, the most this proxy accepts"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _authorize(self, store: KeyStore, operation: Operation, key_id: str,
                   context: _Context) -> None:
        authorizer = store.state.authorizer
        if authorizer is None or context.metadata is None:
            return
        decision = authorizer.authorize(
            operation=operation.action,
            key_id=key_id,
            key_store=store.name,
            metadata=context.metadata.as_context(),
        )
        if not decision.allowed:
            context.policy = decision.reason
            if decision.errors:
                context.policy += "; evaluation errors: " + "; ".join(decision.errors)
            raise AccessDeniedError(
                f"secondary authorization denied {operation.action} on key {key_id} "
                f"for principal {context.metadata.aws_principal_arn[:200]}"
            )

    # Operations -------------------------------------------------------------

    async def _call(self, store: KeyStore, context: _Context, function: Callable[..., Any],
                    *args: Any) -> Any:
        """Run one backend call within what is left of the request's deadline."""
        timed_out = DependencyTimeoutError(
            f"the key manager of key store {store.name} did not respond within "
            f"{self.proxy.deadline * 1000:.0f} ms"
        )
        remaining = context.deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out
        if not store.backend.capabilities.blocking:
            return function(*args)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.proxy.executor, function, *args)
        try:
            return await asyncio.wait_for(future, remaining)
        except TimeoutError:
            raise timed_out from None

    async def _encrypt(self, store: KeyStore, context: _Context, key_id: str,
                       request: xks.EncryptRequest) -> bytes:
        aad = xks.backend_aad(request.aad, xks.CIPHERTEXT_METADATA)
        result = await self._call(store, context, store.backend.encrypt, key_id,
                                  request.plaintext, aad)
        integrity = None
        if request.want_cdiv:
            # Hash first, then prove the output decrypts, so that corruption after
            # the hash is caught rather than covered by it.
            integrity = xks.cdiv(request.aad, xks.CIPHERTEXT_METADATA, result)
            try:
                check = await self._call(store, context, store.backend.decrypt, key_id,
                                         result.iv, result.ciphertext, result.tag, aad)
            except InvalidKeyUsageError:
                # NOTE: a key without the DECRYPT usage cannot prove the round
                # trip, so its CDIV rests on the hash alone.
                check = request.plaintext
            if not hmac.compare_digest(check, request.plaintext):
                logger.error("encryption under key %s in key store %s did not decrypt to "
                             "its input", key_id, store.name)
                raise InternalError("the encryption did not decrypt to its input; retry")
        return xks.encrypt_response(result, integrity)

    async def _decrypt(self, store: KeyStore, context: _Context, key_id: str,
                       request: xks.DecryptRequest) -> bytes:
        aad = xks.backend_aad(request.aad, request.ciphertext_metadata)
        plaintext = await self._call(store, context, store.backend.decrypt, key_id, request.iv,
                                     request.ciphertext, request.tag, aad)
        return xks.decrypt_response(plaintext)

    async def _health(self, store: KeyStore) -> bytes:
        members = await self.proxy.fleet(store.backend_name)
        if all(member.status is HealthStatus.UNAVAILABLE for member in members):
            details = "; ".join(f"{m.id}: {m.detail}" for m in members)
            raise InternalError(f"the key manager of key store {store.name} is unavailable: "
                                f"{details}")
        return xks.health_response(
            fleet_size=self.proxy.settings.server.fleet_size,
            proxy_model=PROXY_MODEL,
            ekm_vendor=store.backend.vendor,
            members=members,
        )

    # Plain routes -----------------------------------------------------------

    async def _load_balancer_health(self, scope: Scope, send: Send) -> None:
        healthy = True
        for cache in self.proxy.health.values():
            members = cache.last
            if members is None:
                members = await cache.get()
            if all(m.status is HealthStatus.UNAVAILABLE for m in members):
                healthy = False
        status = 200 if healthy else 503
        body = b'{"status":"ok"}' if healthy else b'{"status":"unavailable"}'
        await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    async def _metrics(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"allow", b"GET")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = self.proxy.metrics.render()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))]})
        await send({"type": "http.response.body", "body": body})

    # Audit ------------------------------------------------------------------

    def _record(self, scope: Scope, context: _Context, status: int, outcome: str, *,
                message: str, seconds: float) -> None:
        store = context.store.name if context.store is not None else "-"
        operation = context.operation.action if context.operation is not None else "-"
        event: dict[str, object] = {
            "event": "xks",
            "keyStore": store,
            "operation": operation,
            "keyId": context.key_id,
            "outcome": outcome,
            "status": status,
            "latencyMs": round(seconds * 1000, 3),
            "accessKeyId": context.access_key_id,
            "source": (scope.get("client") or ("", 0))[0],
        }
        metadata = context.metadata
        if metadata is not None:
            event["kmsRequestId"] = metadata.kms_request_id
            event["kmsOperation"] = metadata.kms_operation
            event["principal"] = metadata.aws_principal_arn
            event["kmsKeyArn"] = metadata.kms_key_arn
            event["viaService"] = metadata.kms_via_service
            event["sourceVpc"] = metadata.aws_source_vpc
            event["sourceVpce"] = metadata.aws_source_vpce
        if message:
            event["message"] = message
        if context.policy:
            event["policy"] = context.policy
        self.proxy.audit(event)
        self.proxy.metrics.observe(store, operation, outcome, seconds)


def _check_content_type(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type == b"application/json":
                return
            shown = value[:60].decode("latin-1")
            raise ValidationError(
                f"Content-Type {shown!r} is not accepted; send application/json"
            )
    raise ValidationError("the Content-Type header is missing; send application/json")
