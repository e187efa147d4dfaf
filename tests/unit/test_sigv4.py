"""SigV4 verification and signing, checked against botocore, curl and stored vectors."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from hyok.common.errors import AuthenticationFailedError
from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential, SigV4Verifier, sign

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sigv4" / "botocore.json").read_text("utf-8")
)["vectors"]

REGION = "cn-hangzhou"
SERVICE = "kms-xks-proxy"
ACCESS_KEY_ID = "AKIAHYOKTEST0000001"
# '/' and '+' as in real AWS secret access keys.
SECRET_VALUE = "hyokTestSecret/+k9Q2mT7wXzR4pL8vN1sB6yC3dF0gH5jK"
CREDENTIAL = Credential(ACCESS_KEY_ID, Secret(SECRET_VALUE))
NOW = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)
URL = "https://xks.example.com/team-a/kms/xks/v1/keys/key.v1-prod_2/encrypt"
BODY = json.dumps(
    {
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsOperation": "Encrypt",
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        },
        "plaintext": "SGVsbG8gV29ybGQh",
        "encryptionAlgorithm": "AES_GCM",
    }
).encode()


SECOND = Credential("AKIAHYOKTEST0000002", Secret("second/secret+value"))
ROTATED_SECRET = "rotated/secret+value"


@pytest.fixture(autouse=True)
def _register(sensitive: Callable[[bytes | str], None]) -> None:
    # The suite's last test fails if a log file contains one of these secrets.
    for secret in (SECRET_VALUE, SECOND.secret.reveal(), ROTATED_SECRET):
        sensitive(secret)
    for vector in VECTORS:
        sensitive(vector["secret"])


@dataclass
class Request:
    """A request as an ASGI server delivers it."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes:
        return next(value for key, value in self.headers if key == name)

    def with_header(self, name: bytes, value: bytes | None) -> Request:
        """Return a copy with every ``name`` header removed, then ``value`` added if given."""
        headers = [(key, old) for key, old in self.headers if key != name]
        if value is not None:
            headers.append((name, value))
        return replace(self, headers=headers)


def asgi_headers(pairs: Any) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def request_from_url(method: str, url: str, headers: Any, body: bytes) -> Request:
    parts = urlsplit(url)
    return Request(method, parts.path, parts.query.encode(), asgi_headers(headers), body)


def make_verifier(
    credentials: Any = None,
    now: datetime = NOW,
    region: str = REGION,
    service: str = SERVICE,
) -> SigV4Verifier:
    if credentials is None:
        credentials = {ACCESS_KEY_ID: CREDENTIAL}
    return SigV4Verifier(credentials, region, service, clock=lambda: now)


def verify(verifier: SigV4Verifier, request: Request) -> Credential:
    return verifier.verify(
        request.method, request.path, request.query, request.headers, request.body
    )


def rejection(verifier: SigV4Verifier, request: Request) -> str:
    with pytest.raises(AuthenticationFailedError) as caught:
        verify(verifier, request)
    return caught.value.message


def signed_request(
    url: str = URL,
    body: bytes = BODY,
    credential: Credential = CREDENTIAL,
    now: datetime = NOW,
    region: str = REGION,
    service: str = SERVICE,
) -> Request:
    headers = {"Content-Type": "application/json"}
    headers |= sign("POST", url, headers, body, credential, region=region, service=service, now=now)
    return request_from_url("POST", url, headers.items(), body)


def replace_authorization(request: Request, old: str, new: str) -> Request:
    authorization = request.header(b"authorization").decode()
    assert old in authorization
    return request.with_header(b"authorization", authorization.replace(old, new).encode())


# botocore helpers ---------------------------------------------------------


def freeze_botocore_clock(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """Pin the time botocore signs with.

    botocore 1.44 reads the time through ``botocore.auth.get_current_datetime``.
    The fallback replaces ``datetime.datetime.utcnow`` as ``botocore.auth``
    sees it, for releases without that function.
    """
    naive = when.astimezone(UTC).replace(tzinfo=None)
    # NOTE: only botocore 1.44 was installed when this was written, so the
    # fallback after this branch has never run.
    if hasattr(botocore.auth, "get_current_datetime"):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kw: naive)
        return

    class FrozenDatetime(datetime):
        @classmethod
        def utcnow(cls) -> FrozenDatetime:
            return cls.combine(naive.date(), naive.time())

    monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(datetime=FrozenDatetime))


def botocore_request(
    url: str = URL,
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    secret: str = SECRET_VALUE,
    signer_class: type[botocore.auth.SigV4Auth] = botocore.auth.SigV4Auth,
    method: str = "POST",
) -> tuple[Request, str]:
    """Sign with botocore and return the request as a server receives it, and the Authorization."""
    aws_request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body)
    if headers is None:
        headers = {"Content-Type": "application/json"}
    for name, value in headers.items():
        aws_request.headers[name] = value
    credentials = botocore.credentials.Credentials(ACCESS_KEY_ID, secret)
    signer_class(credentials, SERVICE, REGION).add_auth(aws_request)
    prepared = aws_request.prepare()
    sent = [("Host", botocore.auth._host_from_url(prepared.url)), *aws_request.headers.items()]
    request = request_from_url(method, prepared.url, sent, prepared.body or b"")
    return request, aws_request.headers["Authorization"]


class SigV4AuthWithoutHost(botocore.auth.SigV4Auth):
    """A botocore signer that leaves ``host`` out of SignedHeaders."""

    def headers_to_sign(self, request: Any) -> Any:
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


# Stored botocore vectors ---------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies(vector: dict[str, Any]) -> None:
    credential = Credential(vector["access_key_id"], Secret(vector["secret"]))
    request = request_from_url(
        vector["method"], vector["url"], vector["headers"], vector["body"].encode()
    )
    now = datetime.fromisoformat(vector["time"]).replace(tzinfo=UTC)
    verifier = make_verifier(
        {credential.access_key_id: credential}, now, vector["region"], vector["service"]
    )

    assert verify(verifier, request) is credential


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["sign_compatible"]],
    ids=[v["name"] for v in VECTORS if v["sign_compatible"]],
)
def test_vector_sign_matches(vector: dict[str, Any]) -> None:
    credential = Credential(vector["access_key_id"], Secret(vector["secret"]))
    headers = {name: value for name, value in vector["headers"] if name == "Content-Type"}

    added = sign(
        vector["method"],
        vector["url"],
        headers,
        vector["body"].encode(),
        credential,
        region=vector["region"],
        service=vector["service"],
        now=datetime.fromisoformat(vector["time"]).replace(tzinfo=UTC),
    )

    assert added["Authorization"] == vector["authorization"]


# Live botocore -------------------------------------------------------------

BOTOCORE_URLS = [
    URL,
    "https://xks.example.com/kms/xks/v1/keys/k1/decrypt",
    "http://127.0.0.1:8443/a-b_c/kms/xks/v1/keys/a.b-c_d.e/metadata",
    "https://[::1]:9443/kms/xks/v1/health",
    "https://xks.example.com/p/a%20b/%7Ec/./d/../e",
    "https://xks.example.com/kms/xks/v1/health?z=1&a=%2F&a=0",
]


@pytest.mark.parametrize("url", BOTOCORE_URLS)
def test_botocore_signed_request_verifies(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    request, _ = botocore_request(url)

    assert verify(make_verifier(), request) is CREDENTIAL


@pytest.mark.parametrize("url", BOTOCORE_URLS)
def test_sign_matches_botocore(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    _, expected = botocore_request(url)
    headers = {"Content-Type": "application/json"}

    added = sign("POST", url, headers, BODY, CREDENTIAL, region=REGION, now=NOW)

    assert added["Authorization"] == expected


def test_sign_matches_botocore_without_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    url = "https://xks.example.com/kms/xks/v1/health"
    _, expected = botocore_request(url, body=b"", headers={}, method="GET")

    added = sign("GET", url, {}, b"", CREDENTIAL, region=REGION, now=NOW)

    assert added["Authorization"] == expected


def test_botocore_content_sha256_header_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    headers = {
        "Content-Type": "application/json",
        "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest(),
    }
    request, _ = botocore_request(headers=headers)

    assert verify(make_verifier(), request) is CREDENTIAL


def test_botocore_unsigned_payload_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    aws_request = botocore.awsrequest.AWSRequest(method="POST", url=URL, data=BODY)
    aws_request.headers["Content-Type"] = "application/json"
    aws_request.context["payload_signing_enabled"] = False
    credentials = botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET_VALUE)
    botocore.auth.SigV4Auth(credentials, SERVICE, REGION).add_auth(aws_request)
    sent = [("Host", "xks.example.com"), *aws_request.headers.items()]
    request = request_from_url("POST", URL, sent, BODY)

    message = rejection(make_verifier(), request)

    assert "UNSIGNED-PAYLOAD" in message


def test_botocore_wrong_secret_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    request, _ = botocore_request(secret="not-the-configured-secret")

    message = rejection(make_verifier(), request)

    assert "check the secret access key" in message


def test_botocore_tampered_body_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    request, _ = botocore_request()
    request.body = BODY.replace(b"Alice", b"Mallory")

    message = rejection(make_verifier(), request)

    assert "signature mismatch" in message


# curl ----------------------------------------------------------------------


@dataclass
class Captured:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


class CaptureServer(http.server.ThreadingHTTPServer):
    captured: list[Captured]


class CaptureHandler(http.server.BaseHTTPRequestHandler):
    # With HTTP/1.1 the handler sends "100 Continue" at once, so curl does not
    # wait a second before sending a body that it announced with Expect.
    protocol_version = "HTTP/1.1"
    server: CaptureServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.captured.append(
            Captured(self.command, self.path, list(self.headers.items()), body)
        )
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def capture_server() -> Iterator[CaptureServer]:
    server = CaptureServer(("127.0.0.1", 0), CaptureHandler)
    server.captured = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def curl_signed_request(
    server: CaptureServer, tmp_path: Path, path: str, body: bytes, secret: str = SECRET_VALUE
) -> Request:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)
    port = server.server_address[1]
    before = len(server.captured)
    subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "20",
            "--aws-sigv4",
            f"aws:amz:{REGION}:{SERVICE}",
            "--user",
            f"{ACCESS_KEY_ID}:{secret}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            f"@{body_file}",
            f"http://127.0.0.1:{port}{path}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert len(server.captured) == before + 1
    captured = server.captured[-1]
    target_path, _, query = captured.target.partition("?")
    return Request(
        captured.method, target_path, query.encode(), asgi_headers(captured.headers), captured.body
    )


def clock_of(request: Request) -> datetime:
    return datetime.strptime(request.header(b"x-amz-date").decode(), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=UTC
    )


def json_body(size: int) -> bytes:
    """Return a JSON body of exactly ``size`` bytes, without newlines (curl --data drops them)."""
    head = b'{"requestMetadata":{"kmsOperation":"Encrypt"},"plaintext":"'
    tail = b'","encryptionAlgorithm":"AES_GCM"}'
    return head + b"A" * (size - len(head) - len(tail)) + tail


CURL_CASES = [
    pytest.param("/kms/xks/v1/keys/k1/encrypt", 200, id="no-prefix"),
    pytest.param("/team-a/xks_proxy/kms/xks/v1/keys/key.v1-prod_2/encrypt", 200, id="prefix"),
    pytest.param("/team-a/kms/xks/v1/keys/a.b-c_d/encrypt", 6000, id="6000-byte-body"),
]


@pytest.mark.parametrize(("path", "size"), CURL_CASES)
def test_curl_signed_request_verifies(
    capture_server: CaptureServer, tmp_path: Path, path: str, size: int
) -> None:
    request = curl_signed_request(capture_server, tmp_path, path, json_body(size))

    assert request.path == path
    assert len(request.body) == size
    assert verify(make_verifier(now=clock_of(request)), request) is CREDENTIAL


def test_curl_wrong_secret_rejected(capture_server: CaptureServer, tmp_path: Path) -> None:
    path = "/kms/xks/v1/keys/k1/encrypt"
    request = curl_signed_request(capture_server, tmp_path, path, json_body(200), "wrong/secret")

    message = rejection(make_verifier(now=clock_of(request)), request)

    assert "signature mismatch" in message


def test_curl_tampered_path_rejected(capture_server: CaptureServer, tmp_path: Path) -> None:
    request = curl_signed_request(
        capture_server, tmp_path, "/kms/xks/v1/keys/k1/encrypt", json_body(200)
    )
    request.path = "/kms/xks/v1/keys/k2/encrypt"

    message = rejection(make_verifier(now=clock_of(request)), request)

    assert "signature mismatch" in message


# Edge cases ----------------------------------------------------------------


def test_own_signed_request_verifies() -> None:
    assert verify(make_verifier(), signed_request()) is CREDENTIAL


def test_wrong_secret_rejected() -> None:
    request = signed_request(credential=Credential(ACCESS_KEY_ID, Secret("another-secret")))

    message = rejection(make_verifier(), request)

    assert "check the secret access key" in message


def test_unknown_access_key_rejected() -> None:
    request = signed_request(credential=Credential("AKIAUNKNOWN", Secret(SECRET_VALUE)))

    message = rejection(make_verifier(), request)

    assert "unknown access key ID 'AKIAUNKNOWN'" in message


def test_skew_301s_past_rejected() -> None:
    request = signed_request(now=NOW - timedelta(seconds=301))

    message = rejection(make_verifier(), request)

    assert "301 seconds before the server time" in message
    assert "check that the client and server clocks" in message


def test_skew_301s_future_rejected() -> None:
    request = signed_request(now=NOW + timedelta(seconds=301))

    message = rejection(make_verifier(), request)

    assert "301 seconds after the server time" in message


def test_skew_299s_past_accepted() -> None:
    request = signed_request(now=NOW - timedelta(seconds=299))

    assert verify(make_verifier(), request) is CREDENTIAL


def test_skew_299s_future_accepted() -> None:
    request = signed_request(now=NOW + timedelta(seconds=299))

    assert verify(make_verifier(), request) is CREDENTIAL


def test_tampered_body_rejected() -> None:
    request = signed_request()
    request.body = BODY.replace(b"Encrypt", b"Decrypt")

    message = rejection(make_verifier(), request)

    assert "signature mismatch" in message


def test_tampered_path_rejected() -> None:
    request = signed_request()
    request.path = request.path.replace("key.v1-prod_2", "key.v1-prod_3")

    message = rejection(make_verifier(), request)

    assert "signature mismatch" in message


def test_tampered_query_rejected() -> None:
    request = signed_request()
    request.query = b"extra=1"

    message = rejection(make_verifier(), request)

    assert "signature mismatch" in message


def test_tampered_signed_header_rejected() -> None:
    request = signed_request().with_header(b"content-type", b"text/plain")

    message = rejection(make_verifier(), request)

    assert "signature mismatch" in message


def test_signed_headers_without_host_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch, NOW)
    request, authorization = botocore_request(signer_class=SigV4AuthWithoutHost)
    assert "SignedHeaders=content-type;x-amz-date," in authorization

    message = rejection(make_verifier(), request)

    assert "does not include 'host'" in message


def test_signed_headers_without_x_amz_date_rejected() -> None:
    request = replace_authorization(
        signed_request(), "SignedHeaders=content-type;host;x-amz-date", "SignedHeaders=host"
    )

    message = rejection(make_verifier(), request)

    assert "does not include 'x-amz-date'" in message


def test_signed_header_missing_from_request_rejected() -> None:
    request = signed_request().with_header(b"content-type", None)

    message = rejection(make_verifier(), request)

    assert "signed header 'content-type' is missing" in message


def test_wrong_region_rejected() -> None:
    request = signed_request(region="us-east-1")

    message = rejection(make_verifier(), request)

    assert "region 'us-east-1'" in message
    assert f"sign with region {REGION!r}" in message


def test_wrong_service_rejected() -> None:
    request = signed_request(service="kms")

    message = rejection(make_verifier(), request)

    assert f"sign with service {SERVICE!r}" in message


def test_wrong_terminator_rejected() -> None:
    request = replace_authorization(signed_request(), "/aws4_request,", "/aws4_other,")

    message = rejection(make_verifier(), request)

    assert "end the scope with 'aws4_request'" in message


def test_scope_date_mismatch_rejected() -> None:
    # Signed a few seconds before midnight, with the X-Amz-Date moved past
    # midnight: both times are within the allowed skew, but the dates differ.
    request = signed_request(now=datetime(2024, 1, 31, 23, 59, 58, tzinfo=UTC))
    request = request.with_header(b"x-amz-date", b"20240201T000001Z")
    verifier = make_verifier(now=datetime(2024, 2, 1, 0, 0, 0, tzinfo=UTC))

    message = rejection(verifier, request)

    assert "scope date 20240131 does not match the X-Amz-Date date 20240201" in message


def test_content_sha256_mismatch_rejected() -> None:
    request = signed_request().with_header(
        b"x-amz-content-sha256", hashlib.sha256(b"other").hexdigest().encode()
    )

    message = rejection(make_verifier(), request)

    assert "does not match the SHA-256 of the request body" in message


def test_content_sha256_unsigned_payload_rejected() -> None:
    request = signed_request().with_header(b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD")

    message = rejection(make_verifier(), request)

    assert "UNSIGNED-PAYLOAD" in message


def test_content_sha256_matching_accepted() -> None:
    request = signed_request().with_header(
        b"x-amz-content-sha256", hashlib.sha256(BODY).hexdigest().encode()
    )

    assert verify(make_verifier(), request) is CREDENTIAL


def test_missing_authorization_rejected() -> None:
    request = signed_request().with_header(b"authorization", None)

    message = rejection(make_verifier(), request)

    assert "missing Authorization header" in message


def test_other_algorithm_rejected() -> None:
    request = replace_authorization(
        signed_request(), "AWS4-HMAC-SHA256 ", "AWS4-ECDSA-P256-SHA256 "
    )

    message = rejection(make_verifier(), request)

    assert "unsupported Authorization algorithm 'AWS4-ECDSA-P256-SHA256'" in message


def test_missing_x_amz_date_rejected() -> None:
    request = signed_request().with_header(b"x-amz-date", None)

    message = rejection(make_verifier(), request)

    assert "missing X-Amz-Date header" in message


@pytest.mark.parametrize(
    "value",
    [b"2024-01-31T12:00:00Z", b"20240131T120000", b"20241331T120000Z", b"20240131T126000Z", b""],
)
def test_malformed_x_amz_date_rejected(value: bytes) -> None:
    request = signed_request().with_header(b"x-amz-date", value)

    message = rejection(make_verifier(), request)

    assert "X-Amz-Date" in message
    assert "YYYYMMDD'T'HHMMSS'Z'" in message


def test_repeated_x_amz_date_rejected() -> None:
    request = signed_request()
    request.headers.append((b"x-amz-date", request.header(b"x-amz-date")))

    message = rejection(make_verifier(), request)

    assert "2 X-Amz-Date headers" in message


SIGNATURE = "0" * 64
SCOPE = f"20240131/{REGION}/{SERVICE}/aws4_request"
HEADERS_AND_SIGNATURE = f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
MALFORMED_AUTHORIZATION = [
    pytest.param("AWS4-HMAC-SHA256", "nothing follows AWS4-HMAC-SHA256", id="algorithm-only"),
    pytest.param(
        f"AWS4-HMAC-SHA256 {HEADERS_AND_SIGNATURE}", "Credential is missing", id="no-credential"
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, Signature={SIGNATURE}",
        "SignedHeaders is missing",
        id="no-signed-headers",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=host;x-amz-date",
        "Signature is missing",
        id="no-signature",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, {HEADERS_AND_SIGNATURE}, Signature={SIGNATURE}",
        "Signature appears twice",
        id="signature-twice",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, {HEADERS_AND_SIGNATURE}, Extra=1",
        "unexpected part 'Extra=1'",
        id="unknown-part",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE} SignedHeaders=host;x-amz-date "
        f"Signature={SIGNATURE}",
        "SignedHeaders is missing",
        id="no-commas",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/20240131/{REGION}/aws4_request, {HEADERS_AND_SIGNATURE}",
        "malformed Credential",
        id="scope-four-parts",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=/{SCOPE}, {HEADERS_AND_SIGNATURE}",
        "malformed Credential",
        id="empty-access-key-id",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/2024-01-31/{REGION}/{SERVICE}/aws4_request, "
        f"{HEADERS_AND_SIGNATURE}",
        "scope date '2024-01-31' is not YYYYMMDD",
        id="scope-date-format",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=, Signature={SIGNATURE}",
        "malformed SignedHeaders ''",
        id="signed-headers-empty",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=Host;X-Amz-Date, "
        f"Signature={SIGNATURE}",
        "list lower-case header names",
        id="signed-headers-upper-case",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=x-amz-date;host, "
        f"Signature={SIGNATURE}",
        "in sorted order",
        id="signed-headers-unsorted",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=host;host;x-amz-date, "
        f"Signature={SIGNATURE}",
        "each header name once",
        id="signed-headers-repeated",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=host;x-amz-date, Signature=abc",
        "malformed Signature",
        id="signature-short",
    ),
    pytest.param(
        f"AWS4-HMAC-SHA256 Credential=AK/{SCOPE}, SignedHeaders=host;x-amz-date, "
        f"Signature={'A' * 64}",
        "malformed Signature",
        id="signature-upper-case",
    ),
    pytest.param("AWS AK:c2lnbmF0dXJl", "unsupported Authorization algorithm 'AWS'", id="sigv2"),
    pytest.param("Bearer token", "unsupported Authorization algorithm 'Bearer'", id="bearer"),
]


@pytest.mark.parametrize(("authorization", "expected"), MALFORMED_AUTHORIZATION)
def test_malformed_authorization_rejected(authorization: str, expected: str) -> None:
    request = signed_request().with_header(b"authorization", authorization.encode())

    message = rejection(make_verifier(), request)

    assert expected in message


def test_non_ascii_authorization_rejected() -> None:
    request = signed_request().with_header(b"authorization", "AWS4-HMAC-SHA256 Crédential".encode())

    message = rejection(make_verifier(), request)

    assert "non-ASCII" in message


def test_repeated_authorization_rejected() -> None:
    request = signed_request()
    request.headers.append((b"authorization", request.header(b"authorization")))

    message = rejection(make_verifier(), request)

    assert "2 Authorization headers" in message


# Credential sets -----------------------------------------------------------


def test_two_live_credentials_accepted() -> None:
    live = {CREDENTIAL.access_key_id: CREDENTIAL, SECOND.access_key_id: SECOND}
    verifier = make_verifier(live.get)

    assert verify(verifier, signed_request(credential=CREDENTIAL)) is CREDENTIAL
    assert verify(verifier, signed_request(credential=SECOND)) is SECOND


def test_removed_credential_rejected() -> None:
    current = {CREDENTIAL.access_key_id: CREDENTIAL, SECOND.access_key_id: SECOND}

    def lookup(key_id: str) -> Credential | None:
        return current.get(key_id)

    verifier = make_verifier(lookup)
    assert verify(verifier, signed_request(credential=CREDENTIAL)) is CREDENTIAL

    current = {SECOND.access_key_id: SECOND}

    message = rejection(verifier, signed_request(credential=CREDENTIAL))
    assert f"unknown access key ID {CREDENTIAL.access_key_id!r}" in message
    assert verify(verifier, signed_request(credential=SECOND)) is SECOND


def test_rotated_secret_rejects_old_signature() -> None:
    current = {ACCESS_KEY_ID: CREDENTIAL}

    def lookup(key_id: str) -> Credential | None:
        return current.get(key_id)

    verifier = make_verifier(lookup)
    assert verify(verifier, signed_request()) is CREDENTIAL

    rotated = Credential(ACCESS_KEY_ID, Secret(ROTATED_SECRET))
    current = {ACCESS_KEY_ID: rotated}

    message = rejection(verifier, signed_request())
    assert "check the secret access key" in message
    assert verify(verifier, signed_request(credential=rotated)) is rotated


def test_mapping_lookup_sees_changes() -> None:
    credentials = {ACCESS_KEY_ID: CREDENTIAL}
    verifier = make_verifier(credentials)

    del credentials[ACCESS_KEY_ID]

    message = rejection(verifier, signed_request())
    assert "unknown access key ID" in message


def test_signing_key_cache_bounded() -> None:
    credentials = [Credential(f"AKIA{i:016d}", Secret(f"secret-{i}")) for i in range(5)]
    verifier = SigV4Verifier(
        {c.access_key_id: c for c in credentials}, REGION, clock=lambda: NOW, cache_size=2
    )

    for credential in credentials:
        assert verify(verifier, signed_request(credential=credential)) is credential

    assert "entries=2," in repr(verifier._keys)


def test_clear_key_cache_empties_cache() -> None:
    verifier = make_verifier()
    verify(verifier, signed_request())
    assert "entries=1," in repr(verifier._keys)

    verifier.clear_key_cache()

    assert "entries=0," in repr(verifier._keys)
    assert verify(verifier, signed_request()) is CREDENTIAL


# Secrets stay out of messages and reprs ------------------------------------


def failing_requests() -> list[Request]:
    base = signed_request()
    return [
        signed_request(credential=Credential(ACCESS_KEY_ID, Secret("another-secret"))),
        signed_request(now=NOW - timedelta(seconds=400)),
        signed_request(region="us-east-1"),
        base.with_header(b"x-amz-content-sha256", b"0" * 64),
        replace(base, body=b"{}"),
        base.with_header(b"authorization", None),
        base.with_header(b"authorization", b"AWS4-HMAC-SHA256 Credential=" + SECRET_VALUE.encode()),
    ]


def test_error_messages_omit_secret() -> None:
    verifier = make_verifier()
    for request in failing_requests():
        message = rejection(verifier, request)
        assert SECRET_VALUE not in message
        assert SECRET_VALUE.split("/")[0] not in message


def test_error_message_omits_expected_signature() -> None:
    good = signed_request()
    expected_signature = good.header(b"authorization").decode().rpartition("Signature=")[2]
    request = replace_authorization(good, expected_signature, "0" * 64)

    message = rejection(make_verifier(), request)

    assert expected_signature not in message
    assert "signature mismatch" in message


def test_credential_repr_masks_secret() -> None:
    assert SECRET_VALUE not in repr(CREDENTIAL)
    assert ACCESS_KEY_ID in repr(CREDENTIAL)


def test_verifier_repr_omits_keys() -> None:
    verifier = make_verifier()
    verify(verifier, signed_request())

    assert repr(verifier) == (
        "SigV4Verifier(region='cn-hangzhou', service='kms-xks-proxy', "
        "max_skew=datetime.timedelta(seconds=300))"
    )


# Signing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://XKS.Example.com/kms/xks/v1/health", "xks.example.com"),
        ("https://xks.example.com:443/kms/xks/v1/health", "xks.example.com"),
        ("http://xks.example.com:80/kms/xks/v1/health", "xks.example.com"),
        ("https://xks.example.com:8443/kms/xks/v1/health", "xks.example.com:8443"),
        ("http://127.0.0.1:8080/kms/xks/v1/health", "127.0.0.1:8080"),
        ("https://[::1]:9443/kms/xks/v1/health", "[::1]:9443"),
    ],
)
def test_sign_derives_host(url: str, host: str) -> None:
    added = sign("POST", url, {}, b"", CREDENTIAL, region=REGION, now=NOW)

    assert added["Host"] == host


def test_sign_keeps_given_host() -> None:
    added = sign("POST", URL, {"Host": "proxy.internal"}, b"", CREDENTIAL, region=REGION, now=NOW)

    assert "Host" not in added
    assert set(added) == {"X-Amz-Date", "Authorization"}


def test_sign_converts_now_to_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=8)))

    added = sign("POST", URL, {}, b"", CREDENTIAL, region=REGION, now=local)

    assert added["X-Amz-Date"] == "20240131T120000Z"


def test_sign_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign("POST", URL, {}, b"", CREDENTIAL, region=REGION, now=NOW.replace(tzinfo=None))


def test_sign_rejects_given_authorization() -> None:
    with pytest.raises(ValueError, match="'authorization'"):
        sign("POST", URL, {"Authorization": "x"}, b"", CREDENTIAL, region=REGION, now=NOW)


def test_sign_rejects_relative_url() -> None:
    with pytest.raises(ValueError, match="absolute http or https URL"):
        sign("POST", "/kms/xks/v1/health", {}, b"", CREDENTIAL, region=REGION, now=NOW)


def test_verifier_rejects_region_with_slash() -> None:
    with pytest.raises(ValueError, match="region 'cn/hangzhou'"):
        SigV4Verifier({}, "cn/hangzhou")


def test_verifier_rejects_naive_clock() -> None:
    verifier = SigV4Verifier({ACCESS_KEY_ID: CREDENTIAL}, REGION, clock=datetime.now)

    with pytest.raises(ValueError, match="timezone-aware"):
        verify(verifier, signed_request())
