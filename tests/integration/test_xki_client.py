"""hyok.kms.xki_client against the real hyok proxy and a fake XKS server, over TLS on loopback.

Three kinds of server:

- the hyok proxy, served in-process by ``run_proxy``, for round trips and for
  the errors it returns (disabled or unknown key, bad credential, bad path);
- the same proxy on a key manager that sleeps, once with a proxy deadline below
  the client's budget and once above it;
- ``FakeXks``, a raw ASGI app that returns a scripted response for each
  external key ID: malformed bodies, failures before a success, and a
  record of the client port of each request to see connection reuse.

Every binding dials 127.0.0.1 through ``connect_address`` and verifies the
certificate name ``localhost``, so no test resolves a host name.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate, server_ssl_context
from hyok.kms.xki_client import (
    Connectivity,
    EkmHealthStatus,
    ExternalKeyStatus,
    ProxyBinding,
    ProxyBindingError,
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
    RequestMetadata,
    XkiClient,
)
from tests.integration._server import serve_tls
from tests.integration._xks import (
    KMS_KEY_ARN,
    PRINCIPAL,
    DataDir,
    RunningProxy,
    SlowKeyManager,
    assert_same_bytes,
    init_data_dir,
    keystore_entry,
    run_proxy,
    xks_data_dir,  # noqa: F401 - a pytest fixture, found by name
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Sensitive = Callable[[bytes | str], None]

# Budget of calls that are not about timing. A loaded machine can take more
# than the product's 250 ms for a first TLS handshake.
RELAXED_TIMEOUT = 5.0
SLOW_SECONDS = 1.0
ACCESS_KEY_ID = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request_metadata(operation: str = "Encrypt") -> RequestMetadata:
    return RequestMetadata(
        kms_request_id=str(uuid.uuid4()),
        kms_operation=operation,
        principal_arn=PRINCIPAL,
        kms_key_arn=KMS_KEY_ARN,
    )


def health_metadata() -> RequestMetadata:
    return RequestMetadata(kms_request_id=str(uuid.uuid4()), kms_operation="KmsHealthCheck")


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def vpc_binding(port: int, ca_file: Path, access_key_id: str, secret: Secret) -> ProxyBinding:
    """A binding that dials 127.0.0.1 and verifies the certificate name ``localhost``."""
    return ProxyBinding(
        endpoint=f"https://localhost:{port}",
        uri_path="/kms/xks/v1",
        region="cn-hangzhou",
        access_key_id=access_key_id,
        secret=secret,
        connectivity=Connectivity.VPC,
        ca_file=ca_file,
        connect_address=f"127.0.0.1:{port}",
    )


def proxy_binding(proxy: RunningProxy, store: str = "default", **changes: Any) -> ProxyBinding:
    credential = proxy.data.credentials[store].credential
    binding = vpc_binding(
        port_of(proxy.url), proxy.data.ca_file, credential.access_key_id, credential.secret
    )
    return dataclasses.replace(binding, **changes)


def certificate_sha256(pem_file: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certificate = x509.load_pem_x509_certificate(pem_file.read_bytes())
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def random_secret(sensitive: Sensitive) -> Secret:
    value = base64.b64encode(os.urandom(32)).decode("ascii")
    sensitive(value)
    return Secret(value)


def random_bytes(size: int, sensitive: Sensitive) -> bytes:
    value = os.urandom(size)
    sensitive(value)
    return value


# ---------------------------------------------------------------------------
# The hyok proxy


@pytest.fixture(scope="module")
def proxy(xks_data_dir: DataDir) -> Iterator[RunningProxy]:  # noqa: F811 - the fixture
    data = xks_data_dir
    data.create_keys(["disabled-1"])
    admin = data.open_keystore()
    try:
        admin.disable_key("disabled-1")
    finally:
        admin.close()
    data.add_store_credentials("team")
    settings = data.write_config(
        keystores=[keystore_entry("default"), keystore_entry("team", path_prefix="/team/a-1")]
    )
    with run_proxy(data, settings) as running:
        yield running


async def test_metadata_round_trip(proxy: RunningProxy) -> None:
    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        result = await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert result.key_spec == "AES_256"
    assert result.key_usage == frozenset({"ENCRYPT", "DECRYPT"})
    assert result.key_status is ExternalKeyStatus.ENABLED


@pytest.mark.parametrize("want_cdiv", [True, False])
async def test_encrypt_decrypt_with_aad(
    proxy: RunningProxy, sensitive: Sensitive, want_cdiv: bool
) -> None:
    plaintext = random_bytes(32, sensitive)
    aad = random_bytes(40, sensitive)

    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        output = await client.encrypt(
            "app-1", plaintext, aad, request_metadata(), want_cdiv=want_cdiv
        )
        decrypted = await client.decrypt(
            "app-1", output.ciphertext, output.iv, output.tag, output.ciphertext_metadata, aad,
            request_metadata("Decrypt"),
        )

    assert len(output.ciphertext) == len(plaintext)
    assert len(output.iv) == 12
    assert len(output.tag) == 16
    assert output.ciphertext_metadata == b"hyok/1"
    assert_same_bytes(decrypted, plaintext)


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_round_trip_on_uvloop_logs_no_error(
    proxy: RunningProxy, sensitive: Sensitive, caplog: pytest.LogCaptureFixture
) -> None:
    """On uvloop, as hyok kms serve runs, new connections and calls log nothing at ERROR."""
    plaintext = random_bytes(16, sensitive)
    with caplog.at_level(logging.WARNING):
        async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
            output = await client.encrypt("app-1", plaintext, None, request_metadata())
            decrypted = await client.decrypt(
                "app-1", output.ciphertext, output.iv, output.tag, output.ciphertext_metadata,
                None, request_metadata("Decrypt"),
            )
    assert_same_bytes(decrypted, plaintext)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_encrypt_decrypt_without_aad(proxy: RunningProxy, sensitive: Sensitive) -> None:
    plaintext = random_bytes(16, sensitive)

    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        output = await client.encrypt("app-1", plaintext, None, request_metadata())
        decrypted = await client.decrypt(
            "app-1", output.ciphertext, output.iv, output.tag, output.ciphertext_metadata, None,
            request_metadata("Decrypt"),
        )

    assert_same_bytes(decrypted, plaintext)


async def test_decrypt_with_other_aad(proxy: RunningProxy, sensitive: Sensitive) -> None:
    plaintext = random_bytes(16, sensitive)

    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        output = await client.encrypt("app-1", plaintext, b"context A" * 2, request_metadata())
        with pytest.raises(ProxyRejectedError) as caught:
            await client.decrypt(
                "app-1", output.ciphertext, output.iv, output.tag, output.ciphertext_metadata,
                b"context B" * 2, request_metadata("Decrypt"),
            )

    assert caught.value.error_name == "InvalidCiphertextException"
    assert caught.value.http_status == 400


async def test_health_fleet(proxy: RunningProxy) -> None:
    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        result = await client.health(health_metadata())

    assert result.fleet_size == 1
    assert result.proxy_vendor == "hyok"
    assert result.ekm_vendor == "hyok"
    assert [member.id for member in result.fleet] == ["file:keystore.hyok"]
    assert result.fleet[0].health_status is EkmHealthStatus.ACTIVE
    assert result.serving


async def test_uri_path_with_prefix(proxy: RunningProxy) -> None:
    binding = proxy_binding(proxy, "team", uri_path="/team/a-1/kms/xks/v1")

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        result = await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert result.key_status is ExternalKeyStatus.ENABLED


async def test_connect_address_verifies_endpoint_name(proxy: RunningProxy) -> None:
    binding = proxy_binding(proxy)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert binding.host == "localhost"
    assert binding.dial_address == ("127.0.0.1", port_of(proxy.url))
    assert binding.authority == f"localhost:{port_of(proxy.url)}"


async def test_disabled_key(proxy: RunningProxy, sensitive: Sensitive) -> None:
    plaintext = random_bytes(16, sensitive)

    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        result = await client.get_key_metadata("disabled-1", request_metadata("DescribeKey"))
        with pytest.raises(ProxyRejectedError) as caught:
            await client.encrypt("disabled-1", plaintext, None, request_metadata())

    error = caught.value
    assert result.key_status is ExternalKeyStatus.DISABLED
    assert error.kind is ProxyErrorKind.REJECTED
    assert error.error_name == "InvalidStateException"
    assert error.http_status == 400
    assert "disabled-1" in error.proxy_message
    assert error.proxy_message not in str(error)


async def test_unknown_key(proxy: RunningProxy) -> None:
    async with XkiClient(proxy_binding(proxy), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.get_key_metadata("no-such-key", request_metadata("DescribeKey"))

    assert caught.value.error_name == "KeyNotFoundException"
    assert caught.value.http_status == 404
    assert caught.value.external_key_id == "no-such-key"


async def test_wrong_secret(proxy: RunningProxy, sensitive: Sensitive) -> None:
    binding = proxy_binding(proxy, secret=random_secret(sensitive))

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.error_name == "AuthenticationFailedException"
    assert caught.value.http_status == 401
    assert caught.value.attempts == 1


async def test_wrong_uri_path(proxy: RunningProxy) -> None:
    binding = proxy_binding(proxy, uri_path="/elsewhere/kms/xks/v1")

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.error_name == "InvalidUriPathException"
    assert caught.value.http_status == 404


async def test_proxy_down(proxy: RunningProxy, sensitive: Sensitive) -> None:
    port = closed_port()
    binding = proxy_binding(
        proxy, endpoint=f"https://localhost:{port}", connect_address=f"127.0.0.1:{port}"
    )
    plaintext = random_bytes(16, sensitive)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyUnreachableError) as decrypt:
            await client.decrypt(
                "app-1", plaintext, bytes(12), bytes(16), b"", None, request_metadata("Decrypt")
            )
        with pytest.raises(ProxyUnreachableError) as encrypt:
            await client.encrypt("app-1", plaintext, None, request_metadata())

    assert decrypt.value.kind is ProxyErrorKind.CONNECTION_FAILED
    # Decrypt is idempotent and tried three times; Encrypt is never retried.
    assert decrypt.value.attempts == 3
    assert encrypt.value.kind is ProxyErrorKind.CONNECTION_FAILED
    assert encrypt.value.attempts == 1
    assert decrypt.value.__cause__ is not None


async def test_untrusted_ca(proxy: RunningProxy, other_ca_file: Path) -> None:
    binding = proxy_binding(proxy, ca_file=other_ca_file)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyTlsError) as caught:
            await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.CERTIFICATE_INVALID
    assert caught.value.attempts == 1


async def test_certificate_for_other_name(proxy: RunningProxy) -> None:
    port = port_of(proxy.url)
    binding = proxy_binding(proxy, endpoint=f"https://xks.example.com:{port}")

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyTlsError) as caught:
            await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.CERTIFICATE_INVALID
    assert "xks.example.com" in str(caught.value)


async def test_pinned_fingerprint_matches(proxy: RunningProxy) -> None:
    fingerprint = certificate_sha256(proxy.data.root / "tls" / "server.pem")
    binding = proxy_binding(proxy, server_certificate_sha256=fingerprint)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        result = await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert result.key_status is ExternalKeyStatus.ENABLED


async def test_pinned_fingerprint_differs(proxy: RunningProxy) -> None:
    binding = proxy_binding(proxy, server_certificate_sha256="ab" * 32)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyTlsError) as caught:
            await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    actual = certificate_sha256(proxy.data.root / "tls" / "server.pem")
    assert caught.value.kind is ProxyErrorKind.FINGERPRINT_MISMATCH
    assert actual in str(caught.value)


# ---------------------------------------------------------------------------
# A slow key manager: the proxy's deadline against the client's budget


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    return init_data_dir(tmp_path_factory.mktemp("xki-slow"))


def run_slow_proxy(data: DataDir, deadline_ms: int) -> AbstractContextManager[RunningProxy]:
    settings = data.write_config(
        keystores=[keystore_entry("default")], server={"request_deadline_ms": deadline_ms}
    )
    return run_proxy(
        data, settings, backends={"local": SlowKeyManager(data.open_keystore(), SLOW_SECONDS)}
    )


async def test_proxy_deadline_within_budget(slow_data: DataDir, sensitive: Sensitive) -> None:
    plaintext = random_bytes(16, sensitive)

    with run_slow_proxy(slow_data, deadline_ms=200) as slow:
        async with XkiClient(proxy_binding(slow), timeout=RELAXED_TIMEOUT) as client:
            with pytest.raises(ProxyRejectedError) as encrypt:
                await client.encrypt("app-1", plaintext, None, request_metadata())
            with pytest.raises(ProxyRejectedError) as metadata:
                await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert encrypt.value.error_name == "DependencyTimeoutException"
    assert encrypt.value.http_status == 503
    assert encrypt.value.attempts == 1
    # GetKeyMetadata is idempotent, and the budget leaves room for every retry.
    assert metadata.value.error_name == "DependencyTimeoutException"
    assert metadata.value.attempts == 3


async def test_budget_ends_before_proxy_deadline(slow_data: DataDir) -> None:
    with run_slow_proxy(slow_data, deadline_ms=3000) as slow:
        async with XkiClient(proxy_binding(slow), timeout=RELAXED_TIMEOUT) as client:
            # The first call opens the connection, so the timed call measures only the wait.
            await client.health(health_metadata())
            client.timeout = 0.3
            started = time.monotonic()
            with pytest.raises(ProxyTimeoutError) as caught:
                await client.get_key_metadata("app-1", request_metadata("DescribeKey"))
            elapsed = time.monotonic() - started

    assert caught.value.kind is ProxyErrorKind.RESPONSE_TIMEOUT
    assert caught.value.attempts == 1
    assert "300 ms" in str(caught.value)
    assert 0.3 <= elapsed < SLOW_SECONDS


# ---------------------------------------------------------------------------
# A fake XKS server with scripted responses


@dataclass
class Seen:
    key_id: str
    operation: str
    client_port: int


@dataclass
class FakeXks:
    """A raw ASGI app that picks its response by external key ID; see ``respond``."""

    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_for(self, key_id: str) -> list[Seen]:
        with self.lock:
            return [request for request in self.seen if request.key_id == key_id]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)

        parts = scope["path"].split("/")
        key_id, operation = (parts[-2], parts[-1]) if "keys" in parts else ("-", parts[-1])
        with self.lock:
            self.seen.append(Seen(key_id, operation, scope["client"][1]))
            count = len([seen for seen in self.seen if seen.key_id == key_id])
        if key_id.startswith("slow-"):
            await asyncio.sleep(SLOW_SECONDS)
        status, payload, content_type = respond(key_id, operation, json.loads(body), count)

        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode("ascii"))],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def fake_encrypt(document: dict[str, Any], key_id: str) -> dict[str, str]:
    """Build a well-formed Encrypt response, spoiled in the way that ``key_id`` names."""
    plaintext = unb64(document["plaintext"])
    aad = unb64(document.get("additionalAuthenticatedData", ""))
    ciphertext = os.urandom(len(plaintext) - (1 if key_id == "short-ciphertext" else 0))
    iv = os.urandom(17 if key_id == "iv-17" else 12)
    tag = os.urandom(16)
    metadata = b"fake/1"
    cdiv = hashlib.sha256(aad + metadata + iv + ciphertext + tag).digest()
    response = {
        "ciphertext": b64(ciphertext),
        "ciphertextMetadata": b64(metadata),
        "initializationVector": b64(iv),
        "authenticationTag": b64(tag),
        "ciphertextDataIntegrityValue": b64(cdiv),
    }
    if key_id == "wrong-cdiv":
        response["ciphertextDataIntegrityValue"] = b64(hashlib.sha256(b"other").digest())
    elif key_id == "no-cdiv":
        del response["ciphertextDataIntegrityValue"]
    elif key_id == "bad-base64":
        response["ciphertext"] = "!!!!"
    return response


def xks_error(status: int, name: str) -> tuple[int, bytes, str]:
    body = json.dumps({"errorName": name, "errorMessage": f"scripted {name}"}).encode()
    return status, body, "application/json"


def respond(
    key_id: str, operation: str, document: dict[str, Any], count: int
) -> tuple[int, bytes, str]:
    """Build the response to one request.

    ``count`` is the number of requests for ``key_id``, this one included.
    Keys named ``flaky-<status>-*`` fail with that status on their first
    request only, and ``always-<status>-*`` on every request.
    """
    if key_id.startswith(("flaky-", "always-")) and (key_id.startswith("always-") or count == 1):
        status = int(key_id.split("-")[1])
        names = {400: "ValidationException", 429: "ThrottlingException",
                 503: "DependencyTimeoutException"}
        return xks_error(status, names[status])
    if key_id == "not-json":
        return 200, b"<html>proxy</html>", "text/html"
    if key_id == "plain-500":
        return 500, b"Internal Server Error", "text/plain"
    if key_id == "no-error-name":
        return 400, b'{"message": "bad request"}', "application/json"

    response: dict[str, Any]
    if operation == "metadata":
        response = {
            "keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"
        }
        if key_id == "missing-status":
            del response["keyStatus"]
    elif operation == "encrypt":
        response = fake_encrypt(document, key_id)
    elif operation == "decrypt":
        size = len(unb64(document["ciphertext"])) + (1 if key_id == "long-plaintext" else 0)
        response = {"plaintext": b64(bytes(size))}
    else:
        response = {
            "xksProxyFleetSize": 1, "xksProxyVendor": "fake", "xksProxyModel": "fake 1",
            "ekmVendor": "fake", "ekmFleetDetails": [],
        }
    return 200, json.dumps(response).encode(), "application/json"


@dataclass
class FakeServer:
    app: FakeXks
    port: int
    ca_file: Path
    fingerprint: str

    def binding(self, **changes: Any) -> ProxyBinding:
        secret = Secret(base64.b64encode(b"fake-server-secret-access-key-x").decode("ascii"))
        binding = vpc_binding(self.port, self.ca_file, ACCESS_KEY_ID, secret)
        return dataclasses.replace(binding, **changes)

    def binding_for_port(self, port: int) -> ProxyBinding:
        """A binding with this server's CA and credential that dials another port."""
        return self.binding(
            endpoint=f"https://localhost:{port}", connect_address=f"127.0.0.1:{port}"
        )


@pytest.fixture(scope="module")
def fake_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fake-xks-tls")
    ca = create_ca("hyok test fake XKS CA", days=2)
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    server = issue_server_certificate(ca, hostnames=["localhost"], days=1)
    server.write(directory / "server.pem", directory / "server-key.pem")
    return directory


@pytest.fixture(scope="module")
def other_ca_file(fake_ca_dir: Path) -> Path:
    """A CA that did not issue the hyok proxy's certificate."""
    return fake_ca_dir / "ca.pem"


@pytest.fixture(scope="module")
def fake(fake_ca_dir: Path) -> Iterator[FakeServer]:
    app = FakeXks()
    context = server_ssl_context(fake_ca_dir / "server.pem", fake_ca_dir / "server-key.pem")
    with serve_tls(app, ssl_context=context) as url:
        yield FakeServer(
            app=app,
            port=port_of(url),
            ca_file=fake_ca_dir / "ca.pem",
            fingerprint=certificate_sha256(fake_ca_dir / "server.pem"),
        )


async def call(client: XkiClient, operation: str, key_id: str, plaintext: bytes) -> object:
    if operation == "metadata":
        return await client.get_key_metadata(key_id, request_metadata("DescribeKey"))
    if operation == "encrypt":
        return await client.encrypt(key_id, plaintext, b"additional data", request_metadata())
    return await client.decrypt(
        key_id, plaintext, bytes(12), bytes(16), b"", None, request_metadata("Decrypt")
    )


@pytest.mark.parametrize(
    ("key_id", "operation", "kind"),
    [
        ("not-json", "metadata", ProxyErrorKind.INVALID_RESPONSE),
        ("missing-status", "metadata", ProxyErrorKind.INVALID_RESPONSE),
        ("iv-17", "encrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("short-ciphertext", "encrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("no-cdiv", "encrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("bad-base64", "encrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("wrong-cdiv", "encrypt", ProxyErrorKind.INTEGRITY_CHECK_FAILED),
        ("long-plaintext", "decrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("plain-500", "decrypt", ProxyErrorKind.INVALID_RESPONSE),
        ("no-error-name", "metadata", ProxyErrorKind.INVALID_RESPONSE),
    ],
)
async def test_invalid_response(
    fake: FakeServer, sensitive: Sensitive, key_id: str, operation: str, kind: ProxyErrorKind
) -> None:
    plaintext = random_bytes(20, sensitive)

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyInvalidResponseError) as caught:
            await call(client, operation, key_id, plaintext)

    assert caught.value.kind is kind
    assert caught.value.attempts == 1
    assert key_id in str(caught.value)


async def test_fake_encrypt_accepted(fake: FakeServer, sensitive: Sensitive) -> None:
    # The control case of test_invalid_response: the unspoiled response passes every check.
    plaintext = random_bytes(20, sensitive)

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        output = await client.encrypt("fine-1", plaintext, b"additional data", request_metadata())

    assert output.ciphertext_metadata == b"fake/1"


@pytest.mark.parametrize("status", [503, 429])
async def test_decrypt_retried_once(
    fake: FakeServer, sensitive: Sensitive, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    key_id = f"flaky-{status}-decrypt"
    ciphertext = random_bytes(24, sensitive)
    caplog.set_level(logging.DEBUG, logger="hyok.kms.xki_client")

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        plaintext = await client.decrypt(
            key_id, ciphertext, bytes(12), bytes(16), b"", None, request_metadata("Decrypt")
        )

    assert len(plaintext) == len(ciphertext)
    assert len(fake.app.requests_for(key_id)) == 2
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 1
    assert "kind=rejected" in retries[0].getMessage()
    assert "status=" + str(status) in retries[0].getMessage()
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(key_id in line and "attempts=2" in line for line in summary)
    assert b64(ciphertext) not in caplog.text


async def test_encrypt_not_retried(fake: FakeServer, sensitive: Sensitive) -> None:
    plaintext = random_bytes(24, sensitive)

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.encrypt("flaky-503-encrypt", plaintext, None, request_metadata())

    assert caught.value.error_name == "DependencyTimeoutException"
    assert caught.value.attempts == 1
    assert len(fake.app.requests_for("flaky-503-encrypt")) == 1


async def test_client_error_not_retried(fake: FakeServer) -> None:
    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.get_key_metadata("always-400-metadata", request_metadata("DescribeKey"))

    assert caught.value.error_name == "ValidationException"
    assert len(fake.app.requests_for("always-400-metadata")) == 1


async def test_retries_stop_at_max_attempts(
    fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hyok.kms.xki_client")

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyRejectedError) as caught:
            await client.get_key_metadata("always-503-metadata", request_metadata("DescribeKey"))

    assert caught.value.attempts == 3
    assert len(fake.app.requests_for("always-503-metadata")) == 3
    failure = caplog.records[-1].getMessage()
    assert "attempts=3" in failure
    assert "errorName=DependencyTimeoutException" in failure
    assert "scripted DependencyTimeoutException" in failure


async def test_connection_reused(fake: FakeServer) -> None:
    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        for _ in range(4):
            await client.get_key_metadata("reuse-1", request_metadata("DescribeKey"))

    ports = {request.client_port for request in fake.app.requests_for("reuse-1")}
    assert len(fake.app.requests_for("reuse-1")) == 4
    assert len(ports) == 1


async def test_pin_mismatch_sends_nothing(fake: FakeServer) -> None:
    binding = fake.binding(server_certificate_sha256="00" * 32)

    async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ProxyTlsError) as caught:
            await client.get_key_metadata("pinned-wrong", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.FINGERPRINT_MISMATCH
    assert fake.app.requests_for("pinned-wrong") == []


async def test_pin_checked_on_each_connection(fake: FakeServer) -> None:
    binding = fake.binding(server_certificate_sha256=fake.fingerprint.replace(":", "").lower())

    for _ in range(2):
        async with XkiClient(binding, timeout=RELAXED_TIMEOUT) as client:
            await client.get_key_metadata("pinned-right", request_metadata("DescribeKey"))

    ports = {request.client_port for request in fake.app.requests_for("pinned-right")}
    assert len(ports) == 2


async def test_health_without_fleet_entries(fake: FakeServer) -> None:
    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        result = await client.health(health_metadata())

    assert result.fleet == ()
    assert not result.serving


async def test_pool_wait_times_out(fake: FakeServer) -> None:
    async with (
        XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT, max_connections=1) as client,
        anyio.create_task_group() as group,
    ):
        # The first call keeps the only connection busy for SLOW_SECONDS.
        group.start_soon(client.get_key_metadata, "slow-holder", request_metadata("DescribeKey"))
        await anyio.sleep(0.1)
        client.timeout = 0.2
        with pytest.raises(ProxyTimeoutError) as caught:
            await client.get_key_metadata("pool-waiter", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.POOL_TIMEOUT
    assert fake.app.requests_for("pool-waiter") == []
    assert len(fake.app.requests_for("slow-holder")) == 1


async def test_tls_handshake_times_out(fake: FakeServer) -> None:
    # The kernel completes TCP handshakes for the backlog, but nothing accepts
    # the connection, so the TLS handshake gets no response.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        binding = fake.binding_for_port(listener.getsockname()[1])
        async with XkiClient(binding, timeout=0.3) as client:
            with pytest.raises(ProxyTimeoutError) as caught:
                await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.CONNECT_TIMEOUT
    assert caught.value.attempts == 1


def read_request(tls: ssl.SSLSocket) -> None:
    """Read one HTTP/1.1 request with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            return
        body += chunk


@contextmanager
def raw_tls_server(context: ssl.SSLContext, reply: bytes) -> Iterator[tuple[int, list[int]]]:
    """Serve TLS on 127.0.0.1, and for each connection read a request, send ``reply`` and close.

    Yields the port and the list of client ports accepted so far.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, address = listener.accept()
            except TimeoutError:
                continue
            accepted.append(address[1])
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    read_request(tls)
                    tls.sendall(reply)
            except OSError:
                connection.close()

    thread = threading.Thread(target=serve, name="raw-tls-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def test_connection_lost(fake: FakeServer, fake_ca_dir: Path, sensitive: Sensitive) -> None:
    context = server_ssl_context(fake_ca_dir / "server.pem", fake_ca_dir / "server-key.pem")
    ciphertext = random_bytes(16, sensitive)

    with raw_tls_server(context, b"") as (port, accepted):
        async with XkiClient(fake.binding_for_port(port), timeout=RELAXED_TIMEOUT) as client:
            with pytest.raises(ProxyUnreachableError) as decrypt:
                await client.decrypt(
                    "app-1", ciphertext, bytes(12), bytes(16), b"", None,
                    request_metadata("Decrypt"),
                )
            with pytest.raises(ProxyUnreachableError) as encrypt:
                await client.encrypt("app-1", ciphertext, None, request_metadata())

    assert decrypt.value.kind is ProxyErrorKind.CONNECTION_LOST
    assert decrypt.value.attempts == 3
    assert encrypt.value.kind is ProxyErrorKind.CONNECTION_LOST
    assert encrypt.value.attempts == 1
    assert len(accepted) == 4


async def test_malformed_http_response(fake: FakeServer, fake_ca_dir: Path) -> None:
    context = server_ssl_context(fake_ca_dir / "server.pem", fake_ca_dir / "server-key.pem")

    with raw_tls_server(context, b"NOT-HTTP garbage\r\n\r\n") as (port, accepted):
        async with XkiClient(fake.binding_for_port(port), timeout=RELAXED_TIMEOUT) as client:
            with pytest.raises(ProxyInvalidResponseError) as caught:
                await client.get_key_metadata("app-1", request_metadata("DescribeKey"))

    assert caught.value.kind is ProxyErrorKind.INVALID_RESPONSE
    assert caught.value.attempts == 1
    assert len(accepted) == 1


# ---------------------------------------------------------------------------
# Arguments and bindings


async def test_key_id_cannot_change_path(fake: FakeServer) -> None:
    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        for key_id in ["..", "../health", "a/b", ""]:
            with pytest.raises(ValueError, match="external key ID"):
                await client.get_key_metadata(key_id, request_metadata("DescribeKey"))


async def test_encrypt_requires_key_arn(fake: FakeServer, sensitive: Sensitive) -> None:
    metadata = dataclasses.replace(request_metadata(), kms_key_arn=None)

    async with XkiClient(fake.binding(), timeout=RELAXED_TIMEOUT) as client:
        with pytest.raises(ValueError, match="kms_key_arn"):
            await client.encrypt("app-1", random_bytes(16, sensitive), None, metadata)


def valid_binding(**changes: Any) -> ProxyBinding:
    secret = Secret(base64.b64encode(b"binding-validation-secret-key-32").decode("ascii"))
    binding = ProxyBinding(
        endpoint="https://xks.example.com",
        uri_path="/kms/xks/v1",
        region="cn-hangzhou",
        access_key_id=ACCESS_KEY_ID,
        secret=secret,
    )
    return dataclasses.replace(binding, **changes)


@pytest.mark.parametrize(
    ("changes", "field_name", "fragment"),
    [
        ({"endpoint": "https://127.0.0.1:8443"}, "endpoint", "IP address"),
        ({"endpoint": "https://[::1]"}, "endpoint", "IP address"),
        ({"endpoint": "https://10.1"}, "endpoint", "numeric address"),
        ({"endpoint": "http://xks.example.com"}, "endpoint", "must use https"),
        ({"endpoint": "https://xks.example.com/kms"}, "endpoint", "uri_path"),
        ({"endpoint": "https://user@xks.example.com"}, "endpoint", "user information"),
        ({"endpoint": "https://xks_1.example.com"}, "endpoint", "DNS name"),
        ({"endpoint": "https://xks.example.com:99999"}, "endpoint", "not a valid URL"),
        ({"uri_path": "/kms/xks/v2"}, "uri_path", "followed by /kms/xks/v1"),
        ({"uri_path": "tenant/kms/xks/v1"}, "uri_path", "starts with '/'"),
        ({"uri_path": "/a b/kms/xks/v1"}, "uri_path", "at most 128"),
        ({"uri_path": "/" + "a" * 117 + "/kms/xks/v1"}, "uri_path", "at most 128"),
        ({"region": "cn/hangzhou"}, "region", "credential scope"),
        ({"access_key_id": "AKID"}, "access_key_id", "20 to 30"),
        ({"server_certificate_sha256": "abcd"}, "server_certificate_sha256", "64 hex digits"),
        ({"connect_address": "10.0.0.5:443"}, "connect_address", "connectivity 'vpc'"),
        (
            {"connectivity": Connectivity.VPC, "connect_address": "10.0.0.5:port"},
            "connect_address",
            "host:port",
        ),
        ({"connectivity": "satellite"}, "connectivity", "'public' or 'vpc'"),
    ],
)
def test_binding_rejects(changes: dict[str, Any], field_name: str, fragment: str) -> None:
    with pytest.raises(ProxyBindingError) as caught:
        valid_binding(**changes)

    assert caught.value.field == field_name
    assert fragment in str(caught.value)
    bad_value = str(changes[field_name])[:40]
    assert bad_value in str(caught.value)


def test_binding_accepts_edges() -> None:
    longest = "/" + "a" * 116 + "/kms/xks/v1"
    binding = valid_binding(
        endpoint="https://XKS.Example.com:8443/",
        uri_path=longest,
        server_certificate_sha256=":".join(["AB"] * 32),
        connectivity="vpc",
        connect_address="[fd00::5]:9443",
    )

    assert len(longest) == 128
    assert binding.host == "xks.example.com"
    assert binding.port == 8443
    assert binding.authority == "xks.example.com:8443"
    assert binding.dial_address == ("fd00::5", 9443)
    assert binding.connectivity is Connectivity.VPC
    assert binding.server_certificate_sha256 == "ab" * 32


def test_binding_secret_checked_and_masked(sensitive: Sensitive) -> None:
    short = "tooshort-secret-value"
    sensitive(short)
    with pytest.raises(ProxyBindingError) as caught:
        valid_binding(secret=Secret(short))
    with pytest.raises(ProxyBindingError, match="Secret"):
        valid_binding(secret=short)
    binding = valid_binding()

    assert caught.value.field == "secret"
    assert short not in str(caught.value)
    assert binding.secret.reveal() not in repr(binding)
    assert "Secret('**********')" in repr(binding)


def test_error_hierarchy() -> None:
    for cls in (
        ProxyRejectedError,
        ProxyUnreachableError,
        ProxyTlsError,
        ProxyTimeoutError,
        ProxyInvalidResponseError,
    ):
        assert issubclass(cls, ProxyError)
