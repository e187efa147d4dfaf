"""The client (:class:`XkiClient`): the XKS operations, the budget of a call and its retries."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from hyok.common.sigv4 import Credential, sign
from hyok.common.tls import client_ssl_context
from hyok.kms.xki_client._binding import ProxyBinding
from hyok.kms.xki_client._errors import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
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
from hyok.kms.xki_client._pool import (
    Attempt,
    ConnectFailedError,
    ConnectionLostError,
    MalformedResponseError,
    ProxyConnectionPool,
)
from hyok.kms.xki_client._requests import (
    _DECRYPT,
    _ENCRYPT,
    _HEALTH,
    _METADATA,
    _b64,
    _Call,
    _check_bytes,
    _check_key_id,
    _check_metadata,
    _Operation,
)
from hyok.kms.xki_client._responses import (
    _MAX_RESPONSE_BYTES,
    _check_body,
    _Fields,
    _integrity_value,
    _invalid,
    _rejection,
)
from hyok.kms.xki_client._text import _printable
from hyok.kms.xki_client._transport import (
    _pinning_ssl_object_class,
    _timeout_error,
    _transport_error,
)

logger = logging.getLogger("hyok.kms.xki_client")

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 0.25
"""Seconds a call may take in all, retries included: the XKS latency budget."""

_SERVICE: Final = "kms-xks-proxy"
_IV_LENGTHS: Final = frozenset({12, 16})
_TAG_LENGTH: Final = 16
_MAX_CIPHERTEXT_METADATA: Final = 20
_CDIV_LENGTH: Final = 32

# Retry backoff: the first retry waits 2.5 to 5 ms, each further one twice as long.
_BACKOFF_SECONDS: Final = 0.005
# A retry needs at least this much budget left, whatever the failed attempt took.
_MIN_RETRY_BUDGET: Final = 0.01
# uvicorn closes idle connections after 5 s by default. Dropping them sooner
# avoids sending a request on a connection that the server is closing.
_KEEPALIVE_EXPIRY: Final = 4.0

_JITTER: Final = random.SystemRandom()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class XkiClient:
    """Asynchronous client of one XKI proxy, with a keep-alive connection pool.

    ``timeout`` is the budget of each call in seconds, retries included. It
    stays a public attribute, and a change applies to calls that start later.
    ``max_connections`` bounds the pool, ``max_attempts`` the requests of one
    idempotent call, and ``clock`` returns the timezone-aware signing time.
    Close the client with :meth:`aclose` or ``async with``.

    Raises ConfigError when ``binding.ca_file`` cannot be used.
    """

    def __init__(
        self,
        binding: ProxyBinding,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 32,
        max_attempts: int = 3,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not 0 < timeout <= 60:
            raise ValueError(f"timeout must be more than 0 and at most 60 seconds, got {timeout}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")

        self.binding = binding
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._clock = clock
        self._credential = Credential(binding.access_key_id, binding.secret)
        dial_host, dial_port = binding.dial_address
        url_host = f"[{dial_host}]" if ":" in dial_host else dial_host
        self._base_url = f"https://{url_host}:{dial_port}{binding.uri_path}"
        self._origin_length = len(self._base_url) - len(binding.uri_path)
        self._pool = ProxyConnectionPool(
            self._ssl_context(binding),
            address=binding.dial_address,
            server_hostname=binding.host,
            max_connections=max_connections,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
            max_body_bytes=_MAX_RESPONSE_BYTES,
        )

    @staticmethod
    def _ssl_context(binding: ProxyBinding) -> ssl.SSLContext:
        if binding.ca_file is not None:
            context = client_ssl_context(binding.ca_file)
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["http/1.1"])
        if binding.pinned_sha256 is not None:
            context.sslobject_class = _pinning_ssl_object_class(binding.pinned_sha256)
        return context

    def __repr__(self) -> str:
        return f"XkiClient(endpoint={self.binding.endpoint!r}, timeout={self.timeout})"

    async def __aenter__(self) -> XkiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()

    # Operations -------------------------------------------------------------

    async def get_key_metadata(
        self, external_key_id: str, metadata: RequestMetadata
    ) -> KeyMetadataResult:
        """Fetch the spec, usages and state of an external key (GetKeyMetadata)."""
        _check_key_id(external_key_id)
        _check_metadata(metadata, _METADATA)
        body = {"requestMetadata": metadata.to_wire()}

        def parse(fields: _Fields) -> KeyMetadataResult:
            usages = fields.document.get("keyUsage")
            if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages):
                raise _invalid(fields.call, "keyUsage is missing or not a list of strings")
            return KeyMetadataResult(
                key_spec=fields.text("keySpec"),
                key_usage=frozenset(usages),
                key_status=fields.enum("keyStatus", ExternalKeyStatus),
            )

        return await self._call(_METADATA, external_key_id, body, metadata, parse)

    async def encrypt(
        self,
        external_key_id: str,
        plaintext: bytes,
        aad: bytes | None,
        metadata: RequestMetadata,
        *,
        want_cdiv: bool = True,
    ) -> EncryptOutput:
        """Encrypt ``plaintext`` with AES-GCM under an external key, binding ``aad``.

        With ``want_cdiv`` the proxy is asked for the ciphertext data integrity
        value, and the client recomputes it over AAD, ciphertext metadata, IV,
        ciphertext and tag. A missing or different value raises
        ProxyInvalidResponseError. An integrity value that the proxy sends
        unasked is checked too. Encrypt is never retried.
        """
        _check_key_id(external_key_id)
        _check_bytes("plaintext", plaintext)
        if aad is not None:
            _check_bytes("aad", aad)
        _check_metadata(metadata, _ENCRYPT)
        body: dict[str, Any] = {
            "requestMetadata": metadata.to_wire(),
            "plaintext": _b64(plaintext),
            "encryptionAlgorithm": "AES_GCM",
        }
        if aad:
            body["additionalAuthenticatedData"] = _b64(aad)
        if want_cdiv:
            body["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"

        def parse(fields: _Fields) -> EncryptOutput:
            call = fields.call
            ciphertext = fields.required_binary("ciphertext")
            iv = fields.required_binary("initializationVector")
            tag = fields.required_binary("authenticationTag")
            ciphertext_metadata = fields.binary("ciphertextMetadata", required=False) or b""

            if len(ciphertext) != len(plaintext):
                raise _invalid(
                    call,
                    f"ciphertext has {len(ciphertext)} bytes for a plaintext of "
                    f"{len(plaintext)}; AES-GCM keeps the length",
                )
            if len(iv) not in _IV_LENGTHS:
                raise _invalid(call, f"initializationVector has {len(iv)} bytes, not 12 or 16")
            if len(tag) != _TAG_LENGTH:
                raise _invalid(call, f"authenticationTag has {len(tag)} bytes, not 16")
            if len(ciphertext_metadata) > _MAX_CIPHERTEXT_METADATA:
                raise _invalid(
                    call, f"ciphertextMetadata has {len(ciphertext_metadata)} bytes, more than 20"
                )

            received = fields.binary("ciphertextDataIntegrityValue", required=False)
            if received is None and want_cdiv:
                raise _invalid(call, "ciphertextDataIntegrityValue is missing but was requested")
            if received is not None:
                expected = _integrity_value(aad or b"", ciphertext_metadata, iv, ciphertext, tag)
                if len(received) != _CDIV_LENGTH or not hmac.compare_digest(received, expected):
                    raise ProxyInvalidResponseError(
                        ProxyErrorKind.INTEGRITY_CHECK_FAILED,
                        f"{call.subject} failed: the ciphertext data integrity value does not "
                        "match the returned ciphertext, IV, tag and metadata",
                        operation=call.operation.name,
                        external_key_id=call.external_key_id,
                    )

            return EncryptOutput(ciphertext, iv, tag, ciphertext_metadata)

        return await self._call(_ENCRYPT, external_key_id, body, metadata, parse)

    async def decrypt(
        self,
        external_key_id: str,
        ciphertext: bytes,
        iv: bytes,
        tag: bytes,
        ciphertext_metadata: bytes,
        aad: bytes | None,
        metadata: RequestMetadata,
    ) -> bytes:
        """Decrypt AES-GCM ciphertext under an external key and return the plaintext.

        Empty ``ciphertext_metadata`` and empty or None ``aad`` are left out
        of the request.
        """
        _check_key_id(external_key_id)
        for name, value in (("ciphertext", ciphertext), ("iv", iv), ("tag", tag)):
            _check_bytes(name, value)
        _check_bytes("ciphertext_metadata", ciphertext_metadata)
        if aad is not None:
            _check_bytes("aad", aad)
        _check_metadata(metadata, _DECRYPT)
        body: dict[str, Any] = {
            "requestMetadata": metadata.to_wire(),
            "ciphertext": _b64(ciphertext),
            "encryptionAlgorithm": "AES_GCM",
            "initializationVector": _b64(iv),
            "authenticationTag": _b64(tag),
        }
        if ciphertext_metadata:
            body["ciphertextMetadata"] = _b64(ciphertext_metadata)
        if aad:
            body["additionalAuthenticatedData"] = _b64(aad)

        def parse(fields: _Fields) -> bytes:
            plaintext = fields.required_binary("plaintext")
            if len(plaintext) != len(ciphertext):
                raise _invalid(
                    fields.call,
                    f"plaintext has {len(plaintext)} bytes for a ciphertext of "
                    f"{len(ciphertext)}; AES-GCM keeps the length",
                )
            return plaintext

        return await self._call(_DECRYPT, external_key_id, body, metadata, parse)

    async def health(self, metadata: RequestMetadata) -> HealthResult:
        """Ask the proxy for its health and that of its key manager fleet (GetHealthStatus)."""
        _check_metadata(metadata, _HEALTH)
        body = {"requestMetadata": metadata.to_wire()}

        def parse(fields: _Fields) -> HealthResult:
            call = fields.call
            fleet_size = fields.document.get("xksProxyFleetSize")
            if not isinstance(fleet_size, int) or isinstance(fleet_size, bool) or fleet_size < 1:
                raise _invalid(call, "xksProxyFleetSize is missing or not a positive integer")
            entries = fields.document.get("ekmFleetDetails")
            if not isinstance(entries, list):
                raise _invalid(call, "ekmFleetDetails is missing or not a list")
            fleet = []
            for entry in entries:
                if not isinstance(entry, dict):
                    raise _invalid(call, "an ekmFleetDetails entry is not a JSON object")
                member = _Fields(call, entry)
                fleet.append(
                    EkmFleetMember(
                        id=member.text("id"),
                        model=member.text("model"),
                        health_status=member.enum("healthStatus", EkmHealthStatus),
                    )
                )
            return HealthResult(
                fleet_size=fleet_size,
                proxy_vendor=fields.text("xksProxyVendor"),
                proxy_model=fields.text("xksProxyModel"),
                ekm_vendor=fields.text("ekmVendor"),
                fleet=tuple(fleet),
            )

        return await self._call(_HEALTH, None, body, metadata, parse)

    # Sending ----------------------------------------------------------------

    def _path(self, operation: _Operation, external_key_id: str | None) -> str:
        if external_key_id is None:
            return f"/{operation.suffix}"
        return f"/keys/{external_key_id}/{operation.suffix}"

    async def _call(
        self,
        operation: _Operation,
        external_key_id: str | None,
        body: Mapping[str, Any],
        metadata: RequestMetadata,
        parse: Callable[[_Fields], T],
    ) -> T:
        call = _Call(operation, external_key_id, self.binding.endpoint, self.timeout)
        url = self._base_url + self._path(operation, external_key_id)
        payload = json.dumps(body, separators=(",", ":")).encode("ascii")
        clock = asyncio.get_running_loop().time
        started = clock()
        deadline = started + self.timeout
        attempt = 0
        status = 0
        try:
            while True:
                attempt += 1
                attempt_started = clock()
                try:
                    status, response_body = await self._attempt(call, url, payload, deadline)
                    if status != 200:
                        raise _rejection(call, status, response_body)
                    return parse(_Fields.parse(call, response_body))
                except ProxyError as error:
                    error.attempts = attempt
                    delay = self._retry_delay(call, error, attempt, attempt_started, deadline)
                    if delay is None:
                        _log_failure(call, error, metadata)
                        raise
                    _log_retry(call, error, metadata, attempt, deadline - clock())
                    await asyncio.sleep(delay)
        finally:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "XKS %s key=%s request_id=%s status=%s latency_ms=%.1f attempts=%d",
                    operation.name,
                    external_key_id or "-",
                    _printable(metadata.kms_request_id, 128),
                    status or "-",
                    (clock() - started) * 1000,
                    attempt,
                )

    def _retry_delay(
        self,
        call: _Call,
        error: ProxyError,
        attempt: int,
        attempt_started: float,
        deadline: float,
    ) -> float | None:
        """Return the wait before the next attempt, or None when the call must not be retried."""
        if not call.operation.idempotent or attempt >= self.max_attempts:
            return None
        if isinstance(error, ProxyRejectedError):
            if error.http_status not in (429, 503):
                return None
        elif error.kind not in (ProxyErrorKind.CONNECTION_FAILED, ProxyErrorKind.CONNECTION_LOST):
            return None
        now = asyncio.get_running_loop().time()
        delay: float = _BACKOFF_SECONDS * 2 ** (attempt - 1) * _JITTER.uniform(0.5, 1.0)
        needed = max(now - attempt_started, _MIN_RETRY_BUDGET)
        if deadline - now - delay < needed:
            return None
        return delay

    async def _attempt(
        self, call: _Call, url: str, payload: bytes, deadline: float
    ) -> tuple[int, bytes]:
        """Send one request and read the response, within the time left until ``deadline``."""
        remaining = deadline - asyncio.get_running_loop().time()
        headers = {"Host": self.binding.authority, "Content-Type": "application/json"}
        headers.update(
            sign(
                "POST",
                url,
                headers,
                payload,
                self._credential,
                region=self.binding.region,
                service=_SERVICE,
                now=self._clock(),
            )
        )
        request = _request_bytes(url[self._origin_length :], headers, payload)
        attempt = Attempt()
        try:
            async with asyncio.timeout(max(remaining, 0)):
                status, response_headers, body = await self._pool.send(request, attempt)
        except TimeoutError as exc:
            raise _timeout_error(call, attempt.phase) from exc
        except (ConnectFailedError, ConnectionLostError, MalformedResponseError) as exc:
            raise _transport_error(call, exc, attempt.phase) from exc
        _check_body(call, response_headers, body)
        return status, body


def _request_bytes(target: str, headers: Mapping[str, str], payload: bytes) -> bytes:
    """Write an HTTP/1.1 POST: request line, the signed headers, Content-Length and body."""
    lines = [f"POST {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + payload


def _log_retry(
    call: _Call, error: ProxyError, metadata: RequestMetadata, attempt: int, left: float
) -> None:
    logger.warning(
        "retrying XKS %s key=%s request_id=%s after attempt %d failed: kind=%s errorName=%s "
        "status=%s, %.0f ms left",
        call.operation.name,
        call.external_key_id or "-",
        _printable(metadata.kms_request_id, 128),
        attempt,
        error.kind.value,
        getattr(error, "error_name", "-"),
        getattr(error, "http_status", "-"),
        left * 1000,
    )


def _log_failure(call: _Call, error: ProxyError, metadata: RequestMetadata) -> None:
    logger.warning(
        "XKS %s key=%s request_id=%s failed: attempts=%d kind=%s errorName=%s status=%s "
        "proxy_message=%r message=%s",
        call.operation.name,
        call.external_key_id or "-",
        _printable(metadata.kms_request_id, 128),
        error.attempts,
        error.kind.value,
        getattr(error, "error_name", "-"),
        getattr(error, "http_status", "-"),
        getattr(error, "proxy_message", ""),
        error.message,
    )
