"""The file commands' KMS client (``hyok.cli._kms_direct``) against the real KMS and bad peers.

Data keys go both ways between it and the official SDK: a key generated
through one is decrypted through the other. The failure tests start their
own peers on 127.0.0.1: a closed port, servers that never respond, a plain
TCP server, an HTTPS server that is not the KMS, and an HTTP CONNECT proxy.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]

from hyok.cli import _kms_api, _kms_direct
from hyok.cli._common import CliError
from hyok.cli._kms_api import KmsTarget
from hyok.cli._kms_direct import MAX_RESPONSE_BYTES, DirectKmsClient
from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate
from tests.integration._kms import KmsStack, kms_stack, postgres_server
from tests.integration._ram import role_credentials
from tests.integration._sdk import call, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

CONTEXT = {"purpose": "backup & restore", "név": "érték 1+1=2", "path": "/srv/a%20b"}


def target(stack: KmsStack, **changes: object) -> KmsTarget:
    values: dict[str, object] = {
        "endpoint": f"127.0.0.1:{stack.port}",
        "region": "cn-hangzhou",
        "ca_cert": stack.ca_file,
        "access_key_id": stack.access_key_id,
        "access_key_secret": Secret(stack.secret),
        "instance_id": stack.instance_id,
        "up_file": None,
        "endpoint_given": True,
    }
    values.update(changes)
    return KmsTarget(**values)  # type: ignore[arg-type]


def new_key(stack: KmsStack) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": "app-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def failure(client: DirectKmsClient, action: str = "DescribeRegions") -> str:
    with pytest.raises(CliError) as raised:
        client.call(action, {})
    return raised.value.format_message()


# Against the KMS.


@pytest.mark.parametrize("kms_stack", ["sqlite"], indirect=True)
def test_data_key_round_trips_with_the_sdk(
    kms_stack: KmsStack, sensitive: Callable[[bytes | str], None]
) -> None:
    sensitive(kms_stack.secret)
    key_id = new_key(kms_stack)
    context = json.dumps(CONTEXT, separators=(",", ":"))
    with DirectKmsClient(target(kms_stack)) as client:
        generated = client.call(
            "GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": context}
        )
        request = models.DecryptRequest(
            ciphertext_blob=generated["CiphertextBlob"], encryption_context=CONTEXT
        )
        through_sdk = kms_stack.sdk().decrypt_with_options(request, runtime()).body
        assert through_sdk.plaintext == generated["Plaintext"]
        assert len(base64.b64decode(generated["Plaintext"])) == 32

        sdk_key = kms_stack.sdk().generate_data_key_with_options(
            models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CONTEXT), runtime()
        )
        decrypted = client.call(
            "Decrypt",
            {"CiphertextBlob": sdk_key.body.ciphertext_blob, "EncryptionContext": context},
        )
        assert decrypted["Plaintext"] == sdk_key.body.plaintext
        assert decrypted["KeyId"] == key_id


@pytest.mark.parametrize("kms_stack", ["sqlite"], indirect=True)
def test_api_errors_read_as_in_the_sdk_commands(kms_stack: KmsStack) -> None:
    with DirectKmsClient(target(kms_stack)) as client:
        message = failure(client, "Decrypt")
        assert message.startswith("MissingParameter: "), message
        assert "CiphertextBlob" in message
        assert "(request " in message
        message = failure(client, "NoSuchAction")
        assert message.startswith("InvalidAction.NotFound: "), message
        assert message.endswith("does not implement this action, so update it")
    wrong = target(kms_stack, access_key_secret=Secret("not-the-secret"))
    with DirectKmsClient(wrong) as client:
        assert failure(client).startswith("SignatureDoesNotMatch: ")


@pytest.mark.parametrize("kms_stack", ["sqlite"], indirect=True)
def test_signs_with_sts_credentials(kms_stack: KmsStack) -> None:
    key_id = new_key(kms_stack)
    credentials = role_credentials(kms_stack, "direct-sts")
    temporary = target(
        kms_stack,
        access_key_id=credentials.access_key_id,
        access_key_secret=Secret(credentials.access_key_secret),
        security_token=Secret(credentials.security_token),
    )
    with DirectKmsClient(temporary) as client:
        body = client.call("GenerateDataKey", {"KeyId": key_id})
        assert body["KeyId"] == key_id
    without_token = target(
        kms_stack,
        access_key_id=credentials.access_key_id,
        access_key_secret=Secret(credentials.access_key_secret),
    )
    with DirectKmsClient(without_token) as client:
        message = failure(client, "GenerateDataKey")
        assert credentials.security_token not in message
        assert "token" in message.lower(), message


@pytest.mark.parametrize("kms_stack", ["sqlite"], indirect=True)
def test_loopback_kms_ignores_the_environment_proxy(
    kms_stack: KmsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    with DirectKmsClient(target(kms_stack)) as client:
        assert "Regions" in client.call("DescribeRegions", {})


# Against peers that are not the KMS.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peer_target(port: int, ca_file: Path | None, host: str = "127.0.0.1") -> KmsTarget:
    return KmsTarget(
        endpoint=f"{host}:{port}",
        region="cn-hangzhou",
        ca_cert=ca_file,
        access_key_id="LTAI5tDirectPeerTest01",
        access_key_secret=Secret("direct-peer-secret"),
        instance_id=None,
        up_file=None,
        endpoint_given=True,
    )


class Peer:
    """A TCP server on 127.0.0.1 that hands each connection to ``handle`` in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.handle = handle
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            self.handle(connection)

    def close(self) -> None:
        # shutdown() wakes the accept() of the serving thread; close() alone does not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def peer(handle: Callable[[socket.socket], None]) -> Iterator[Peer]:
    server = Peer(handle)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA file and a server certificate for 127.0.0.1 and kms.test."""
    directory = tmp_path_factory.mktemp("direct-tls")
    ca = create_ca("direct client test CA", days=2)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    issue_server_certificate(ca, hostnames=["127.0.0.1", "kms.test"], days=1).write(
        cert_file, key_file
    )
    return ca_file, cert_file, key_file


def server_context(tls_files: tuple[Path, Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files[1], tls_files[2])
    return context


def https_responder(
    tls_files: tuple[Path, Path, Path], status: str, body: bytes, content_type: str
) -> Callable[[socket.socket], None]:
    context = server_context(tls_files)

    def handle(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as secure:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = secure.recv(65536)
                if not chunk:
                    return
                request += chunk
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            secure.sendall(head.encode("ascii") + body)

    return handle


def test_closed_port_is_refused() -> None:
    with DirectKmsClient(peer_target(free_port(), None)) as client:
        message = failure(client)
    assert "connection refused; check the host and port of --endpoint" in message


def test_unknown_host_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def unresolved(*_args: object, **_kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolved)
    with DirectKmsClient(peer_target(443, None, host="kms.test")) as client:
        message = failure(client)
    assert message.startswith("cannot resolve the host of the KMS endpoint kms.test:443")


def test_untrusted_certificate_names_the_fix(tls_files: tuple[Path, Path, Path]) -> None:
    handle = https_responder(tls_files, "200 OK", b"{}", "application/json")
    with peer(handle) as server, DirectKmsClient(peer_target(server.port, None)) as client:
        message = failure(client)
    assert "is not trusted (unable to get local issuer certificate)" in message
    assert "--ca-cert" in message


def test_plain_tcp_peer_fails_the_handshake() -> None:
    def handle(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with peer(handle) as server, DirectKmsClient(peer_target(server.port, None)) as client:
        message = failure(client)
    assert message.startswith(f"the TLS handshake with the KMS at https://127.0.0.1:{server.port}")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        ("200 OK", b"<html>router login</html>", "text/html", "(HTTP 200) is not a KMS API"),
        ("200 OK", b"[1, 2]", "application/json", "(HTTP 200) is not a KMS API"),
        ("200 OK", b" " * (MAX_RESPONSE_BYTES + 1), "application/json", "is not a KMS API"),
        ("503 Service Unavailable", b'{"x": 1}', "application/json", "HTTP 503: no message"),
    ],
)
def test_response_that_is_not_the_kms(
    tls_files: tuple[Path, Path, Path], status: str, body: bytes, content_type: str, expected: str
) -> None:
    handle = https_responder(tls_files, status, body, content_type)
    with (
        peer(handle) as server,
        DirectKmsClient(peer_target(server.port, tls_files[0])) as client,
    ):
        assert expected in failure(client)


@pytest.mark.parametrize(
    ("tls", "timeout", "expected"),
    [
        # A server that accepts the connection but never does the TLS handshake.
        (False, "CONNECT_TIMEOUT_MS", ("cannot connect to the KMS at", "no connection within")),
        # A server that completes the handshake but never responds.
        (True, "READ_TIMEOUT_MS", ("did not respond within", "check the KMS log")),
    ],
)
def test_silent_peer_times_out(
    tls_files: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tls: bool,
    timeout: str,
    expected: tuple[str, str],
) -> None:
    monkeypatch.setattr(_kms_direct, timeout, 300)
    monkeypatch.setattr(_kms_api, timeout, 300)
    release = threading.Event()
    context = server_context(tls_files)

    def handle(connection: socket.socket) -> None:
        if not tls:
            release.wait(10)
            return
        with context.wrap_socket(connection, server_side=True):
            release.wait(10)

    try:
        with (
            peer(handle) as server,
            DirectKmsClient(peer_target(server.port, tls_files[0])) as client,
        ):
            message = failure(client)
    finally:
        release.set()
    for fragment in expected:
        assert fragment in message


def test_tunnels_through_an_authenticating_proxy(
    tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"RequestId": "r-1", "Regions": {"Region": []}}).encode()
    kms = Peer(https_responder(tls_files, "200 OK", body, "application/json"))
    seen: list[bytes] = []
    expected_authorization = "Basic " + base64.b64encode(b"alice:p@ss:word").decode()

    def proxy(connection: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += connection.recv(4096)
        seen.append(request)
        lines = request.decode("latin-1").split("\r\n")
        if f"Proxy-Authorization: {expected_authorization}" not in lines:
            connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", kms.port)) as upstream:
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay = threading.Thread(target=_pipe, args=(upstream, connection), daemon=True)
            relay.start()
            _pipe(connection, upstream)
            relay.join(5)

    try:
        with peer(proxy) as proxy_server:
            monkeypatch.setenv(
                "HTTPS_PROXY", f"http://alice:p%40ss%3Aword@127.0.0.1:{proxy_server.port}"
            )
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            with DirectKmsClient(peer_target(kms.port, tls_files[0], host="kms.test")) as client:
                assert client.call("DescribeRegions", {})["RequestId"] == "r-1"
    finally:
        kms.close()
    assert seen[0].startswith(f"CONNECT kms.test:{kms.port} HTTP/1.".encode())


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _kms_direct._proxy_for("kms.example") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    assert _kms_direct._proxy_for("kms.example") == ("proxy.internal", 3128, None)
    monkeypatch.setenv("NO_PROXY", ".example")
    assert _kms_direct._proxy_for("kms.example") is None
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.internal:1080")
    monkeypatch.delenv("NO_PROXY")
    with pytest.raises(
        CliError, match=r"socks5://proxy\.internal from HTTPS_PROXY is not supported"
    ):
        _kms_direct._proxy_for("kms.example")
