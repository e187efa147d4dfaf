"""The KMS OpenAPI (2016-01-20) front door as a plain ASGI application.

:class:`KmsApp` accepts ``POST`` and ``GET`` on ``/``, verifies the Alibaba
Cloud signature (ACS3-HMAC-SHA256 or V1 HMAC-SHA1), checks the API version,
and passes the decoded parameters to the handler registered for the action.
This module only translates between HTTP and handlers: the handlers hold the
business rules, and the store contains the AccessKeys.

Order of checks: path (``InvalidAction.NotFound``), method
(``MethodNotAllowed``), body size (``PayloadTooLarge``), signature, time,
nonce and AccessKey (the codes of :class:`~hyok.common.acs_signature.SignatureError`),
the AccessKey status (``InvalidAccessKeyId.Inactive``; revoked STS credentials
``InvalidSecurityToken.Expired``), the security token of STS credentials
(``InvalidSecurityToken.Malformed`` when missing,
``InvalidSecurityToken.MismatchWithAccessKey``), the version
(``InvalidParameter``), then the action (``InvalidAction.NotFound``).

Three APIs share the server, chosen by the request's version: KMS
(2016-01-20), RAM (2015-05-01) and STS (2015-04-01). The signer may be an
account's root AccessKey, a RAM user's AccessKey or STS credentials of a
role session, and handlers receive it as ``CallContext.principal``.

Request line length: every business parameter travels in the query string,
so a request line can exceed 100 KB (a 32 KB policy, Base64 blobs). Serve
this app with :class:`hyok.kms.http11.KmsHttpProtocol` as uvicorn's ``http``
setting. uvicorn's own ``httptools`` setting rejects a URL longer than 65,535
bytes, because its URL parser (``httptools.parse_url``) keeps 16-bit
offsets, and uvicorn responds "Invalid HTTP request received." uvicorn's
``h11`` works too, at about three times the CPU, when
``h11_max_incomplete_event_size`` (16 KiB by default) is raised to at least
:data:`MIN_H11_INCOMPLETE_EVENT_SIZE`.

Turn uvicorn's access log off (``access_log=False``, ``--no-access-log``),
because it writes the request target, and with it every parameter value.

Blocking work (the store lookups of AccessKeys and nonces, and the signature
check that makes them) runs in a worker thread, so the event loop stays free.
A request signed by a cached AccessKey, with nonces kept in memory, needs no
I/O and is verified on the event loop.
Each request writes one INFO line to the ``hyok.kms.api`` logger with the
action, status, code, request ID, verified access key ID and latency. It
never contains a parameter value, a secret or a signature.

Example::

    store = KmsStore(open_database(url), SecretBox(root_key))
    app = KmsApp(store, region="cn-hangzhou", nonce_cache=DatabaseNonceCache(store.database))
    uvicorn.run(
        app, host="127.0.0.1", port=8443, ssl_certfile=..., ssl_keyfile=...,
        http=KmsHttpProtocol, access_log=False,
    )
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar

from hyok.common.acs_signature import (
    DEFAULT_MAX_SKEW,
    AcsCredential,
    AcsRequest,
    AcsVerifier,
    InMemoryNonceCache,
    NonceCache,
    SignatureError,
    SignatureErrorCode,
    VerifiedCaller,
)
from hyok.common.errors import MethodNotAllowedError, PayloadTooLargeError, RequestError
from hyok.kms import API_VERSION
from hyok.kms.api import responses
from hyok.kms.api.errors import (
    InternalFailureError,
    InvalidActionNotFoundError,
    InvalidParameterError,
    KmsError,
    ServiceUnavailableTemporaryError,
    shown_value,
)
from hyok.kms.api.params import Params
from hyok.kms.api.ram import RAM_API_VERSION, STS_API_VERSION, ram_handlers, sts_handlers
from hyok.kms.audit import AuditEvent
from hyok.kms.domain import AccessKeyStatus
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.domain.ram import STS_ACCESS_KEY_PREFIX, security_token_hash
from hyok.kms.ram import RamService, StsService
from hyok.kms.store import KmsStore, StoreUnavailableError

__all__ = [
    "API_VERSION",
    "CONSOLE_PATH",
    "DEFAULT_CREDENTIAL_CACHE_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "HEALTH_PATH",
    "MIN_H11_INCOMPLETE_EVENT_SIZE",
    "RAM_API_VERSION",
    "STS_API_VERSION",
    "ASGIApp",
    "AccessKeyInactiveError",
    "CallContext",
    "Handler",
    "KmsApp",
    "LifespanHook",
    "SecurityTokenMismatchError",
    "builtin_handlers",
]

logger = logging.getLogger("hyok.kms.api")

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_CREDENTIAL_CACHE_SECONDS: Final = 5.0
MIN_H11_INCOMPLETE_EVENT_SIZE: Final = 256 * 1024
"""An ``h11_max_incomplete_event_size`` large enough for a 128 KB request line with its headers."""

_ALLOWED_METHODS: Final = ("GET", "POST")
_CACHE_MAX_ENTRIES: Final = 10_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_T = TypeVar("_T")



@dataclass(frozen=True, slots=True)
class CallContext:
    """The caller and place of one API call, which a handler receives with the parameters.

    ``request_id`` is an upper-case UUID4, as Alibaba Cloud writes it.
    ``account_id`` owns the verified ``access_key_id``. ``region`` is the
    region this service runs as. ``source_ip`` is the peer address of the
    connection (a reverse proxy's address when one is in front), or an empty
    string when the server does not report it. ``principal`` is the identity
    that signed: the account root, a RAM user, or a RAM role for STS
    credentials, whose session name is ``session_name`` (None otherwise).
    ``action`` is the API action, ``secure_transport`` whether the request came over TLS,
    ``authorized`` collects the ``kms:`` permissions checked so far, and
    ``resources`` the key IDs the request named, for the audit trail.
    ``via_service`` is the hyok extension parameter ``ViaService``: the
    integrating service that calls on the principal's behalf, as the caller declares it.
    """

    request_id: str
    account_id: str
    access_key_id: str
    region: str
    source_ip: str
    principal: RamIdentity
    session_name: str | None = None
    action: str = ""
    secure_transport: bool = True
    authorized: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    via_service: str = ""

    @property
    def principal_arn(self) -> str:
        """The caller's ARN: ``…:root``, ``…:user/<name>`` or ``…:assumed-role/<role>/<session>``.

        Identity policies name roles by ``…:role/<name>``, which ``principal.arn`` gives.
        """
        return _principal_arn(self.principal, self.session_name)


LifespanHook = Callable[[], Awaitable[None]]
"""An async callable that the app runs when the server starts or stops."""

Handler = Callable[[CallContext, Params], Awaitable[dict[str, Any]]]
"""An action handler: an async function from the call context and parameters to the result.

The result must not contain ``RequestId``, which the app adds. A handler
reports a caller fault by raising a :class:`~hyok.common.errors.RequestError`
such as a :class:`~hyok.kms.api.errors.KmsError`.
"""


class AccessKeyInactiveError(KmsError):
    """A request signed with an AccessKey whose status is Inactive."""

    code = "InvalidAccessKeyId.Inactive"
    # NOTE: the status of this gateway code is not documented for KMS. 400
    # matches the other AccessKey and signature codes of the gateway.
    http_status = 400


class SecurityTokenMismatchError(KmsError):
    """A security token that does not belong to the AccessKey that signed the request."""

    code = "InvalidSecurityToken.MismatchWithAccessKey"
    # NOTE: the gateway's status for this code is not documented; 400 matches
    # the other security token codes.
    http_status = 400


def builtin_handlers(regions: Sequence[str]) -> dict[str, Handler]:
    """Return the actions that need no key: ``DescribeRegions`` and ``DescribeAccountKmsStatus``."""
    region_list = [{"RegionId": region} for region in regions]

    async def describe_regions(_ctx: CallContext, _params: Params) -> dict[str, Any]:
        return {"Regions": {"Region": [dict(item) for item in region_list]}}

    async def describe_account_kms_status(_ctx: CallContext, _params: Params) -> dict[str, Any]:
        return {"AccountStatus": "Enabled"}

    return {
        "DescribeRegions": describe_regions,
        "DescribeAccountKmsStatus": describe_account_kms_status,
    }


@dataclass(frozen=True, slots=True)
class _Signer:
    """The signer of one AccessKey ID: its credential and the identity behind it.

    ``token_hash`` is the SHA-256 of the security token of STS credentials,
    and None for a permanent AccessKey. ``active`` is False for an Inactive
    AccessKey and for revoked STS credentials.
    """

    credential: AcsCredential
    account_id: str
    principal: RamIdentity
    session_name: str | None
    token_hash: bytes | None
    active: bool


class _AccessKeyDirectory:
    """A cache of the AccessKeys and STS credentials in the store, each kept ``ttl`` seconds.

    Only found keys are cached, so a new AccessKey works on its first
    request. A deactivated, deleted or revoked one stops working at most
    ``ttl`` seconds later. The verifier calls it from worker threads, so it
    is thread-safe.
    """

    def __init__(self, store: KmsStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._entries: dict[str, tuple[float, _Signer]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_AccessKeyDirectory(ttl={self._ttl}, entries={len(self._entries)})"

    def cached(self, access_key_id: str) -> _Signer | None:
        """Return the signer when the cache has a fresh entry, without reading the store."""
        if self._ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(access_key_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def get(self, access_key_id: str) -> _Signer | None:
        now = time.monotonic()
        found = self.cached(access_key_id)
        if found is not None:
            return found
        signer = self._load(access_key_id)
        if signer is not None and self._ttl > 0:
            with self._lock:
                if len(self._entries) >= _CACHE_MAX_ENTRIES:
                    self._entries = {
                        key: value for key, value in self._entries.items() if value[0] > now
                    }
                if len(self._entries) < _CACHE_MAX_ENTRIES:
                    self._entries[access_key_id] = (now + self._ttl, signer)
        return signer

    def _load(self, access_key_id: str) -> _Signer | None:
        if access_key_id.startswith(STS_ACCESS_KEY_PREFIX):
            with self._store.session(read_only=True) as session:
                sts = session.sts_credentials.get(access_key_id)
            if sts is None:
                return None
            return _Signer(
                credential=AcsCredential(sts.access_key_id, sts.secret, sts.expires_at),
                account_id=sts.account_id,
                principal=RamIdentity(sts.account_id, CallerKind.ROLE, sts.role_name),
                session_name=sts.session_name,
                token_hash=sts.token_hash,
                active=not sts.revoked,
            )
        with self._store.session(read_only=True) as session:
            access_key = session.access_keys.get(access_key_id)
        if access_key is None:
            return None
        principal = (
            RamIdentity(access_key.account_id, CallerKind.ROOT)
            if access_key.user_name is None
            else RamIdentity(access_key.account_id, CallerKind.USER, access_key.user_name)
        )
        return _Signer(
            credential=AcsCredential(access_key.access_key_id, access_key.secret),
            account_id=access_key.account_id,
            principal=principal,
            session_name=None,
            token_hash=None,
            active=access_key.status is AccessKeyStatus.ACTIVE,
        )

    def credential(self, access_key_id: str) -> AcsCredential | None:
        """Return the credential of an access key ID, or None when it is not found.

        Raises AccessKeyInactiveError for an Inactive AccessKey, and
        ``InvalidSecurityToken.Expired`` for revoked STS credentials.
        """
        return self._credential_of(self.get(access_key_id))

    def cached_credential(self, access_key_id: str) -> AcsCredential | None:
        """Like :meth:`credential`, from the cache only: raise _NotCachedError on a miss."""
        signer = self.cached(access_key_id)
        if signer is None:
            raise _NotCachedError
        return self._credential_of(signer)

    @staticmethod
    def _credential_of(signer: _Signer | None) -> AcsCredential | None:
        if signer is None:
            return None
        if signer.active:
            return signer.credential
        if signer.token_hash is not None:
            # NOTE: STS has no revocation call, so no code is documented for revoked
            # credentials. Expired is the code that makes SDK credential providers
            # fetch new credentials.
            raise SignatureError(
                SignatureErrorCode.SECURITY_TOKEN_EXPIRED,
                f"the STS credentials {signer.credential.access_key_id} were revoked: assume the "
                "role again (AssumeRole) to obtain new credentials",
            )
        raise AccessKeyInactiveError(
            "the AccessKey that signed the request is inactive: activate it or sign with "
            "an active AccessKey"
        )


class _NotCachedError(Exception):
    """The AccessKey is not in the cache, so verifying the request needs the store."""


class _Outcome:
    """The fields that the log line and the audit event of one request report."""

    __slots__ = (
        "access_key_id",
        "account_id",
        "action",
        "authenticated",
        "key_ids",
        "principal",
        "version",
        "via_service",
    )

    def __init__(self) -> None:
        self.action = "-"
        self.access_key_id = "-"
        self.account_id = "-"
        self.principal = "-"
        self.version = "-"
        self.authenticated = False
        self.key_ids: list[str] = []
        self.via_service = ""


class KmsApp:
    """ASGI callable serving the KMS OpenAPI on ``/``.

    ``store`` contains the accounts and AccessKeys. ``region`` is the region
    of this service, and ``regions`` what DescribeRegions lists
    (``region`` alone by default). ``handlers`` add actions to, or replace,
    the built-in ones. ``nonce_cache`` must be shared by every node that
    serves the same AccessKeys (a
    :class:`~hyok.kms.store.DatabaseNonceCache`); the default keeps nonces in
    this process. ``host_id`` is the ``HostId`` of error bodies
    (``kms.<region>.hyok.local`` by default) and ``recommend_base`` the start
    of their ``Recommend`` link. ``credential_cache_seconds`` is how long a
    found AccessKey is reused without reading the store (0 turns this off).
    ``executor`` runs the blocking work; None uses the loop's default executor.
    ``on_startup`` and ``on_shutdown`` are async callables that the ASGI
    lifespan runs in order when the server starts and stops. When a startup
    hook raises, the app reports ``lifespan.startup.failed`` and the server
    does not serve. A shutdown hook that raises is logged, and the later
    hooks still run. ``on_identity_change`` runs after every successful RAM
    action, so that caches of identity policies drop what may have changed.
    ``audit`` receives an :class:`~hyok.kms.audit.AuditEvent` for every
    request, after its response is sent. ``console`` is the ASGI app of the
    web console, which receives every request whose path starts with
    :data:`CONSOLE_PATH` and runs actions through :meth:`call_as`.
    """

    def __init__(
        self,
        store: KmsStore,
        *,
        region: str,
        regions: Sequence[str] | None = None,
        handlers: Mapping[str, Handler] | None = None,
        nonce_cache: NonceCache | None = None,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        clock: Callable[[], datetime] | None = None,
        host_id: str | None = None,
        recommend_base: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        credential_cache_seconds: float = DEFAULT_CREDENTIAL_CACHE_SECONDS,
        executor: Executor | None = None,
        on_startup: Sequence[LifespanHook] = (),
        on_shutdown: Sequence[LifespanHook] = (),
        on_identity_change: Callable[[], None] | None = None,
        audit: Callable[[AuditEvent], None] | None = None,
        console: ASGIApp | None = None,
    ) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be 0 or more, got {max_body_bytes}")
        if credential_cache_seconds < 0:
            raise ValueError(
                f"credential_cache_seconds must be 0 or more, got {credential_cache_seconds}"
            )
        self.region = region
        self.host_id = host_id or f"kms.{region}.hyok.local"
        self.recommend_base = recommend_base or f"https://{self.host_id}/troubleshoot"
        self.max_body_bytes = max_body_bytes
        self.handlers: dict[str, Handler] = {
            **builtin_handlers(list(regions) if regions is not None else [region]),
            **(handlers or {}),
        }
        identity_options: dict[str, Any] = {} if clock is None else {"clock": clock}
        ram = RamService(store, **identity_options)
        self._versions: dict[str, Mapping[str, Handler]] = {
            API_VERSION: self.handlers,
            RAM_API_VERSION: ram_handlers(ram, self._run),
            STS_API_VERSION: sts_handlers(StsService(store, **identity_options), ram, self._run),
        }
        self._directory = _AccessKeyDirectory(store, credential_cache_seconds)
        verifier_options: dict[str, Any] = {"max_skew": max_skew}
        if clock is not None:
            verifier_options["clock"] = clock
        if nonce_cache is None:
            nonce_cache = InMemoryNonceCache() if clock is None else InMemoryNonceCache(clock=clock)
        verifier_options["nonce_cache"] = nonce_cache
        self._verifier = AcsVerifier(self._directory.credential, **verifier_options)
        # With a cached AccessKey and nonces in memory, a request verifies without
        # I/O, so it is verified on the event loop and skips a worker thread.
        self._inline_verifier = (
            None
            if nonce_cache.blocking
            else AcsVerifier(self._directory.cached_credential, **verifier_options)
        )
        self._executor = executor
        self._on_startup = list(on_startup)
        self._on_shutdown = list(on_shutdown)
        self._on_identity_change = on_identity_change
        self._audit = audit
        self.console = console

    def __repr__(self) -> str:
        return f"KmsApp(region={self.region!r}, actions={len(self.handlers)})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self._on_startup:
                        await hook()
                except Exception as exc:
                    logger.exception("KMS startup failed")
                    failure = f"KMS startup failed: {type(exc).__name__}: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                failed = 0
                for hook in self._on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        logger.exception("a KMS shutdown step failed")
                        failed += 1
                if failed:
                    await send(
                        {
                            "type": "lifespan.shutdown.failed",
                            "message": f"{failed} KMS shutdown step(s) failed; see the log",
                        }
                    )
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == HEALTH_PATH and scope["method"] in ("GET", "HEAD"):
            # Liveness for load balancers and hyok up: no API call, so no log line
            # and no audit event.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
            return
        if self.console is not None and scope["path"].startswith(CONSOLE_PATH):
            # The console checks the rest of the path, and returns 404 for /consoleX.
            await self.console(scope, receive, send)
            return
        if self.console is not None and scope["method"] in ("GET", "HEAD"):
            # A browser that opens the endpoint, or requests an icon by habit, goes to
            # the console. No API call is an unsigned GET of / without a query.
            location = _BROWSER_REDIRECTS.get(scope["path"])
            if location is not None and not (scope["path"] == "/" and scope["query_string"]):
                await _redirect(send, location)
                return
        started = time.perf_counter()
        request_id = str(uuid.uuid4()).upper()
        outcome = _Outcome()
        try:
            result = await self._handle(scope, receive, request_id, outcome)
            status, headers, body = responses.success(request_id, result)
            code = "OK"
        except RequestError as exc:
            status, headers, body = self._error(request_id, exc)
            code = exc.code
        except StoreUnavailableError:
            logger.warning("store unavailable (request %s)", request_id, exc_info=True)
            failure: KmsError = ServiceUnavailableTemporaryError(
                "the KMS database is unavailable: retry later"
            )
            status, headers, body = self._error(request_id, failure)
            code = failure.code
        except Exception:
            logger.exception("unexpected failure (request %s)", request_id)
            failure = InternalFailureError(
                "the KMS failed to process the request: retry later, and report the RequestId "
                "if the failure persists"
            )
            status, headers, body = self._error(request_id, failure)
            code = failure.code
        if status == 405:
            headers.append(("allow", ", ".join(_ALLOWED_METHODS)))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        latency_ms = (time.perf_counter() - started) * 1000
        # With an audit trail, which records every request, the log line is DEBUG.
        logger.log(
            logging.DEBUG if self._audit is not None else logging.INFO,
            "kms request action=%s status=%d code=%s request_id=%s access_key_id=%s "
            "latency_ms=%.1f",
            outcome.action,
            status,
            code,
            request_id,
            outcome.access_key_id,
            latency_ms,
        )
        if self._audit is not None:
            client = scope.get("client")
            self._audit(
                AuditEvent(
                    request_id=request_id,
                    account_id=outcome.account_id,
                    principal=outcome.principal,
                    access_key_id=outcome.access_key_id,
                    source_ip=str(client[0]) if client else "",
                    version=outcome.version,
                    action=outcome.action,
                    key_ids=outcome.key_ids,
                    via_service=outcome.via_service,
                    outcome=_outcome_name(code, outcome.authenticated),
                    code=code,
                    latency_ms=latency_ms,
                )
            )

    def _error(self, request_id: str, exc: RequestError) -> responses.Response:
        return responses.error(
            request_id, exc, host_id=self.host_id, recommend_base=self.recommend_base
        )

    async def call_as(
        self,
        principal: RamIdentity,
        action: str,
        parameters: Mapping[str, str],
        *,
        request_id: str,
        source_ip: str,
        secure_transport: bool,
        channel: str = "console",
        version: str = API_VERSION,
    ) -> dict[str, Any]:
        """Run ``action`` as ``principal``, who has signed in some other way than a signature.

        The web console calls this for a principal of a console session. The
        handler gets the CallContext of a signed request, so authorisation,
        parameter checks, the log line and the audit event are those of the
        API. ``channel`` takes the place of the AccessKey ID in the context
        and the audit event, because no AccessKey signed. Returns the
        handler's result. A handler's RequestError propagates. A database
        outage raises ServiceUnavailableTemporary and any other failure
        InternalFailure, as the API responds.
        """
        started = time.perf_counter()
        context = CallContext(
            request_id=request_id,
            account_id=principal.account_id,
            access_key_id=channel,
            region=self.region,
            source_ip=source_ip,
            principal=principal,
            action=action,
            secure_transport=secure_transport,
        )
        code = "OK"
        try:
            handler = self._versions[version].get(action)
            if handler is None:
                raise InvalidActionNotFoundError(
                    f"the action {shown_value(action)} is not found in API version {version}"
                )
            context = replace(context, via_service=_via_service(parameters))
            result = await handler(context, Params(dict(parameters)))
            if version == RAM_API_VERSION and self._on_identity_change is not None:
                self._on_identity_change()
            return result
        except RequestError as exc:
            code = exc.code
            raise
        except StoreUnavailableError as exc:
            logger.warning("store unavailable (request %s)", request_id, exc_info=True)
            code = ServiceUnavailableTemporaryError.code
            raise ServiceUnavailableTemporaryError(
                "the KMS database is unavailable: retry later"
            ) from exc
        except Exception as exc:
            logger.exception("unexpected failure (request %s)", request_id)
            code = InternalFailureError.code
            raise InternalFailureError(
                "the KMS failed to process the request: retry later, and report the RequestId "
                "if the failure persists"
            ) from exc
        finally:
            self._report_call(context, version, code, started)

    def _report_call(self, context: CallContext, version: str, code: str, started: float) -> None:
        """Write the log line and the audit event of a :meth:`call_as` call."""
        latency_ms = (time.perf_counter() - started) * 1000
        logger.log(
            logging.DEBUG if self._audit is not None else logging.INFO,
            "kms request action=%s code=%s request_id=%s access_key_id=%s principal=%s "
            "latency_ms=%.1f",
            context.action,
            code,
            context.request_id,
            context.access_key_id,
            context.principal_arn,
            latency_ms,
        )
        if self._audit is None:
            return
        self._audit(
            AuditEvent(
                request_id=context.request_id,
                account_id=context.account_id,
                principal=context.principal_arn,
                access_key_id=context.access_key_id,
                source_ip=context.source_ip,
                version=version,
                action=context.action,
                key_ids=context.resources,
                via_service=context.via_service,
                outcome=_outcome_name(code, True),
                code=code,
                latency_ms=latency_ms,
            )
        )

    async def _handle(
        self, scope: Scope, receive: Receive, request_id: str, outcome: _Outcome
    ) -> dict[str, Any]:
        if scope["path"] != "/":
            raise InvalidActionNotFoundError(
                f"the path {shown_value(scope['path'])} is not found: send KMS API requests to "
                "the path /"
            )

        method = scope["method"]
        if method not in _ALLOWED_METHODS:
            raise MethodNotAllowedError(
                f"the HTTP method {shown_value(method)} is not allowed: send KMS API requests "
                "with POST or GET"
            )

        body = await self._read_body(scope, receive)
        caller = await self._verify(AcsRequest.from_asgi(scope, body))
        outcome.access_key_id = caller.access_key_id
        # The signature check has just read the AccessKey, so it is usually cached, and
        # only a miss needs a worker thread.
        signer = self._directory.cached(caller.access_key_id)
        if signer is None:
            signer = await self._run(self._directory.get, caller.access_key_id)
        if signer is None:
            # The AccessKey was deleted after the signature check read it.
            raise SignatureError(
                SignatureErrorCode.INVALID_ACCESS_KEY_ID_NOT_FOUND,
                "the AccessKey that signed the request is not found: sign with an active AccessKey",
            )
        _check_security_token(signer, caller.security_token)
        outcome.authenticated = True
        outcome.account_id = signer.account_id
        outcome.version = caller.version
        outcome.principal = _principal_arn(signer.principal, signer.session_name)

        handlers = self._versions.get(caller.version)
        if handlers is None:
            raise InvalidParameterError(
                "the API version is not supported: this service implements KMS API version "
                f"{API_VERSION}, RAM {RAM_API_VERSION} and STS {STS_API_VERSION}, so send one of "
                "them in x-acs-version (or Version)",
                parameter="Version",
            )

        handler = handlers.get(caller.action)
        if _ACTION_NAME.fullmatch(caller.action):
            # A well-formed name, known or not, goes to the log line and the audit trail.
            outcome.action = caller.action
        if handler is None:
            raise InvalidActionNotFoundError(
                f"the action {shown_value(caller.action)} is not found in API version "
                f"{caller.version} of this KMS: check the action name, which is case-sensitive, "
                "or see docs/api.md for the actions hyok serves"
            )

        client = scope.get("client")
        context = CallContext(
            request_id=request_id,
            account_id=signer.account_id,
            access_key_id=caller.access_key_id,
            region=self.region,
            source_ip=str(client[0]) if client else "",
            principal=signer.principal,
            session_name=signer.session_name,
            action=caller.action,
            secure_transport=scope.get("scheme") == "https",
            resources=outcome.key_ids,
            via_service=_via_service(caller.parameters),
        )
        outcome.via_service = context.via_service
        result = await handler(context, Params(caller.parameters))
        if caller.version == RAM_API_VERSION and self._on_identity_change is not None:
            # Any RAM change may change what a caller is allowed; drop what was cached.
            self._on_identity_change()
        return result

    async def _verify(self, request: AcsRequest) -> VerifiedCaller:
        if self._inline_verifier is not None:
            try:
                return self._inline_verifier.verify(request)
            except _NotCachedError:
                # Nothing is stored before the AccessKey is read, so the request
                # verifies again from the start in a worker thread.
                pass
        return await self._run(self._verifier.verify, request)

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            declared = value.strip() if name.lower() == b"content-length" else b""
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLargeError(
                    f"the request body is larger than {limit} bytes, the maximum this KMS "
                    "accepts: send large parameters in the query string"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"the request body is larger than {limit} bytes, the maximum this KMS accepts: "
                    "send large parameters in the query string"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _principal_arn(principal: RamIdentity, session_name: str | None) -> str:
    if principal.kind is CallerKind.ROLE:
        return f"acs:ram::{principal.account_id}:assumed-role/{principal.name}/{session_name}"
    return principal.arn


_VIA_SERVICE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")


def _via_service(parameters: Mapping[str, str]) -> str:
    value = parameters.get("ViaService")
    if value is None:
        return ""
    if not _VIA_SERVICE.fullmatch(value):
        raise InvalidParameterError(
            f"The parameter ViaService value {shown_value(value)} is not a service name. Use 1 "
            "to 64 lower-case letters, digits, '.' and '-', such as oss or ecs.",
            parameter="ViaService",
        )
    return value


CONSOLE_PATH: Final = "/console"
"""The path prefix of the web console, which :class:`KmsApp` passes to its ``console`` app."""
_BROWSER_REDIRECTS: Final = {
    "/": f"{CONSOLE_PATH}/",
    "/favicon.ico": f"{CONSOLE_PATH}/static/favicon.svg",
}


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode("ascii")),
                (b"content-length", b"0"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})

HEALTH_PATH: Final = "/healthz"
"""A GET of this path gets status 200 while the app serves; it is no API call and no audit event."""

_ACTION_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_DENIED_CODES: Final = frozenset({"Forbidden.NoPermission", "NoPermission"})


def _outcome_name(code: str, authenticated: bool) -> str:
    """Return the audit outcome of a request that ended with ``code``."""
    if code == "OK":
        return "success"
    if not authenticated:
        return "unauthenticated"
    if code in _DENIED_CODES:
        return "denied"
    return "failed"


def _check_security_token(signer: _Signer, token: str | None) -> None:
    """Require the security token of STS credentials, and no token with a permanent AccessKey."""
    if signer.token_hash is None:
        if token is not None:
            raise SecurityTokenMismatchError(
                "the request carries a security token, but it is signed with a permanent "
                "AccessKey: send a SecurityToken only with the STS AccessKey it was issued with"
            )
        return
    if token is None:
        raise SignatureError(
            SignatureErrorCode.SECURITY_TOKEN_MALFORMED,
            "the request is signed with STS credentials but carries no security token: send the "
            "SecurityToken that AssumeRole returned (x-acs-security-token or SecurityToken)",
        )
    if not hmac.compare_digest(security_token_hash(token), signer.token_hash):
        raise SecurityTokenMismatchError(
            "the security token does not belong to the STS AccessKey that signed the request: "
            "send the SecurityToken that AssumeRole returned with this AccessKey"
        )
