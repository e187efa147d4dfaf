"""Alibaba Cloud request signatures, checked against the official SDKs and captured requests.

Three independent sources sign the requests verified here:

- the official SDKs, live: ``alibabacloud-kms20160120`` (ACS3-HMAC-SHA256,
  and V1 with ``signature_algorithm="v2"``) and ``aliyun-python-sdk-core``
  with ``aliyun-python-sdk-kms`` (V1), calling a capture server on 127.0.0.1.
  These tests skip when the SDKs are not installed;
- ``tests/vectors/acs/sdk.json``, requests that those SDKs sent, captured by
  ``tests/vectors/acs/make_vectors.py``;
- the reference signers below, written from the published algorithm and
  checked to reproduce every signature in ``sdk.json``. They build the edge
  cases that no SDK sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyok.common.acs_signature import (
    AcsCredential,
    AcsRequest,
    AcsVerifier,
    InMemoryNonceCache,
    NonceCache,
    SignatureError,
    SignatureErrorCode,
    SignatureScheme,
    VerifiedCaller,
    _encoded,
)
from hyok.common.secrets import Secret
from tests.vectors.acs import sdk_capture
from tests.vectors.acs.sdk_capture import ACCESS_KEY_ID, CASES, SECRET, Case

VECTOR_FILE = json.loads(
    (Path(__file__).parents[1] / "vectors" / "acs" / "sdk.json").read_text("utf-8")
)
VECTORS: list[dict[str, Any]] = VECTOR_FILE["vectors"]
ACS3_VECTORS = [v for v in VECTORS if v["scheme"] == "ACS3-HMAC-SHA256"]
V1_VECTORS = [v for v in VECTORS if v["scheme"] == "HMAC-SHA1"]
BODY_VECTORS = [v for v in VECTORS if v["body"]]

VERSION = "2016-01-20"
NOW = datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)
WRONG_SECRET = "hyokWrongSecret0000/+=abcdefgh"
OTHER_KEY_ID = "LTAI5tHyokTest0000000002"
OTHER_SECRET = "hyokOtherSecret0000/+=ijklmnop"
STS_TOKEN = "CAIS9gF1q6Ft5B2yfSjIr5bhLcz/2qFX0qWpY0Xh1mQfTt0=+edgeCaseToken"
CREDENTIALS = {
    ACCESS_KEY_ID: AcsCredential(ACCESS_KEY_ID, Secret(SECRET)),
    OTHER_KEY_ID: AcsCredential(OTHER_KEY_ID, Secret(OTHER_SECRET)),
}

# Modules whose warnings come from the SDKs, not from hyok: darabonba calls
# datetime.utcnow(), which Python 3.12 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:alibabacloud_tea_openapi.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:darabonba.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:aliyunsdkcore.*"),
]


@pytest.fixture(autouse=True)
def _register(sensitive: Callable[[bytes | str], None]) -> None:
    # The suite's last test fails if a log file contains one of these secrets.
    for secret in (SECRET, WRONG_SECRET, OTHER_SECRET):
        sensitive(secret)


# Requests and verifiers --------------------------------------------------------


def fixed_clock(now: datetime) -> Callable[[], datetime]:
    return lambda: now


def make_verifier(
    now: datetime = NOW,
    credentials: Any = None,
    nonce_cache: NonceCache | None = None,
) -> AcsVerifier:
    return AcsVerifier(
        CREDENTIALS if credentials is None else credentials,
        clock=fixed_clock(now),
        nonce_cache=nonce_cache,
    )


def rejection(verifier: AcsVerifier, request: AcsRequest) -> SignatureError:
    """Verify a request that must fail, and return the error after checking it leaks no secret."""
    with pytest.raises(SignatureError) as caught:
        verifier.verify(request)
    error = caught.value
    for secret in (SECRET, WRONG_SECRET, OTHER_SECRET):
        assert secret not in error.message
    assert error.code == error.error.value
    return error


def request_from_captured(captured: sdk_capture.Captured) -> AcsRequest:
    return AcsRequest(
        captured.method, captured.path, captured.query, captured.headers, captured.body
    )


def request_from_vector(vector: dict[str, Any]) -> AcsRequest:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in vector["headers"]
    ]
    return AcsRequest(
        vector["method"],
        vector["path"],
        vector["query"].encode("ascii"),
        headers,
        vector["body"].encode("ascii"),
    )


def header(request: AcsRequest, name: bytes) -> str:
    return next(value for key, value in request.headers if key == name).decode("latin-1")


def without_header(request: AcsRequest, name: bytes) -> AcsRequest:
    return replace(request, headers=[(key, value) for key, value in request.headers if key != name])


def with_header(request: AcsRequest, name: bytes, value: bytes) -> AcsRequest:
    return replace(request, headers=[*without_header(request, name).headers, (name, value)])


def query_parameters(request: AcsRequest) -> dict[str, str]:
    return dict(parse_qsl(request.query_string.decode("ascii"), keep_blank_values=True))


def signing_time(request: AcsRequest) -> datetime:
    """Return the x-acs-date or V1 Timestamp of a request, parsed independently of the verifier."""
    if any(key == b"x-acs-date" for key, _ in request.headers):
        text = header(request, b"x-acs-date")
    else:
        text = query_parameters(request)["Timestamp"]
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def expected_parameters(client: str, parameters: dict[str, str]) -> dict[str, str]:
    """Return the parameters a verified request carries, with the extra ones each client adds."""
    expected = dict(parameters)
    if client == "current-v2":
        expected["Format"] = "json"
    if client == "legacy":
        expected["Format"] = "JSON"
        expected.setdefault("RegionId", sdk_capture.REGION)
    return expected


def flip(text: bytes, index: int) -> bytes:
    """Change one letter or digit of ``text`` to another of the same kind."""
    char = chr(text[index])
    if char.isdigit():
        new = "1" if char == "0" else chr(ord(char) - 1)
    elif char in "zZ":
        new = chr(ord(char) - 1)
    else:
        new = chr(ord(char) + 1)
    return text[:index] + new.encode("ascii") + text[index + 1 :]


def literal_positions(raw: bytes, start: int, end: int) -> Iterator[int]:
    """Yield the positions of letters and digits in raw[start:end] outside %XX escapes."""
    index = start
    while index < end:
        if raw[index : index + 1] == b"%":
            index += 3
            continue
        if chr(raw[index]).isalnum():
            yield index
        index += 1


def tamper_parameter(raw: bytes, name: str) -> bytes:
    """Change one byte inside the value of parameter ``name`` of a form-encoded string."""
    match = re.search(rb"(?:^|&)" + re.escape(name.encode("ascii")) + rb"=([^&]*)", raw)
    assert match is not None, f"{name} is not in the form string"
    position = next(literal_positions(raw, match.start(1), match.end(1)))
    return flip(raw, position)


def tamper_header(request: AcsRequest, name: bytes) -> AcsRequest:
    """Change the last digit of header ``name``, or its last letter if it has no digit."""
    value = header(request, name).encode("latin-1")
    digits = [i for i in range(len(value)) if chr(value[i]).isdigit()]
    letters = [i for i in range(len(value)) if chr(value[i]).isalpha()]
    position = (digits or letters)[-1]
    return with_header(request, name, flip(value, position))


# Reference signers -----------------------------------------------------------------
#
# Written from the algorithm as published, not from hyok's verifier. The test
# test_reference_signer_matches_sdk checks them against every captured request.


def reference_acs3_authorization(
    method: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    access_key_id: str,
    secret: str,
    signed: list[str] | None = None,
) -> str:
    names = sorted(headers if signed is None else signed)
    canonical_query = "&".join(
        f"{name}={quote(value, safe='~')}" for name, value in sorted(query.items())
    )
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    canonical_request = "\n".join(
        [
            method,
            "/",
            canonical_query,
            canonical_headers,
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"ACS3-HMAC-SHA256\n{digest}"
    signature = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"ACS3-HMAC-SHA256 Credential={access_key_id},SignedHeaders={';'.join(names)},"
        f"Signature={signature}"
    )


def reference_v1_signature(method: str, parameters: dict[str, str], secret: str) -> str:
    def encode(text: str) -> str:
        return quote(text, safe="~")

    canonical = "&".join(
        f"{encode(name)}={encode(value)}"
        for name, value in sorted(parameters.items())
        if name != "Signature"
    )
    string_to_sign = f"{method}&{encode('/')}&{encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


_nonces = itertools.count(1)


def new_nonce() -> str:
    return f"{next(_nonces):032x}"


def acs3_request(
    parameters: dict[str, str] | None = None,
    *,
    action: str = "Encrypt",
    now: datetime = NOW,
    nonce: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    token: str | None = None,
    extra_headers: dict[str, str] | None = None,
    signed: list[str] | None = None,
    omit_headers: tuple[str, ...] = (),
    access_key_id: str = ACCESS_KEY_ID,
    secret: str = SECRET,
    method: str = "POST",
) -> AcsRequest:
    """Build an ACS3-signed request as the SDK would, signed by the reference signer."""
    if parameters is None:
        parameters = {"KeyId": "key-hyok", "Plaintext": "SGVsbG8gV29ybGQh"}
    headers = {
        "host": "127.0.0.1:8443",
        "x-acs-version": VERSION,
        "x-acs-action": action,
        "user-agent": "hyok-test",
        "x-acs-date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if content_type is not None:
        headers["content-type"] = content_type
    if token is not None:
        headers["x-acs-accesskey-id"] = access_key_id
        headers["x-acs-security-token"] = token
    headers |= extra_headers or {}
    for name in omit_headers:
        del headers[name]
    authorization = reference_acs3_authorization(
        method, parameters, headers, body, access_key_id, secret, signed
    )
    raw_headers = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
    raw_headers.append((b"authorization", authorization.encode()))
    return AcsRequest(method, "/", urlencode(parameters).encode(), raw_headers, body)


def v1_request(
    parameters: dict[str, str] | None = None,
    *,
    now: datetime = NOW,
    nonce: str | None = None,
    token: str | None = None,
    body_parameters: dict[str, str] | None = None,
    access_key_id: str = ACCESS_KEY_ID,
    secret: str = SECRET,
    method: str = "GET",
    omit: tuple[str, ...] = (),
    overrides: dict[str, str] | None = None,
) -> AcsRequest:
    """Build a V1-signed request as aliyun-python-sdk-core would, signed by the reference signer."""
    if parameters is None:
        parameters = {"KeyId": "key-hyok", "Plaintext": "SGVsbG8gV29ybGQh"}
    query = {
        "Action": "Encrypt",
        "Version": VERSION,
        "Format": "JSON",
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureType": "",
        "SignatureNonce": nonce or new_nonce(),
        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **parameters,
    }
    if token is not None:
        query["SecurityToken"] = token
    query |= overrides or {}
    for name in omit:
        del query[name]
    body_parameters = body_parameters or {}
    query["Signature"] = reference_v1_signature(method, query | body_parameters, secret)
    headers = [(b"host", b"127.0.0.1:8443"), (b"user-agent", b"hyok-test")]
    body = b""
    if body_parameters:
        body = urlencode(body_parameters).encode()
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    return AcsRequest(method, "/", urlencode(query).encode(), headers, body)


def build_request(scheme: str, **options: Any) -> AcsRequest:
    return acs3_request(**options) if scheme == "acs3" else v1_request(**options)


SCHEMES = ["acs3", "v1"]


# Stored SDK vectors ----------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies(vector: dict[str, Any]) -> None:
    request = request_from_vector(vector)
    caller = make_verifier(signing_time(request)).verify(request)
    assert caller.access_key_id == vector["access_key_id"]
    assert caller.scheme is SignatureScheme(vector["scheme"])
    assert caller.action == vector["action"]
    assert caller.version == VERSION
    assert caller.security_token == vector["security_token"]
    assert caller.signed_at == signing_time(request)
    assert dict(caller.parameters) == expected_parameters(vector["client"], vector["parameters"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_reference_signer_matches_sdk(vector: dict[str, Any]) -> None:
    request = request_from_vector(vector)
    query = query_parameters(request)
    if vector["scheme"] == "ACS3-HMAC-SHA256":
        authorization = header(request, b"authorization")
        signed = re.search(r"SignedHeaders=([^,]+)", authorization)
        assert signed is not None
        names = signed.group(1).split(";")
        headers = {name: header(request, name.encode()) for name in names}
        computed = reference_acs3_authorization(
            vector["method"], query, headers, request.body, ACCESS_KEY_ID, SECRET, names
        )
        assert computed == authorization
    else:
        body = dict(parse_qsl(request.body.decode("ascii"), keep_blank_values=True))
        computed = reference_v1_signature(vector["method"], query | body, SECRET)
        assert computed == query["Signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_tampered_query_rejected(vector: dict[str, Any]) -> None:
    request = request_from_vector(vector)
    in_query = [name for name in vector["parameters"] if name != "Recipient"]
    tampered = replace(request, query_string=tamper_parameter(request.query_string, in_query[0]))
    error = rejection(make_verifier(signing_time(request)), tampered)
    assert error.code == "SignatureDoesNotMatch"


ACS3_TAMPERED_HEADERS = ["host", "user-agent", "x-acs-action", "x-acs-date", "x-acs-version"]


@pytest.mark.parametrize("name", ACS3_TAMPERED_HEADERS)
@pytest.mark.parametrize("vector", ACS3_VECTORS, ids=[v["name"] for v in ACS3_VECTORS])
def test_vector_tampered_signed_header_rejected(vector: dict[str, Any], name: str) -> None:
    request = request_from_vector(vector)
    tampered = tamper_header(request, name.encode())
    error = rejection(make_verifier(signing_time(request)), tampered)
    assert error.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("vector", BODY_VECTORS, ids=[v["name"] for v in BODY_VECTORS])
def test_vector_tampered_body_rejected(vector: dict[str, Any]) -> None:
    request = request_from_vector(vector)
    tampered = replace(request, body=tamper_parameter(request.body, "Recipient"))
    error = rejection(make_verifier(signing_time(request)), tampered)
    assert error.code == "SignatureDoesNotMatch"


def test_vectors_cover_every_case_and_client() -> None:
    names = {vector["name"] for vector in VECTORS}
    for case in CASES:
        assert f"acs3-{case.name}" in names
        assert f"v1-post-{case.name}" in names
        if case.legacy:
            assert f"v1-legacy-{case.legacy_method.lower()}-{case.name}" in names


def test_v1_vector_ignores_unsigned_header() -> None:
    # V1 signs no header, so a changed user-agent still verifies.
    vector = next(v for v in V1_VECTORS if v["client"] == "legacy")
    request = request_from_vector(vector)
    changed = with_header(request, b"user-agent", b"changed")
    assert make_verifier(signing_time(request)).verify(changed).action == vector["action"]


# Live official SDKs ------------------------------------------------------------


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Block every socket connection to an address other than loopback, and drop proxies."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    blocked: list[Any] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        try:
            return ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            return False

    def connect(sock: socket.socket, address: Any) -> None:
        if not allowed(sock, address):
            blocked.append(address)
            raise ConnectionRefusedError(f"test blocked a connection to {address!r}")
        original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(sock, address):
            blocked.append(address)
            raise ConnectionRefusedError(f"test blocked a connection to {address!r}")
        return original_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    # The SDKs' HTTP clients log request lines, which carry parameter values.
    loggers = [logging.getLogger(name) for name in ("urllib3", "aliyunsdkcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield blocked
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    assert blocked == []


@pytest.fixture(scope="module")
def capture() -> Iterator[sdk_capture.CaptureServer]:
    with sdk_capture.capture_server() as server:
        yield server


MODES = ["acs3", "v1-post", "v1-legacy"]
SDK_PARAMS = [
    pytest.param(mode, case, id=f"{mode}-{case.name}")
    for mode in MODES
    for case in CASES
    if mode != "v1-legacy" or case.legacy
]


def call_sdk(capture: sdk_capture.CaptureServer, mode: str, case: Case) -> AcsRequest:
    if mode == "v1-legacy":
        pytest.importorskip("aliyunsdkkms", reason="aliyun-python-sdk-kms is not installed")
        pytest.importorskip("aliyunsdkcore", reason="aliyun-python-sdk-core is not installed")
        return request_from_captured(sdk_capture.call_legacy_sdk(capture, case))
    pytest.importorskip(
        "alibabacloud_kms20160120", reason="alibabacloud-kms20160120 is not installed"
    )
    algorithm = "v2" if mode == "v1-post" else None
    captured = sdk_capture.call_current_sdk(capture, case, signature_algorithm=algorithm)
    return request_from_captured(captured)


CLIENT_OF_MODE = {"acs3": "current", "v1-post": "current-v2", "v1-legacy": "legacy"}


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize(("mode", "case"), SDK_PARAMS)
def test_sdk_request_verifies(capture: sdk_capture.CaptureServer, mode: str, case: Case) -> None:
    request = call_sdk(capture, mode, case)
    caller = AcsVerifier(CREDENTIALS).verify(request)
    expected_scheme = SignatureScheme.ACS3 if mode == "acs3" else SignatureScheme.V1
    assert caller.scheme is expected_scheme
    assert caller.access_key_id == ACCESS_KEY_ID
    assert caller.action == case.action
    assert caller.version == VERSION
    assert caller.security_token == case.security_token
    assert dict(caller.parameters) == expected_parameters(CLIENT_OF_MODE[mode], case.parameters)


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize(("mode", "case"), SDK_PARAMS)
def test_sdk_request_tampering_rejected(
    capture: sdk_capture.CaptureServer, mode: str, case: Case
) -> None:
    request = call_sdk(capture, mode, case)
    in_query = [name for name in case.parameters if name not in case.body_parameters]
    query = tamper_parameter(request.query_string, in_query[0])
    error = rejection(AcsVerifier(CREDENTIALS), replace(request, query_string=query))
    assert error.code == "SignatureDoesNotMatch"
    if mode == "acs3":
        error = rejection(AcsVerifier(CREDENTIALS), tamper_header(request, b"user-agent"))
        assert error.code == "SignatureDoesNotMatch"
    if case.body_parameters:
        body = tamper_parameter(request.body, "Recipient")
        error = rejection(AcsVerifier(CREDENTIALS), replace(request, body=body))
        assert error.code == "SignatureDoesNotMatch"
    assert AcsVerifier(CREDENTIALS).verify(request).action == case.action


@pytest.mark.usefixtures("loopback_only")
def test_sdk_request_replay_rejected(capture: sdk_capture.CaptureServer) -> None:
    request = call_sdk(capture, "acs3", CASES[0])
    verifier = AcsVerifier(CREDENTIALS)
    verifier.verify(request)
    assert rejection(verifier, request).code == "SignatureNonceUsed"


# Reference-signed requests: credentials ---------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reference_request_verifies(scheme: str) -> None:
    caller = make_verifier().verify(build_request(scheme))
    assert caller.parameters == {"KeyId": "key-hyok", "Plaintext": "SGVsbG8gV29ybGQh"} | (
        {"Format": "JSON"} if scheme == "v1" else {}
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unknown_access_key_id_rejected(scheme: str) -> None:
    request = build_request(scheme, access_key_id="LTAI5tUnknown00000000000")
    error = rejection(make_verifier(), request)
    assert error.code == "InvalidAccessKeyId.NotFound"
    assert error.http_status == 404
    assert "LTAI5tUnknown00000000000" in error.message


@pytest.mark.parametrize("scheme", SCHEMES)
def test_wrong_secret_rejected(scheme: str) -> None:
    error = rejection(make_verifier(), build_request(scheme, secret=WRONG_SECRET))
    assert error.code == "SignatureDoesNotMatch"
    assert error.http_status == 400


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_mismatch_message_omits_signatures(scheme: str) -> None:
    # Same nonce and time, so ``correct`` carries the signature the verifier expects.
    request = build_request(scheme, secret=WRONG_SECRET, nonce="mismatch-nonce")
    correct = build_request(scheme, secret=SECRET, nonce="mismatch-nonce")
    error = rejection(make_verifier(), request)
    if scheme == "acs3":
        signatures = [header(r, b"authorization").rpartition("=")[2] for r in (request, correct)]
    else:
        signatures = [query_parameters(r)["Signature"] for r in (request, correct)]
    for signature in signatures:
        assert signature not in error.message


def test_lookup_function_consulted_per_request() -> None:
    current = {ACCESS_KEY_ID: AcsCredential(ACCESS_KEY_ID, Secret(WRONG_SECRET))}
    verifier = AcsVerifier(current.get, clock=fixed_clock(NOW))
    assert rejection(verifier, acs3_request()).code == "SignatureDoesNotMatch"
    current[ACCESS_KEY_ID] = AcsCredential(ACCESS_KEY_ID, Secret(SECRET))
    assert verifier.verify(acs3_request()).access_key_id == ACCESS_KEY_ID


@pytest.mark.parametrize("scheme", SCHEMES)
def test_expired_temporary_credential_rejected(scheme: str) -> None:
    expired = AcsCredential(ACCESS_KEY_ID, Secret(SECRET), expires_at=NOW - timedelta(seconds=1))
    verifier = make_verifier(credentials={ACCESS_KEY_ID: expired})
    error = rejection(verifier, build_request(scheme, token=STS_TOKEN))
    assert error.code == "InvalidSecurityToken.Expired"


def test_unexpired_temporary_credential_accepted() -> None:
    valid = AcsCredential(ACCESS_KEY_ID, Secret(SECRET), expires_at=NOW + timedelta(minutes=1))
    verifier = make_verifier(credentials={ACCESS_KEY_ID: valid})
    assert verifier.verify(acs3_request(token=STS_TOKEN)).security_token == STS_TOKEN


def test_credential_naive_expiry_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AcsCredential(ACCESS_KEY_ID, Secret(SECRET), expires_at=datetime(2030, 1, 1))


# Time window --------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_signing_time_16_minutes_off_rejected(scheme: str, offset: timedelta) -> None:
    error = rejection(make_verifier(), build_request(scheme, now=NOW + offset))
    assert error.code == "InvalidTimeStamp.Expired"
    assert "960 seconds" in error.message


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("offset", [timedelta(minutes=-14), timedelta(minutes=14)])
def test_signing_time_14_minutes_off_accepted(scheme: str, offset: timedelta) -> None:
    caller = make_verifier().verify(build_request(scheme, now=NOW + offset))
    assert caller.signed_at == NOW + offset


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signing_time_exactly_15_minutes_old_accepted(scheme: str) -> None:
    caller = make_verifier().verify(build_request(scheme, now=NOW - timedelta(minutes=15)))
    assert caller.signed_at == NOW - timedelta(minutes=15)


def test_custom_max_skew_applied() -> None:
    verifier = AcsVerifier(CREDENTIALS, max_skew=timedelta(minutes=5), clock=fixed_clock(NOW))
    error = rejection(verifier, acs3_request(now=NOW - timedelta(minutes=6)))
    assert error.code == "InvalidTimeStamp.Expired"


def test_nonpositive_max_skew_rejected() -> None:
    with pytest.raises(ValueError, match="max_skew"):
        AcsVerifier(CREDENTIALS, max_skew=timedelta(0))


@pytest.mark.parametrize(
    "value", ["2024-01-31 12:00:00", "2024-01-31T12:00:00.000Z", "2024-02-30T12:00:00Z", ""]
)
def test_malformed_x_acs_date_rejected(value: str) -> None:
    request = acs3_request(extra_headers={"x-acs-date": value})
    assert rejection(make_verifier(), request).code == "IllegalTimestamp"


def test_malformed_v1_timestamp_rejected() -> None:
    request = v1_request(overrides={"Timestamp": "20240131T120000Z"})
    assert rejection(make_verifier(), request).code == "IllegalTimestamp"


def test_missing_x_acs_date_rejected() -> None:
    request = without_header(acs3_request(), b"x-acs-date")
    assert rejection(make_verifier(), request).code == "MissingParameter"


def test_duplicate_x_acs_date_rejected() -> None:
    request = acs3_request()
    doubled = replace(request, headers=[*request.headers, (b"x-acs-date", b"2024-01-31T12:00:01Z")])
    assert rejection(make_verifier(), doubled).code == "InvalidParameter"


# Nonces ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reused_nonce_rejected(scheme: str) -> None:
    verifier = make_verifier()
    verifier.verify(build_request(scheme, nonce="0123456789abcdef0123456789abcdef"))
    request = build_request(scheme, nonce="0123456789abcdef0123456789abcdef")
    error = rejection(verifier, request)
    assert error.code == "SignatureNonceUsed"


def test_nonce_shared_between_schemes() -> None:
    verifier = make_verifier()
    verifier.verify(acs3_request(nonce="shared-nonce-0001"))
    assert rejection(verifier, v1_request(nonce="shared-nonce-0001")).code == "SignatureNonceUsed"


def test_same_nonce_other_access_key_accepted() -> None:
    verifier = make_verifier()
    verifier.verify(acs3_request(nonce="nonce-two-keys"))
    request = acs3_request(nonce="nonce-two-keys", access_key_id=OTHER_KEY_ID, secret=OTHER_SECRET)
    assert verifier.verify(request).access_key_id == OTHER_KEY_ID


def test_nonce_stored_only_after_signature_verifies() -> None:
    verifier = make_verifier()
    rejection(verifier, acs3_request(nonce="nonce-after-failure", secret=WRONG_SECRET))
    assert verifier.verify(acs3_request(nonce="nonce-after-failure")).nonce == "nonce-after-failure"


def test_nonce_reusable_after_window() -> None:
    now = [NOW]
    verifier = AcsVerifier(CREDENTIALS, clock=lambda: now[0])
    verifier.verify(acs3_request(nonce="nonce-expires"))
    now[0] = NOW + timedelta(minutes=16)
    request = acs3_request(nonce="nonce-expires", now=now[0])
    assert verifier.verify(request).nonce == "nonce-expires"


@pytest.mark.parametrize("nonce", ["x" * 129, "has space", "tab\tnonce", "nonce-é"])
def test_malformed_nonce_rejected(nonce: str) -> None:
    request = acs3_request(extra_headers={"x-acs-signature-nonce": nonce})
    assert rejection(make_verifier(), request).code == "InvalidParameter"


def test_nonce_cache_rejects_replay() -> None:
    cache = InMemoryNonceCache(clock=fixed_clock(NOW))
    expires = NOW + timedelta(minutes=15)
    assert cache.check_and_store(ACCESS_KEY_ID, "n1", expires) is True
    assert cache.check_and_store(ACCESS_KEY_ID, "n1", expires) is False


def test_nonce_cache_forgets_expired_entries() -> None:
    now = [NOW]
    cache = InMemoryNonceCache(clock=lambda: now[0])
    for index in range(10):
        cache.check_and_store(ACCESS_KEY_ID, f"n{index}", NOW + timedelta(seconds=index + 1))
    now[0] = NOW + timedelta(seconds=5)
    cache.check_and_store(ACCESS_KEY_ID, "new", NOW + timedelta(minutes=15))
    assert len(cache) == 6


def test_nonce_cache_full_raises_throttling() -> None:
    cache = InMemoryNonceCache(max_entries=3, clock=fixed_clock(NOW))
    for index in range(3):
        cache.check_and_store(ACCESS_KEY_ID, f"n{index}", NOW + timedelta(minutes=15))
    with pytest.raises(SignatureError) as caught:
        cache.check_and_store(ACCESS_KEY_ID, "n3", NOW + timedelta(minutes=15))
    assert caught.value.code == "Throttling"
    assert caught.value.http_status == 429


def test_nonce_cache_full_keeps_unexpired_nonces() -> None:
    cache = InMemoryNonceCache(max_entries=1, clock=fixed_clock(NOW))
    cache.check_and_store(ACCESS_KEY_ID, "n0", NOW + timedelta(minutes=15))
    with pytest.raises(SignatureError):
        cache.check_and_store(ACCESS_KEY_ID, "n1", NOW + timedelta(minutes=15))
    assert cache.check_and_store(ACCESS_KEY_ID, "n0", NOW + timedelta(minutes=15)) is False


def test_nonce_cache_concurrent_use_stores_once() -> None:
    cache = InMemoryNonceCache(clock=fixed_clock(NOW))
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def store() -> None:
        barrier.wait()
        results.append(cache.check_and_store(ACCESS_KEY_ID, "race", NOW + timedelta(minutes=1)))

    threads = [threading.Thread(target=store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_nonce_cache_size_validated() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        InMemoryNonceCache(max_entries=0)


def test_custom_nonce_cache_consulted() -> None:
    calls: list[tuple[str, str, datetime]] = []

    class RecordingCache(NonceCache):
        def check_and_store(self, access_key_id: str, nonce: str, expires_at: datetime) -> bool:
            calls.append((access_key_id, nonce, expires_at))
            return True

    make_verifier(nonce_cache=RecordingCache()).verify(acs3_request(nonce="recorded"))
    assert calls == [(ACCESS_KEY_ID, "recorded", NOW + timedelta(minutes=15))]


# Missing and unsigned pieces -------------------------------------------------------


def test_missing_authorization_rejected() -> None:
    request = without_header(acs3_request(), b"authorization")
    error = rejection(make_verifier(), request)
    assert error.code == "MissingParameter"


def test_missing_signature_parameter_rejected() -> None:
    request = v1_request()
    query = {k: v for k, v in query_parameters(request).items() if k != "Signature"}
    error = rejection(make_verifier(), replace(request, query_string=urlencode(query).encode()))
    assert error.code == "MissingParameter"


@pytest.mark.parametrize(
    "name",
    [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-security-token",
        "x-acs-accesskey-id",
        "content-type",
    ],
)
def test_unsigned_required_header_rejected(name: str) -> None:
    body = b"Recipient=r"
    request = acs3_request(
        token=STS_TOKEN,
        body=body,
        content_type="application/x-www-form-urlencoded",
        signed=[
            "accept",
            "content-type",
            "host",
            "user-agent",
            "x-acs-accesskey-id",
            "x-acs-action",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-security-token",
            "x-acs-signature-nonce",
            "x-acs-version",
        ],
    )
    assert make_verifier().verify(request).parameters["Recipient"] == "r"
    authorization = header(request, b"authorization")
    stripped = authorization.replace(f"{name};", "").replace(f";{name},", ",")
    assert stripped != authorization
    error = rejection(make_verifier(), with_header(request, b"authorization", stripped.encode()))
    assert error.code == "IncompleteSignature"
    assert name in error.message


def test_signed_header_absent_from_request_rejected() -> None:
    request = acs3_request(extra_headers={"x-extra": "1"})
    error = rejection(make_verifier(), without_header(request, b"x-extra"))
    assert error.code == "IncompleteSignature"
    assert "x-extra" in error.message


def test_unsigned_extra_header_ignored() -> None:
    request = with_header(acs3_request(), b"x-unsigned", b"anything")
    assert make_verifier().verify(request).action == "Encrypt"


def test_content_sha256_mismatch_rejected() -> None:
    request = acs3_request(body=b"Recipient=r", content_type="application/x-www-form-urlencoded")
    wrong = with_header(
        request, b"x-acs-content-sha256", hashlib.sha256(b"other").hexdigest().encode()
    )
    error = rejection(make_verifier(), wrong)
    assert error.code == "SignatureDoesNotMatch"
    assert "x-acs-content-sha256" in error.message


def test_content_sha256_header_optional() -> None:
    request = acs3_request(omit_headers=("x-acs-content-sha256",))
    assert make_verifier().verify(request).action == "Encrypt"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("ACS3-HMAC-SHA256", id="algorithm-only"),
        pytest.param("ACS3-HMAC-SM3 Credential=K,SignedHeaders=host,Signature=00", id="sm3"),
        pytest.param("AWS4-HMAC-SHA256 Credential=K/20240131/r/s/aws4_request", id="sigv4"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("ACS3-HMAC-SHA256 SignedHeaders={names},Signature={sig}", id="no-credential"),
        pytest.param("ACS3-HMAC-SHA256 Credential={ak},Signature={sig}", id="no-signed-headers"),
        pytest.param("ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names}", id="no-signature"),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names},"
            "Signature={sig},Signature={sig}",
            id="signature-twice",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names},Signature={sig},Extra=1",
            id="unknown-part",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names},Signature",
            id="part-without-equals",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders={names},Signature={sig}",
            id="empty-credential",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names},Signature={upper}",
            id="upper-case-signature",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={names},Signature={short}",
            id="short-signature",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={unsorted},Signature={sig}",
            id="unsorted-signed-headers",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={upper_names},Signature={sig}",
            id="upper-case-signed-headers",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders=host;;x-acs-date,Signature={sig}",
            id="empty-header-name",
        ),
        pytest.param(
            "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders=host;host,Signature={sig}",
            id="repeated-header-name",
        ),
    ],
)
def test_malformed_authorization_rejected(authorization: str) -> None:
    request = acs3_request()
    signed = header(request, b"authorization")
    names = re.search(r"SignedHeaders=([^,]+)", signed)
    signature = signed.rpartition("Signature=")[2]
    assert names is not None
    value = authorization.format(
        ak=ACCESS_KEY_ID,
        names=names.group(1),
        unsorted=";".join(reversed(names.group(1).split(";"))),
        upper_names=names.group(1).upper(),
        sig=signature,
        upper=signature.upper(),
        short=signature[:-1],
    )
    error = rejection(make_verifier(), with_header(request, b"authorization", value.encode()))
    assert error.code == "IncompleteSignature"


def test_two_authorization_headers_rejected() -> None:
    request = acs3_request()
    value = header(request, b"authorization").encode()
    doubled = replace(request, headers=[*request.headers, (b"authorization", value)])
    assert rejection(make_verifier(), doubled).code == "IncompleteSignature"


def test_non_ascii_authorization_rejected() -> None:
    request = with_header(
        acs3_request(), b"authorization", "ACS3-HMAC-SHA256 Credential=é".encode()
    )
    assert rejection(make_verifier(), request).code == "IncompleteSignature"


def test_authorization_with_spaces_after_commas_accepted() -> None:
    request = acs3_request()
    spaced = header(request, b"authorization").replace(",", ", ")
    assert make_verifier().verify(with_header(request, b"authorization", spaced.encode()))


# Parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_duplicate_query_key_rejected(scheme: str) -> None:
    request = build_request(scheme)
    doubled = replace(request, query_string=request.query_string + b"&KeyId=other")
    error = rejection(make_verifier(), doubled)
    assert error.code == "InvalidParameter"
    assert "KeyId" in error.message


def test_query_and_body_duplicate_rejected() -> None:
    request = acs3_request(
        {"KeyId": "k"}, body=b"KeyId=k", content_type="application/x-www-form-urlencoded"
    )
    assert rejection(make_verifier(), request).code == "InvalidParameter"


def test_repeat_list_names_kept_as_sent() -> None:
    parameters = {f"ResourceId.{index}": f"key-{index}" for index in range(1, 12)}
    parameters |= {"RegionId": "cn-hangzhou", "Tag.1.Key": "env", "Tag.1.Value": "prod"}
    caller = make_verifier().verify(acs3_request(parameters, action="TagResources"))
    assert caller.parameters == parameters


@pytest.mark.parametrize(
    "query",
    [b"KeyId=%FF", b"KeyId=\xc3\xa9", b"=value"],
    ids=["invalid-utf8", "raw-non-ascii", "empty-name"],
)
def test_undecodable_query_rejected(query: bytes) -> None:
    request = replace(acs3_request(), query_string=query)
    assert rejection(make_verifier(), request).code == "InvalidParameter"


def test_blank_value_accepted() -> None:
    caller = make_verifier().verify(v1_request({"KeyId": "k", "DryRun": ""}))
    assert caller.parameters["DryRun"] == ""


def test_bare_name_read_as_blank_value() -> None:
    request = acs3_request({"KeyId": "k", "DryRun": ""})
    bare = request.query_string.replace(b"DryRun=", b"DryRun")
    assert bare != request.query_string
    caller = make_verifier().verify(replace(request, query_string=bare))
    assert caller.parameters["DryRun"] == ""


def test_acs3_action_parameter_mismatch_rejected() -> None:
    request = acs3_request({"Action": "Decrypt", "KeyId": "k"}, action="Encrypt")
    error = rejection(make_verifier(), request)
    assert error.code == "InvalidParameter"
    assert "Action" in error.message


def test_acs3_matching_action_parameter_removed() -> None:
    request = acs3_request({"Action": "Encrypt", "KeyId": "k"}, action="Encrypt")
    assert make_verifier().verify(request).parameters == {"KeyId": "k"}


def test_v1_action_header_mismatch_rejected() -> None:
    request = v1_request()
    changed = with_header(request, b"x-acs-action", b"Decrypt")
    assert rejection(make_verifier(), changed).code == "InvalidParameter"


def test_v1_signing_parameters_removed() -> None:
    caller = make_verifier().verify(v1_request(token=STS_TOKEN))
    assert caller.parameters == {
        "KeyId": "key-hyok",
        "Plaintext": "SGVsbG8gV29ybGQh",
        "Format": "JSON",
    }


@pytest.mark.parametrize(
    "name",
    [
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Action",
        "Version",
    ],
)
def test_v1_missing_parameter_rejected(name: str) -> None:
    error = rejection(make_verifier(), v1_request(omit=(name,)))
    assert error.code == "MissingParameter"
    assert name in error.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SignatureMethod", "HMAC-SHA256"),
        ("SignatureVersion", "2.0"),
        ("SignatureType", "BEARERTOKEN"),
    ],
)
def test_v1_unsupported_signing_parameter_rejected(name: str, value: str) -> None:
    error = rejection(make_verifier(), v1_request(overrides={name: value}))
    assert error.code == "IncompleteSignature"


def test_v1_malformed_signature_rejected() -> None:
    request = v1_request()
    query = query_parameters(request) | {"Signature": "not base64"}
    changed = replace(request, query_string=urlencode(query).encode())
    assert rejection(make_verifier(), changed).code == "IncompleteSignature"


def test_v1_form_body_signed() -> None:
    request = v1_request(method="POST", body_parameters={"Recipient": "r e+c/i"})
    assert make_verifier().verify(request).parameters["Recipient"] == "r e+c/i"


def test_v1_json_body_rejected() -> None:
    request = v1_request(method="POST")
    with_body = replace(
        with_header(request, b"content-type", b"application/json"), body=b'{"KeyId":"x"}'
    )
    assert rejection(make_verifier(), with_body).code == "IncompleteSignature"


def test_v1_path_other_than_root_rejected() -> None:
    request = replace(v1_request(), path="/other")
    assert rejection(make_verifier(), request).code == "IncompleteSignature"


def test_v1_method_signed() -> None:
    request = replace(v1_request(method="GET"), method="POST")
    assert rejection(make_verifier(), request).code == "SignatureDoesNotMatch"


def test_bearer_token_rejected() -> None:
    request = AcsRequest(
        "POST", "/", b"SignatureType=BEARERTOKEN", [(b"x-acs-bearer-token", b"t")], b""
    )
    error = rejection(make_verifier(), request)
    assert error.code == "IncompleteSignature"
    assert "bearer" in error.message


# Security tokens ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_security_token_returned(scheme: str) -> None:
    caller = make_verifier().verify(build_request(scheme, token=STS_TOKEN))
    assert caller.security_token == STS_TOKEN


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_security_token_returns_none(scheme: str) -> None:
    assert make_verifier().verify(build_request(scheme)).security_token is None


def test_empty_security_token_rejected() -> None:
    request = acs3_request(token="")
    assert rejection(make_verifier(), request).code == "InvalidSecurityToken.Malformed"


def test_security_token_header_and_parameter_differ_rejected() -> None:
    request = acs3_request({"KeyId": "k", "SecurityToken": "other-token"}, token=STS_TOKEN)
    assert rejection(make_verifier(), request).code == "InvalidSecurityToken.Malformed"


def test_accesskey_id_header_mismatch_rejected() -> None:
    request = acs3_request(extra_headers={"x-acs-accesskey-id": OTHER_KEY_ID})
    assert rejection(make_verifier(), request).code == "InvalidParameter"


# Encoding --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_encoding_of_sdk_form_matches_quote(value: str) -> None:
    # The current SDK sends quote_plus() output, and aliyun-python-sdk-core
    # replaces "+" by "%20", "*" by "%2A" and "%7E" by "~" in it.
    current = quote_plus(value)
    legacy = current.replace("+", "%20").replace("*", "%2A").replace("%7E", "~")
    assert _encoded(current, value) == quote(value, safe="~")
    assert _encoded(legacy, value) == quote(value, safe="~")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="%+*/~ aAzZ09-_.2378BCEFbcefé", max_size=30))
def test_encoding_of_any_form_matches_quote(raw: str) -> None:
    try:
        decoded = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        return
    assert _encoded(raw, decoded) == quote(decoded, safe="~")


# Names of the characters the SDK leaves unencoded, without the names the protocols reserve.
RESERVED_NAMES = {"AccessKeyId", "Action", "Format", "SecurityToken", "Timestamp", "Version"}
PARAMETER_NAMES = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~",
    min_size=1,
    max_size=12,
).filter(lambda name: name not in RESERVED_NAMES and not name.startswith("Signature"))
PARAMETER_VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(PARAMETER_NAMES, PARAMETER_VALUES, max_size=6), st.sampled_from(SCHEMES))
def test_random_parameters_verify(parameters: dict[str, str], scheme: str) -> None:
    caller = make_verifier().verify(build_request(scheme, parameters=parameters))
    expected = parameters | ({"Format": "JSON"} if scheme == "v1" else {})
    assert caller.parameters == expected


def test_non_ascii_header_value_signed_as_utf8() -> None:
    request = acs3_request(extra_headers={"user-agent": "hyök-tëst"})
    assert make_verifier().verify(request).action == "Encrypt"


def test_repeated_header_values_sorted_and_joined() -> None:
    request = acs3_request(extra_headers={"x-extra": "a,b"})
    split = [(name, value) for name, value in request.headers if name != b"x-extra"] + [
        (b"x-extra", b" b"),
        (b"x-extra", b"a "),
    ]
    assert make_verifier().verify(replace(request, headers=split)).action == "Encrypt"


# Reprs, construction and error shape ----------------------------------------------


def test_reprs_omit_secrets_and_values() -> None:
    request = acs3_request(token=STS_TOKEN)
    caller = make_verifier().verify(request)
    texts = [
        repr(CREDENTIALS[ACCESS_KEY_ID]),
        repr(make_verifier()),
        repr(request),
        repr(caller),
        repr(InMemoryNonceCache()),
    ]
    for text in texts:
        assert SECRET not in text
        assert STS_TOKEN not in text
        assert "SGVsbG8gV29ybGQh" not in text


def test_function_lookup_accepted() -> None:
    by_function = AcsVerifier(CREDENTIALS.get, clock=fixed_clock(NOW))
    assert by_function.verify(acs3_request()).access_key_id == ACCESS_KEY_ID


def test_from_asgi_builds_request() -> None:
    source = acs3_request()
    scope = {
        "type": "http",
        "method": source.method,
        "path": "/",
        "raw_path": b"/",
        "query_string": source.query_string,
        "headers": list(source.headers),
    }
    request = AcsRequest.from_asgi(scope, source.body)
    assert make_verifier().verify(request).action == "Encrypt"


def test_from_asgi_without_raw_path_quotes_path() -> None:
    scope = {"method": "GET", "path": "/a b", "query_string": b"", "headers": []}
    assert AcsRequest.from_asgi(scope, b"").path == "/a%20b"


def test_error_codes_carry_status() -> None:
    statuses = {code.value: code.http_status for code in SignatureErrorCode}
    assert statuses["InvalidAccessKeyId.NotFound"] == 404
    assert statuses["Throttling"] == 429
    assert statuses["SignatureDoesNotMatch"] == 400


def test_error_is_request_error() -> None:
    from hyok.common.errors import RequestError

    error = SignatureError(SignatureErrorCode.SIGNATURE_NONCE_USED, "used")
    assert isinstance(error, RequestError)
    assert (error.code, error.http_status, error.message) == ("SignatureNonceUsed", 400, "used")


def test_verified_caller_is_frozen() -> None:
    caller = make_verifier().verify(acs3_request())
    assert isinstance(caller, VerifiedCaller)
    with pytest.raises(AttributeError):
        caller.action = "Decrypt"  # type: ignore[misc]


def test_signed_at_is_utc() -> None:
    caller = make_verifier().verify(acs3_request())
    assert caller.signed_at.tzinfo is UTC


def test_nonce_cache_buckets_drop_only_passed_seconds() -> None:
    now = [NOW]
    cache = InMemoryNonceCache(clock=lambda: now[0])
    cache.check_and_store(ACCESS_KEY_ID, "early", NOW + timedelta(seconds=1.2))
    cache.check_and_store(ACCESS_KEY_ID, "late", NOW + timedelta(seconds=1.9))
    # Both expire within the second that ends at NOW + 2 s; neither is dropped before.
    now[0] = NOW + timedelta(seconds=1.5)
    assert cache.check_and_store(ACCESS_KEY_ID, "late", NOW + timedelta(seconds=1.9)) is False
    now[0] = NOW + timedelta(seconds=2)
    assert cache.check_and_store(ACCESS_KEY_ID, "probe", NOW + timedelta(minutes=1)) is True
    assert len(cache) == 1


def test_nonce_cache_separates_access_keys_and_processes() -> None:
    first = InMemoryNonceCache(clock=fixed_clock(NOW))
    expires = NOW + timedelta(minutes=15)
    assert first.check_and_store(ACCESS_KEY_ID, "n", expires) is True
    assert first.check_and_store("LTAIotherAccessKey0001", "n", expires) is True
    # Fingerprints are keyed per cache, so they reveal nothing across processes.
    assert first._key != InMemoryNonceCache(clock=fixed_clock(NOW))._key
