"""A KMS client without the official SDK, for the two calls of the file commands.

``hyok encrypt-file`` and ``decrypt-file`` make one call each
(GenerateDataKey, Decrypt). Through the official SDK, its import alone
cost about 0.35 s of every run, a third of the time plain AES-GCM takes
for 2 GB on the benchmark machine (docs/benchmarks.md). This client
signs the call with :func:`hyok.common.acs_signer.sign_acs3`, the SDK's
ACS3-HMAC-SHA256 algorithm, and sends it with ``http.client``:
one HTTPS POST to ``/``, the parameters in a form body, a JSON response.

It takes the same KmsTarget as :class:`~hyok.cli._kms_api.KmsClient`, so
``hyok-up.json``, the options and the environment variables mean the same,
and its failures read the same. An ``HTTPS_PROXY`` from the environment is
used as the SDK uses it, through a CONNECT tunnel, except for a KMS on
loopback.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from hyok import __version__
from hyok.cli._common import CliError
from hyok.cli._kms_api import (
    CONNECT_TIMEOUT_MS,
    READ_TIMEOUT_MS,
    ConnectionFailure,
    KmsTarget,
    api_failure_text,
    connection_failure,
    is_loopback,
    split_endpoint,
)
from hyok.common.acs_signer import sign_acs3
from hyok.kms import API_VERSION

__all__ = ["MAX_RESPONSE_BYTES", "DirectKmsClient", "KmsApiError"]

#: The largest response body read. A GenerateDataKey or Decrypt response is
#: under 2 KiB; anything near this is not the KMS.
MAX_RESPONSE_BYTES: Final = 1 << 20
_USER_AGENT: Final = f"hyok-cli/{__version__}"
_PROXY_VARIABLES: Final = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class KmsApiError(CliError):
    """An error response of the KMS; ``code`` is its error code, such as Forbidden.KeyNotFound."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class DirectKmsClient:
    """Call KMS API actions over one HTTPS connection; failures raise CliError.

    Use it as a context manager, which closes the connection.
    """

    def __init__(self, target: KmsTarget) -> None:
        self.target = target
        self.url = f"https://{target.endpoint}"
        self._connection: _TimedHTTPSConnection | None = None

    def __enter__(self) -> DirectKmsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DirectKmsClient({self.url!r}, access_key_id={self.target.access_key_id!r})"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def call(self, action: str, parameters: Mapping[str, str]) -> dict[str, Any]:
        """Send ``action`` with ``parameters`` and return the JSON body of a success."""
        request = sign_acs3(
            host=self.target.endpoint,
            action=action,
            version=API_VERSION,
            parameters=parameters,
            access_key_id=self.target.access_key_id,
            secret=self.target.access_key_secret,
            security_token=self.target.security_token,
        )
        headers = {**request.headers, "user-agent": _USER_AGENT, "accept": "application/json"}
        connection = self._connect()
        try:
            connection.request("POST", "/", body=request.body, headers=headers)
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES + 1)
        except ssl.SSLCertVerificationError as exc:
            raise self._failure("untrusted", exc.verify_message) from None
        except ssl.SSLError:
            raise self._failure("tls") from None
        except TimeoutError:
            # Before the TLS handshake completes the connect timeout applies.
            raise self._failure(
                "read-timeout" if connection.handshake_done else "connect-timeout"
            ) from None
        except ConnectionRefusedError:
            raise self._failure("refused") from None
        except socket.gaierror:
            raise self._failure("unresolved") from None
        except (OSError, http.client.HTTPException):
            raise self._failure("other") from None
        return self._body(response.status, raw)

    def _connect(self) -> _TimedHTTPSConnection:
        if self._connection is not None:
            return self._connection
        host, port = split_endpoint(self.target.endpoint)
        context = ssl.create_default_context(
            cafile=str(self.target.ca_cert) if self.target.ca_cert is not None else None
        )
        proxy = None if is_loopback(host) else _proxy_for(host)
        if proxy is None:
            connection = _TimedHTTPSConnection(host, port or 443, context=context)
        else:
            proxy_host, proxy_port, authorization = proxy
            connection = _TimedHTTPSConnection(proxy_host, proxy_port, context=context)
            tunnel_headers = {"Proxy-Authorization": authorization} if authorization else None
            connection.set_tunnel(host.strip("[]"), port or 443, headers=tunnel_headers)
        self._connection = connection
        return connection

    def _failure(self, failure: ConnectionFailure, reason: str | None = None) -> CliError:
        self.close()
        return CliError(connection_failure(self.target, failure, reason))

    def _body(self, status: int, raw: bytes) -> dict[str, Any]:
        document: Any = None
        if len(raw) <= MAX_RESPONSE_BYTES:
            try:
                document = json.loads(raw)
            except ValueError:
                document = None
        if not isinstance(document, dict):
            raise CliError(
                f"the response of {self.url} (HTTP {status}) is not a KMS API response; check "
                "that the endpoint is the hyok KMS"
            )
        if 200 <= status < 300:
            return document
        code = document.get("Code")
        message = document.get("Message")
        request_id = document.get("RequestId")
        code_text = code if isinstance(code, str) and code else f"HTTP {status}"
        text = f"{code_text}: {message if isinstance(message, str) else 'no message'}"
        if isinstance(request_id, str) and request_id:
            text += f" (request {request_id})"
        raise KmsApiError(api_failure_text(self.url, code_text, text), code_text)


class _TimedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPSConnection whose connect and TLS handshake have their own, shorter timeout."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext) -> None:
        super().__init__(host.strip("[]"), port, timeout=CONNECT_TIMEOUT_MS / 1000, context=context)
        self.handshake_done = False

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(READ_TIMEOUT_MS / 1000)
        self.handshake_done = True


def _proxy_for(host: str) -> tuple[str, int, str | None] | None:
    """Return the environment's HTTPS proxy for ``host`` as (host, port, Proxy-Authorization)."""
    if not any(name in os.environ for name in _PROXY_VARIABLES):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    address = proxies.get("https") or proxies.get("all")
    if not address or urllib.request.proxy_bypass(host.strip("[]")):
        return None
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme != "http" or not parts.hostname:
        raise CliError(
            f"the proxy {parts.scheme}://{parts.hostname or ''} from HTTPS_PROXY is not supported: "
            "give an http:// proxy that accepts CONNECT, or set NO_PROXY for the KMS host"
        )
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return parts.hostname, parts.port or 80, authorization
