"""What a KMS caller sees when the XKI proxy fails: down, slow, or returning an XKS error.

The KMS of ``tests.integration._kms`` gets a second instance bound to a
scripted XKS peer on loopback over TLS. The peer returns GetKeyMetadata
normally (so CreateKey works) and responds to Encrypt and Decrypt as the test
sets it: an XKS error of the spec's table, a delay past the KMS's budget,
or a response that is not XKS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alibabacloud_kms20160120 import models  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ServerException  # type: ignore[import-untyped]

from hyok.common.secrets import Secret
from hyok.common.tls import issue_server_certificate
from hyok.kms.domain import Connectivity, InstanceStatus
from tests.integration._kms import (
    KmsStack,
    add_instance,
    kms_stack,
    postgres_server,
)
from tests.integration._sdk import call, client_error, runtime
from tests.integration._server import serve_tls

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

PEER_ACCESS_KEY_ID = "ABCDEFGHIJKLMNOPQRSTUVWX"
PEER_SECRET = base64.b64encode(b"scripted peer secret, 32 bytes!!").decode("ascii")
METADATA = json.dumps(
    {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"}
).encode()


@dataclass
class ScriptedPeer:
    """An XKS peer whose Encrypt and Decrypt responses a test sets."""

    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0

    def answer(self, status: int, error_name: str | None = None, raw: bytes | None = None) -> None:
        self.status = status
        if raw is not None:
            self.body = raw
        else:
            self.body = json.dumps({"errorName": error_name, "errorMessage": "scripted"}).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status, body = self.status, self.body
        if scope["path"].endswith("/metadata"):
            status, body = 200, METADATA
        elif self.delay:
            await asyncio.sleep(self.delay)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass
class Faults:
    stack: KmsStack
    peer: ScriptedPeer
    key_id: str
    down_key_id: str


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def create_key(stack: KmsStack, instance_id: str) -> str:
    query = {"DKMSInstanceId": instance_id, "ExternalKeyId": "peer-1"}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


@pytest.fixture(scope="module")
def faults(kms_stack: KmsStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    directory = tmp_path_factory.mktemp("scripted-peer")
    stack = kms_stack
    certificate = issue_server_certificate(stack.peer_ca, hostnames=["localhost"], days=2)
    cert_file, key_file = directory / "peer.pem", directory / "peer.key"
    certificate.write(cert_file, key_file)
    peer = ScriptedPeer()
    with serve_tls(peer, cert_file=cert_file, key_file=key_file) as url:
        port = int(url.rsplit(":", 1)[1])
        instance_id = add_instance(
            stack.store,
            endpoint=f"https://localhost:{port}",
            access_key_id=PEER_ACCESS_KEY_ID,
            secret=PEER_SECRET,
        )
        key_id = create_key(stack, instance_id)
        # A key whose instance points at a port where nothing listens: created while
        # the peer returns its metadata, then the instance moves to the closed port.
        down_instance = add_instance(
            stack.store,
            endpoint=f"https://localhost:{port}",
            access_key_id=PEER_ACCESS_KEY_ID,
            secret=PEER_SECRET,
        )
        down_key_id = create_key(stack, down_instance)
        with stack.store.session() as session:
            session.instances.update_proxy_configuration(
                down_instance,
                connectivity=Connectivity.PUBLIC,
                endpoint=f"https://localhost:{closed_port()}",
                uri_path="/kms/xks/v1",
                vpc_endpoint_service=None,
                access_key_id=PEER_ACCESS_KEY_ID,
                secret=Secret(PEER_SECRET),
                tls_fingerprint=None,
            )
            session.instances.update_status(down_instance, InstanceStatus.CONNECTED)
        yield Faults(stack, peer, key_id, down_key_id)


def encrypt(faults: Faults, key_id: str | None = None) -> Any:
    plaintext = base64.b64encode(os.urandom(16)).decode("ascii")
    request = models.EncryptRequest(key_id=key_id or faults.key_id, plaintext=plaintext)
    return faults.stack.sdk().encrypt_with_options(request, runtime())


@pytest.mark.parametrize(
    ("error_name", "status", "code", "fragment"),
    [
        ("AuthenticationFailedException", 401, "Forbidden.DKMSInstanceStateInvalid", "credential"),
        ("InvalidUriPathException", 404, "Forbidden.DKMSInstanceStateInvalid", "URI path"),
        ("KeyNotFoundException", 404, "Rejected.Unavailable", "not found"),
        ("InvalidStateException", 400, "Rejected.Unavailable", "not ENABLED"),
        ("InvalidKeyUsageException", 400, "Rejected.Unavailable", "ENCRYPT and DECRYPT"),
        ("AccessDeniedException", 403, "Forbidden.NoPermission", "authorization policy"),
        ("UnsupportedOperationException", 501, "UnsupportedOperation", "size limits"),
    ],
)
def test_xks_client_errors(
    faults: Faults, error_name: str, status: int, code: str, fragment: str
) -> None:
    faults.peer.answer(status, error_name)
    error = client_error(lambda: encrypt(faults))
    assert error.code == code, error.data
    assert fragment in error.data["Message"]
    assert "scripted" not in error.data["Message"]


def test_xks_throttling(faults: Faults) -> None:
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    faults.peer.answer(429, "ThrottlingException")
    with pytest.raises(ThrottlingException) as caught:
        encrypt(faults)
    assert caught.value.code == "Rejected.Throttling"


@pytest.mark.parametrize(
    ("error_name", "status", "code"),
    [
        ("InternalException", 500, "ServiceUnavailableTemporary"),
        ("DependencyTimeoutException", 503, "ServiceUnavailableTemporary"),
        ("ValidationException", 400, "InternalFailure"),
    ],
)
def test_xks_server_errors(faults: Faults, error_name: str, status: int, code: str) -> None:
    faults.peer.answer(status, error_name)
    with pytest.raises(ServerException) as caught:
        encrypt(faults)
    assert caught.value.code == code


def test_invalid_proxy_response(faults: Faults) -> None:
    faults.peer.answer(200, raw=b"<html>not xks</html>")
    with pytest.raises(ServerException) as caught:
        encrypt(faults)
    assert caught.value.code == "InternalFailure"
    assert "invalid response" in caught.value.data["Message"]


def test_proxy_slow(faults: Faults) -> None:
    faults.peer.answer(400, "ValidationException")
    faults.peer.delay = 2.5
    try:
        with pytest.raises(ServerException) as caught:
            encrypt(faults)
    finally:
        faults.peer.delay = 0.0
    assert caught.value.code == "ServiceUnavailableTemporary"
    assert caught.value.status_code == 503
    assert "timed out" in caught.value.data["Message"]


def test_proxy_down(faults: Faults) -> None:
    error = client_error(lambda: encrypt(faults, faults.down_key_id))
    assert error.code == "Forbidden.DKMSInstanceStateInvalid"
    assert "unreachable" in error.data["Message"]
