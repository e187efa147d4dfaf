"""TLS of the XKS listener against a real uvicorn server on 127.0.0.1.

Covers the protocol versions and cipher suites of server_ssl_context, and
mutual TLS: OpenSSL checks the CA, and hyok.xki.tls_guard checks the subject.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import trustme

from hyok.common.errors import ConfigError
from hyok.common.tls import (
    CertificateBundle,
    SubjectAllowList,
    client_ssl_context,
    create_ca,
    issue_client_certificate,
    issue_server_certificate,
    server_ssl_context,
)
from hyok.xki.tls_guard import base_protocol_class, mtls_protocol_class
from tests.conftest import register_sensitive
from tests.integration._server import serve_tls

pytestmark = pytest.mark.integration

ALLOWED_SUBJECT = "CN=kms.hyok.internal,O=hyok"
INTRUDER_SUBJECT = "CN=intruder.hyok.internal,O=hyok"
REQUEST = b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

# (http, loop) pairs that the subject guard must work with.
IMPLEMENTATIONS = [
    ("httptools", "uvloop"),
    ("httptools", "asyncio"),
    ("h11", "uvloop"),
    ("h11", "asyncio"),
]


# ---------------------------------------------------------------------------
# Test app, certificates and a raw TLS client


class PingApp:
    """ASGI app that returns 200 "ok" to every HTTP request and records its path."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.paths.append(scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


class RejectRecorder:
    """An on_reject callback that stores the subjects it receives."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self._called = threading.Event()

    def __call__(self, subject: str) -> None:
        self.subjects.append(subject)
        self._called.set()

    def wait(self, timeout: float = 5.0) -> list[str]:
        self._called.wait(timeout)
        return self.subjects


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    allowed: Pair
    intruder: Pair
    expired: Pair
    foreign: Pair


def _write(bundle: CertificateBundle, directory: Path, name: str) -> Pair:
    # Registered so that the log hygiene test fails if a key reaches a log.
    register_sensitive(b"".join(bundle.key_pem.splitlines()[1:-1]))
    pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    bundle.write(pair.cert, pair.key)
    return pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = create_ca("hyok test CA", days=30)
    other_ca = create_ca("other CA", days=30)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.cert_pem)
    long_ago = datetime.now(UTC) - timedelta(days=10)
    return Pki(
        ca=ca_path,
        server=_write(
            issue_server_certificate(ca, hostnames=["localhost", "127.0.0.1", "::1"], days=7),
            directory,
            "server",
        ),
        allowed=_write(
            issue_client_certificate(ca, subject=ALLOWED_SUBJECT, days=7), directory, "allowed"
        ),
        intruder=_write(
            issue_client_certificate(ca, subject=INTRUDER_SUBJECT, days=7), directory, "intruder"
        ),
        expired=_write(
            issue_client_certificate(ca, subject=ALLOWED_SUBJECT, days=1, now=long_ago),
            directory,
            "expired",
        ),
        foreign=_write(
            issue_client_certificate(other_ca, subject=ALLOWED_SUBJECT, days=7),
            directory,
            "foreign",
        ),
    )


@dataclass
class Exchange:
    """What a client saw on one connection that sends one request."""

    handshake_error: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    response: bytes = b""
    read_error: str | None = None
    session: ssl.SSLSession | None = None
    session_reused: bool = False

    @property
    def status_line(self) -> bytes:
        return self.response.split(b"\r\n", 1)[0]


def exchange(
    base_url: str, context: ssl.SSLContext, *, session: ssl.SSLSession | None = None
) -> Exchange:
    """Connect, handshake, send REQUEST and read until the server closes."""
    url = httpx.URL(base_url)
    assert url.host == "127.0.0.1"
    assert url.port is not None
    result = Exchange()
    with socket.create_connection((url.host, url.port), timeout=5) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
        except ssl.SSLError as exc:
            result.handshake_error = exc.reason or type(exc).__name__
            return result
        with tls:
            cipher = tls.cipher()
            result.version = tls.version()
            result.cipher = cipher[0] if cipher else None
            result.alpn = tls.selected_alpn_protocol()
            result.session_reused = bool(tls.session_reused)
            chunks: list[bytes] = []
            try:
                tls.sendall(REQUEST)
                while chunk := tls.recv(65536):
                    chunks.append(chunk)
            except ssl.SSLError as exc:
                result.read_error = exc.reason or type(exc).__name__
            except OSError as exc:
                result.read_error = type(exc).__name__
            result.response = b"".join(chunks)
            result.session = tls.session
    return result


def client_context(
    pki: Pki,
    client: Pair | None = None,
    *,
    version: Literal["1.2", "1.3"] | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    if client is None:
        context = client_ssl_context(pki.ca)
    else:
        context = client_ssl_context(pki.ca, cert_file=client.cert, key_file=client.key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@pytest.fixture
def app() -> PingApp:
    return PingApp()


@pytest.fixture
def server_url(pki: Pki, app: PingApp) -> Iterator[str]:
    context = server_ssl_context(pki.server.cert, pki.server.key)
    with serve_tls(app, ssl_context=context) as url:
        yield url


@contextmanager
def mtls_server(
    pki: Pki,
    app: PingApp,
    *,
    http: Literal["httptools", "h11"] = "httptools",
    loop: Literal["auto", "asyncio", "uvloop"] = "auto",
    client_ca: bool = True,
    on_reject: RejectRecorder | None = None,
) -> Iterator[str]:
    """Serve ``app`` with mutual TLS that allows only ALLOWED_SUBJECT."""
    context = server_ssl_context(
        pki.server.cert, pki.server.key, client_ca_file=pki.ca if client_ca else None
    )
    protocol = mtls_protocol_class(
        base_protocol_class(http), SubjectAllowList([ALLOWED_SUBJECT]), on_reject
    )
    with serve_tls(app, ssl_context=context, http=protocol, loop=loop) as url:
        yield url


def assert_refused(result: Exchange, app: PingApp) -> None:
    """Assert that the server neither completed the exchange nor called the app.

    The client cannot see why: asyncio (CPython 3.11) and uvloop (0.23) close
    the connection without sending the alert that OpenSSL writes, so the
    client reports an unexpected EOF. The unit tests of server_ssl_context
    check the server-side reason of each rejection in memory.
    """
    assert result.response == b""
    assert app.paths == []


def run_curl(url: str, pki: Pki, client: Pair, *options: str) -> subprocess.CompletedProcess[bytes]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    command = [
        curl,
        "-q",  # ignore any ~/.curlrc
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "--cacert",
        str(pki.ca),
        "--cert",
        str(client.cert),
        "--key",
        str(client.key),
        "--write-out",
        "\n%{http_code}",
        *options,
        f"{url}/ping",
    ]
    return subprocess.run(command, capture_output=True, check=False, timeout=30)


# ---------------------------------------------------------------------------
# Protocol versions and cipher suites


def test_tls13_aes256_gcm(server_url: str, pki: Pki, app: PingApp) -> None:
    result = exchange(server_url, client_context(pki, version="1.3"))

    assert result.handshake_error is None
    assert result.version == "TLSv1.3"
    assert result.cipher == "TLS_AES_256_GCM_SHA384"
    assert result.alpn == "http/1.1"
    assert result.status_line == b"HTTP/1.1 200 OK"
    assert app.paths == ["/ping"]


def test_tls12_ecdhe_ecdsa_aes256(server_url: str, pki: Pki) -> None:
    context = client_context(pki, version="1.2", ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")

    result = exchange(server_url, context)

    assert result.handshake_error is None
    assert result.version == "TLSv1.2"
    assert result.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert result.alpn == "http/1.1"
    assert result.status_line == b"HTTP/1.1 200 OK"


def test_tls12_ecdhe_rsa_aes256(app: PingApp, tmp_path: Path) -> None:
    authority = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = authority.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "rsa.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    leaf.private_key_pem.write_to_path(str(key_path))
    context = client_ssl_context(ca_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")

    with serve_tls(app, ssl_context=server_ssl_context(cert_path, key_path)) as url:
        result = exchange(url, context)

    assert result.handshake_error is None
    assert result.cipher == "ECDHE-RSA-AES256-GCM-SHA384"
    assert result.status_line == b"HTTP/1.1 200 OK"


def test_tls13_chacha20_with_curl(server_url: str, pki: Pki) -> None:
    completed = run_curl(
        server_url,
        pki,
        pki.allowed,
        "--verbose",
        "--tlsv1.3",
        "--tls13-ciphers",
        "TLS_CHACHA20_POLY1305_SHA256",
    )

    assert completed.returncode == 0, completed.stderr.decode()
    assert completed.stdout == b"ok\n200"
    assert b"TLSv1.3 / TLS_CHACHA20_POLY1305_SHA256" in completed.stderr


def test_tls11_rejected(server_url: str, pki: Pki, app: PingApp) -> None:
    context = client_ssl_context(pki.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    # Security level 0 lets this client offer TLS 1.1 at all, so that the
    # server is the side that rejects it.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")

    result = exchange(server_url, context)

    assert result.handshake_error is not None
    assert_refused(result, app)


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES256-SHA384",
    ],
)
def test_tls12_unlisted_cipher_rejected(
    server_url: str, pki: Pki, app: PingApp, cipher: str
) -> None:
    result = exchange(server_url, client_context(pki, version="1.2", ciphers=cipher))

    assert result.handshake_error is not None
    assert_refused(result, app)


def test_tls13_minimum_rejects_tls12(pki: Pki, app: PingApp) -> None:
    context = server_ssl_context(pki.server.cert, pki.server.key, min_version="1.3")

    with serve_tls(app, ssl_context=context) as url:
        old = exchange(url, client_context(pki, version="1.2"))
        assert old.handshake_error is not None
        assert_refused(old, app)

        new = exchange(url, client_context(pki, version="1.3"))
        assert new.status_line == b"HTTP/1.1 200 OK"


# ---------------------------------------------------------------------------
# Mutual TLS


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(("http", "loop"), IMPLEMENTATIONS)
def test_mtls_allowed_subject(
    pki: Pki, app: PingApp, http: Any, loop: Any, version: Literal["1.2", "1.3"]
) -> None:
    recorder = RejectRecorder()
    context = client_context(pki, pki.allowed, version=version)
    context.set_alpn_protocols(["http/1.1"])

    with (
        mtls_server(pki, app, http=http, loop=loop, on_reject=recorder) as url,
        httpx.Client(verify=context, trust_env=False) as client,
    ):
        response = client.get(f"{url}/ping")

    assert response.status_code == 200
    assert response.text == "ok"
    assert app.paths == ["/ping"]
    assert recorder.subjects == []


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(("http", "loop"), IMPLEMENTATIONS)
def test_mtls_other_subject_closed(
    pki: Pki, app: PingApp, http: Any, loop: Any, version: Literal["1.2", "1.3"]
) -> None:
    recorder = RejectRecorder()

    with mtls_server(pki, app, http=http, loop=loop, on_reject=recorder) as url:
        result = exchange(url, client_context(pki, pki.intruder, version=version))
        rejected = recorder.wait()

    # OpenSSL accepts the chain, so the guard is what closes the connection.
    # Whether the client's handshake completes first depends on the loop:
    # with TLS 1.2 on asyncio the server's Finished message is never sent.
    assert_refused(result, app)
    assert rejected == [INTRUDER_SUBJECT]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mtls_no_client_certificate(pki: Pki, app: PingApp, version: Literal["1.2", "1.3"]) -> None:
    recorder = RejectRecorder()

    with mtls_server(pki, app, on_reject=recorder) as url:
        result = exchange(url, client_context(pki, version=version))

    # In TLS 1.3 the client finishes its side of the handshake before the
    # server checks the certificate, so only TLS 1.2 fails in the handshake.
    if version == "1.2":
        assert result.handshake_error is not None
    assert_refused(result, app)
    assert recorder.subjects == []


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("client", ["foreign", "expired"])
def test_mtls_untrusted_client_certificate(
    pki: Pki, app: PingApp, version: Literal["1.2", "1.3"], client: str
) -> None:
    recorder = RejectRecorder()
    pair: Pair = getattr(pki, client)

    with mtls_server(pki, app, on_reject=recorder) as url:
        result = exchange(url, client_context(pki, pair, version=version))

    if version == "1.2":
        assert result.handshake_error is not None
    assert_refused(result, app)
    assert recorder.subjects == []


def test_mtls_resumed_session_allowed(pki: Pki, app: PingApp) -> None:
    context = client_context(pki, pki.allowed, version="1.3")

    with mtls_server(pki, app) as url:
        first = exchange(url, context)
        second = exchange(url, context, session=first.session)

    assert first.status_line == b"HTTP/1.1 200 OK"
    assert second.session_reused
    assert second.status_line == b"HTTP/1.1 200 OK"
    assert app.paths == ["/ping", "/ping"]


def test_guard_without_client_ca_rejects(pki: Pki, app: PingApp) -> None:
    recorder = RejectRecorder()

    with mtls_server(pki, app, client_ca=False, on_reject=recorder) as url:
        result = exchange(url, client_context(pki, pki.allowed))
        rejected = recorder.wait()

    assert_refused(result, app)
    assert rejected == [""]


def test_guard_logs_without_callback(
    pki: Pki, app: PingApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hyok.xki.tls_guard")

    with mtls_server(pki, app) as url:
        result = exchange(url, client_context(pki, pki.intruder))
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)

    assert result.response == b""
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert repr(INTRUDER_SUBJECT) in messages[0]
    assert "127.0.0.1" in messages[0]


def test_curl_allowed_subject(pki: Pki, app: PingApp) -> None:
    with mtls_server(pki, app) as url:
        completed = run_curl(url, pki, pki.allowed)

    assert completed.returncode == 0, completed.stderr.decode()
    assert completed.stdout == b"ok\n200"
    assert app.paths == ["/ping"]


def test_curl_other_subject(pki: Pki, app: PingApp) -> None:
    recorder = RejectRecorder()

    with mtls_server(pki, app, on_reject=recorder) as url:
        completed = run_curl(url, pki, pki.intruder)
        rejected = recorder.wait()

    # 52 is "empty reply from server" and 56 "failure when receiving data".
    assert completed.returncode in {52, 56}, completed.stderr.decode()
    assert completed.stdout == b"\n000"
    assert rejected == [INTRUDER_SUBJECT]
    assert app.paths == []


# ---------------------------------------------------------------------------
# Protocol class helpers


def test_base_protocol_class_names() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert base_protocol_class("httptools") is HttpToolsProtocol
    assert base_protocol_class("h11") is H11Protocol
    assert base_protocol_class("auto") is HttpToolsProtocol


def test_base_protocol_class_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown HTTP implementation 'zttp'"):
        base_protocol_class("zttp")  # type: ignore[arg-type]


def test_mtls_protocol_class_shape() -> None:
    base = base_protocol_class("h11")
    protocol = mtls_protocol_class(base, SubjectAllowList([ALLOWED_SUBJECT]))

    assert protocol.__name__ == "MutualTlsH11Protocol"
    assert issubclass(protocol, base)
    assert ALLOWED_SUBJECT in (protocol.__doc__ or "")


def test_mtls_protocol_class_needs_protocol() -> None:
    with pytest.raises(TypeError, match=r"asyncio\.Protocol subclass"):
        mtls_protocol_class(object, SubjectAllowList([ALLOWED_SUBJECT]))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# The serve_tls helper


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_serve_tls_with_cert_files(pki: Pki, app: PingApp) -> None:
    context = client_ssl_context(pki.ca)

    with (
        serve_tls(app, cert_file=pki.server.cert, key_file=pki.server.key) as url,
        httpx.Client(verify=context, trust_env=False) as client,
    ):
        response = client.get(f"{url}/ping")

    assert url.startswith("https://127.0.0.1:")
    assert response.status_code == 200
    assert app.paths == ["/ping"]


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback address")
def test_serve_tls_on_ipv6_loopback(pki: Pki, app: PingApp) -> None:
    server_context = server_ssl_context(pki.server.cert, pki.server.key)
    context = client_ssl_context(pki.ca)

    with (
        serve_tls(app, ssl_context=server_context, host="::1") as url,
        httpx.Client(verify=context, trust_env=False) as client,
    ):
        response = client.get(f"{url}/ping")

    assert url.startswith("https://[::1]:")
    assert response.status_code == 200


def test_serve_tls_needs_one_tls_source(pki: Pki, app: PingApp) -> None:
    with (
        pytest.raises(ValueError, match="exactly one of ssl_context and cert_file"),
        serve_tls(app),
    ):
        pass
