"""Tests of hyok.kms.api.app over HTTPS on 127.0.0.1, called by the official SDK.

One uvicorn server (``KmsHttpProtocol``, as ``hyok kms serve`` uses) serves a
:class:`KmsApp` on a fresh SQLite store with one account and two AccessKeys,
one active and one inactive. The SDK trusts the test CA through ``Config.ca``,
which it passes to ``requests`` as a CA bundle path. A pass-through ASGI
wrapper records each request as it arrives, so a test can send a captured SDK
request again with httpx.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import (  # type: ignore[import-untyped]
    ServerException,
)
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
)

from hyok.common.secrets import Secret
from hyok.common.tls import create_ca, issue_server_certificate
from hyok.kms.api.app import MIN_H11_INCOMPLETE_EVENT_SIZE, CallContext, KmsApp
from hyok.kms.api.params import Params as KmsParams
from hyok.kms.domain import AccessKey, AccessKeyStatus, Account, new_access_key_id
from hyok.kms.http11 import MAX_REQUEST_HEAD_BYTES, KmsHttpProtocol
from hyok.kms.store import KmsStore, SecretBox, open_database, upgrade
from tests.integration._sdk import ERROR_FIELDS, call, client_error, close_sdk_connections, runtime
from tests.integration._server import serve_tls

pytestmark = pytest.mark.integration

REGION = "cn-hangzhou"
REGIONS = ("cn-hangzhou", "cn-shanghai")
ACCOUNT_ID = "1234567890123456"
ROOT_KEY = bytes.fromhex("5c" * 32)
BIG_QUERY_CHARACTERS = 100 * 1024


@dataclass
class Captured:
    method: str
    raw_path: bytes
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class Recorder:
    """An ASGI wrapper that records the last five requests it passes on."""

    app: Any
    requests: list[Captured] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.requests.append(
            Captured(
                scope["method"],
                scope.get("raw_path") or scope["path"].encode(),
                scope["query_string"],
                list(scope["headers"]),
                body,
            )
        )
        del self.requests[:-5]
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_context: ssl.SSLContext
    access_key_id: str
    secret: str
    inactive_access_key_id: str
    recorder: Recorder
    seen: list[CallContext]


async def echo_sizes(ctx: CallContext, params: KmsParams) -> dict[str, Any]:
    """Return the length of the Blob parameter, never its value (a test action)."""
    ECHO_CONTEXTS.append(ctx)
    blob = params.optional_str("Blob", max_length=1024 * 1024) or ""
    return {"BlobLength": len(blob)}


async def explode(_ctx: CallContext, _params: KmsParams) -> dict[str, Any]:
    raise RuntimeError("handler bug with internal detail")


ECHO_CONTEXTS: list[CallContext] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.conftest import register_sensitive

    directory = tmp_path_factory.mktemp("kms-api")
    ca = create_ca("hyok test CA", days=3)
    certificate = issue_server_certificate(ca, hostnames=["127.0.0.1"], days=2)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    certificate.write(cert_file, key_file)

    database = open_database(f"sqlite:///{directory / 'kms.db'}")
    upgrade(database)
    store = KmsStore(database, SecretBox(ROOT_KEY))
    now = datetime.now(UTC)
    secret = "TestSecretForFrontDoor0123456789"
    register_sensitive(secret)
    access_key_id = new_access_key_id()
    inactive_id = new_access_key_id()
    with store.session() as session:
        session.accounts.create(Account(account_id=ACCOUNT_ID, created_at=now))
        session.access_keys.create(
            AccessKey(
                access_key_id=access_key_id,
                account_id=ACCOUNT_ID,
                secret=Secret(secret),
                created_at=now,
            )
        )
        session.access_keys.create(
            AccessKey(
                access_key_id=inactive_id,
                account_id=ACCOUNT_ID,
                secret=Secret(secret),
                status=AccessKeyStatus.INACTIVE,
                created_at=now,
            )
        )

    app = KmsApp(
        store,
        region=REGION,
        regions=REGIONS,
        handlers={"HyokTestEcho": echo_sizes, "HyokTestExplode": explode},
    )
    recorder = Recorder(app)
    client_context = ssl.create_default_context(cafile=str(ca_file))
    with serve_tls(
        recorder,
        cert_file=cert_file,
        key_file=key_file,
        http=KmsHttpProtocol,
        loop="asyncio",
        # uvicorn's access log writes the whole query string, parameter values included.
        access_log=False,
    ) as url:
        yield Server(
            url=url,
            port=int(url.rsplit(":", 1)[1]),
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            client_context=client_context,
            access_key_id=access_key_id,
            secret=secret,
            inactive_access_key_id=inactive_id,
            recorder=recorder,
            seen=ECHO_CONTEXTS,
        )
        close_sdk_connections(url)
    database.dispose()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these variables; the requests must go straight to loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def sdk(
    server: Server,
    *,
    access_key_id: str | None = None,
    secret: str | None = None,
    signature_algorithm: str | None = None,
) -> Client:
    config = Config(
        access_key_id=access_key_id or server.access_key_id,
        access_key_secret=secret or server.secret,
        endpoint=f"127.0.0.1:{server.port}",
        protocol="https",
        region_id=REGION,
        ca=str(server.ca_file),
        signature_algorithm=signature_algorithm,
    )
    return Client(config)


def check_request_id(value: str) -> None:
    assert len(value) == 36
    assert value == value.upper()


# Success paths -------------------------------------------------------------------------


def test_describe_regions(server: Server) -> None:
    response = sdk(server).describe_regions_with_options(runtime())
    assert response.status_code == 200
    assert [region.region_id for region in response.body.regions.region] == list(REGIONS)
    check_request_id(response.body.request_id)
    assert response.headers["x-acs-request-id"] == response.body.request_id


def test_describe_account_kms_status(server: Server) -> None:
    response = sdk(server).describe_account_kms_status_with_options(runtime())
    assert response.body.account_status == "Enabled"
    check_request_id(response.body.request_id)


def test_v1_signature_mode(server: Server) -> None:
    client = sdk(server, signature_algorithm="v2")
    response = client.describe_regions_with_options(runtime())
    assert [region.region_id for region in response.body.regions.region] == list(REGIONS)
    assert b"Signature=" in server.recorder.requests[-1].query_string
    status = client.describe_account_kms_status_with_options(runtime())
    assert status.body.account_status == "Enabled"


def test_handler_gets_context(server: Server) -> None:
    server.seen.clear()
    body = call(sdk(server), "HyokTestEcho", {"Blob": "abc"})
    assert body["BlobLength"] == 3
    (ctx,) = server.seen
    assert ctx.account_id == ACCOUNT_ID
    assert ctx.access_key_id == server.access_key_id
    assert ctx.region == REGION
    assert ctx.source_ip == "127.0.0.1"
    assert ctx.request_id == body["RequestId"]


def test_100_kb_query_reaches_app(
    server: Server, sensitive: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    blob = ("Zm9vYmFy" * (BIG_QUERY_CHARACTERS // 8 + 1))[:BIG_QUERY_CHARACTERS]
    sensitive(blob)
    with caplog.at_level(logging.INFO):
        body = call(sdk(server), "HyokTestEcho", {"Blob": blob})
    assert body["BlobLength"] == BIG_QUERY_CHARACTERS
    assert len(server.recorder.requests[-1].query_string) > BIG_QUERY_CHARACTERS
    # With access_log=False uvicorn's access logger neither has handlers nor propagates, so
    # its lines reach no log of the suite; pytest's capture handlers still see them here.
    assert not logging.getLogger("uvicorn.access").propagate
    ours = [r.getMessage() for r in caplog.records if r.name != "uvicorn.access"]
    assert not [message for message in ours if blob[:40] in message]
    # The server thread logs after it has sent the response, so wait for the line.
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = [
            r.getMessage()
            for r in list(caplog.records)
            if "request_id=" + body["RequestId"] in r.getMessage()
        ]
        if not lines:
            time.sleep(0.01)
    (line,) = lines
    assert "action=HyokTestEcho status=200 code=OK" in line
    assert f"access_key_id={server.access_key_id}" in line


def raw_get(port: int, context: ssl.SSLContext, target: str) -> tuple[int, bytes]:
    """Send one GET with a long target over TLS and return the status and body.

    httpx refuses URLs over 64 KiB, so this writes the request by hand.
    """
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        data = request.encode("ascii")
        # h11 checks its limit only while a request head is incomplete, so the
        # first part must arrive alone for the check to be deterministic.
        tls.sendall(data[:20_000])
        time.sleep(0.3)
        tls.sendall(data[20_000:])
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    ("options", "reaches_app"),
    [
        pytest.param({"http": "httptools"}, False, id="httptools"),
        pytest.param({"http": KmsHttpProtocol}, True, id="kms-protocol"),
        pytest.param({"http": "h11"}, False, id="h11-default"),
        pytest.param(
            {"http": "h11", "h11_max_incomplete_event_size": MIN_H11_INCOMPLETE_EVENT_SIZE},
            True,
            id="h11-raised",
        ),
    ],
)
def test_server_settings_for_a_100_kb_request_line(
    server: Server, options: dict[str, Any], reaches_app: bool
) -> None:
    """KmsHttpProtocol and h11 with a raised limit pass a 100 KB request line; the defaults fail."""
    target = "/?Blob=" + "A" * BIG_QUERY_CHARACTERS
    with serve_tls(
        server.recorder.app,
        cert_file=server.cert_file,
        key_file=server.key_file,
        loop="asyncio",
        access_log=False,
        **options,
    ) as url:
        status, body = raw_get(int(url.rsplit(":", 1)[1]), server.client_context, target)
    if reaches_app:
        # The app receives it and rejects it as unsigned, in its own JSON shape.
        assert status == 400
        assert json.loads(body)["Code"] == "MissingParameter"
    else:
        # The server rejects the request line before the app receives it.
        assert status == 400
        assert not body.startswith(b"{")


def test_request_head_over_the_limit_is_refused_before_the_app(server: Server) -> None:
    """A request line past MAX_REQUEST_HEAD_BYTES gets uvicorn's 400, and the app sees nothing."""
    target = "/?Blob=" + "A" * (MAX_REQUEST_HEAD_BYTES + 1)
    status, body = raw_get(server.port, server.client_context, target)
    assert status == 400
    assert not body.startswith(b"{")
    assert all(len(seen.query_string) < MAX_REQUEST_HEAD_BYTES for seen in server.recorder.requests)


def test_long_query_keeps_its_fragment_out(server: Server) -> None:
    """A query past parse_url's 65,535 bytes reaches the app whole, without a '#' fragment."""
    target = "/?Blob=" + "B" * 70_000 + "#frag"
    status, body = raw_get(server.port, server.client_context, target)
    assert status == 400
    assert json.loads(body)["Code"] == "MissingParameter"
    assert server.recorder.requests[-1].query_string == b"Blob=" + b"B" * 70_000


# Authentication failures ---------------------------------------------------------------


def test_wrong_secret(server: Server) -> None:
    client = sdk(server, secret="WrongSecretWrongSecretWrong00000")
    error = client_error(lambda: client.describe_regions_with_options(runtime()))
    assert error.code == "SignatureDoesNotMatch"
    assert error.status_code == 400


def test_wrong_secret_v1(server: Server) -> None:
    client = sdk(server, secret="WrongSecretWrongSecretWrong00000", signature_algorithm="v2")
    error = client_error(lambda: client.describe_regions_with_options(runtime()))
    assert error.code == "SignatureDoesNotMatch"


def test_unknown_access_key(server: Server) -> None:
    client = sdk(server, access_key_id=new_access_key_id())
    error = client_error(lambda: client.describe_account_kms_status_with_options(runtime()))
    assert error.code == "InvalidAccessKeyId.NotFound"
    assert error.status_code == 404


def test_inactive_access_key(server: Server) -> None:
    client = sdk(server, access_key_id=server.inactive_access_key_id)
    error = client_error(lambda: client.describe_regions_with_options(runtime()))
    assert error.code == "InvalidAccessKeyId.Inactive"
    assert error.status_code == 400


def test_replayed_request(server: Server) -> None:
    sdk(server).describe_regions_with_options(runtime())
    captured = server.recorder.requests[-1]
    unsent = {b"content-length", b"accept-encoding", b"connection", b"transfer-encoding"}
    headers = [(name, value) for name, value in captured.headers if name not in unsent]
    url = f"{server.url}{captured.raw_path.decode()}?{captured.query_string.decode()}"
    with httpx.Client(verify=server.client_context, trust_env=False) as http:
        response = http.request(captured.method, url, headers=headers, content=captured.body)
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "SignatureNonceUsed"
    assert set(body) >= ERROR_FIELDS
    assert response.headers["content-type"] == "application/json;charset=utf-8"


# Routing -------------------------------------------------------------------------------


def test_unknown_action(server: Server) -> None:
    error = client_error(lambda: call(sdk(server), "NoSuchAction"))
    assert error.code == "InvalidAction.NotFound"
    assert error.status_code == 404
    assert "the action 'NoSuchAction' is not found" in error.data["Message"]


def test_unknown_action_v1(server: Server) -> None:
    client = sdk(server, signature_algorithm="v2")
    error = client_error(lambda: call(client, "NoSuchAction"))
    assert error.code == "InvalidAction.NotFound"


def test_wrong_version(server: Server) -> None:
    error = client_error(lambda: call(sdk(server), "DescribeRegions", version="2015-01-20"))
    assert error.code == "InvalidParameter"
    assert error.status_code == 400
    assert "2016-01-20" in error.data["Message"]


def test_other_path_and_method(server: Server) -> None:
    with httpx.Client(verify=server.client_context, trust_env=False) as http:
        other_path = http.post(f"{server.url}/v1/keys")
        other_method = http.put(f"{server.url}/")
        unsigned = http.post(f"{server.url}/")
    assert other_path.status_code == 404
    assert other_path.json()["Code"] == "InvalidAction.NotFound"
    assert other_method.status_code == 405
    assert other_method.json()["Code"] == "MethodNotAllowed"
    assert other_method.headers["allow"] == "GET, POST"
    assert unsigned.status_code == 400
    assert unsigned.json()["Code"] == "MissingParameter"
    for response in (other_path, other_method, unsigned):
        body = response.json()
        assert set(body) >= ERROR_FIELDS
        check_request_id(body["RequestId"])
        assert response.headers["x-acs-request-id"] == body["RequestId"]


def test_body_too_large(server: Server) -> None:
    with httpx.Client(verify=server.client_context, trust_env=False) as http:
        response = http.post(f"{server.url}/", content=b"a" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["Code"] == "PayloadTooLarge"


def test_unexpected_failure_hides_detail(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="hyok.kms.api"),
        pytest.raises(ServerException) as caught,
    ):
        call(sdk(server), "HyokTestExplode")
    error = caught.value
    assert error.code == "InternalFailure"
    assert error.status_code == 500
    assert "internal detail" not in json.dumps(error.data)
    assert "internal detail" in caplog.text


def test_no_access_log_line_even_with_a_handler(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The KMS protocol never logs request targets, even when uvicorn.access has a handler."""
    access = logging.getLogger("uvicorn.access")
    handler = logging.StreamHandler()
    access.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            status, _ = raw_get(server.port, server.client_context, "/?Plaintext=c2VjcmV0")
    finally:
        access.removeHandler(handler)
    assert status == 400
    assert not [record for record in caplog.records if record.name == "uvicorn.access"]
