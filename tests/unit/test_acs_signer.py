"""hyok's ACS3-HMAC-SHA256 signer, checked against the official SDK's signing function.

``alibabacloud_tea_openapi.utils.Utils.get_authorization`` is the function
the official SDK signs every ACS3 request with. For the same headers it must
return the same Authorization header as :func:`sign_acs3`, and hyok's
verifier must accept the request and read back the parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
from alibabacloud_tea_openapi.utils import Utils  # type: ignore[import-untyped]
from darabonba.request import DaraRequest  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from hyok.common.acs_signature import (
    AcsCredential,
    AcsRequest,
    AcsVerifier,
    SignatureError,
    SignatureErrorCode,
)
from hyok.common.acs_signer import ACS3_ALGORITHM, SignedRequest, form_encode, sign_acs3
from hyok.common.secrets import Secret

ACCESS_KEY_ID = "LTAI5tHyokSignerTest0001"
SECRET = "hyokSignerSecret0000/+=qrstuvwx"
TOKEN = "CAIS9gF1q6Ft5B2yfSjIr5bhLcz/signerToken="
NOW = datetime(2026, 12, 5, 7, 30, 0, tzinfo=UTC)
HOST = "127.0.0.1:9443"

PARAMETER_SETS = [
    {"KeyId": "key-abc", "KeySpec": "AES_256"},
    {"CiphertextBlob": "ab+/cd==", "EncryptionContext": '{"purpose":"backup & restore"}'},
    {"KeyId": "alias/team~1", "EncryptionContext": '{"név":"érték 1+1=2","*":"%20"}'},
    {},
]


@pytest.fixture(autouse=True)
def _register(sensitive: Callable[[bytes | str], None]) -> None:
    sensitive(SECRET)


def sign(parameters: dict[str, str], **options: object) -> SignedRequest:
    arguments: dict[str, object] = {
        "host": HOST,
        "action": "GenerateDataKey",
        "version": "2016-01-20",
        "parameters": parameters,
        "access_key_id": ACCESS_KEY_ID,
        "secret": Secret(SECRET),
        "now": NOW,
        **options,
    }
    return sign_acs3(**arguments)  # type: ignore[arg-type]


def sdk_authorization(request: SignedRequest) -> str:
    """Sign the same method, path, query and headers with the official SDK's function."""
    sdk_request = DaraRequest()
    sdk_request.method = "POST"
    sdk_request.pathname = "/"
    sdk_request.query = {}
    sdk_request.headers = {
        name: value for name, value in request.headers.items() if name != "authorization"
    }
    payload = hashlib.sha256(request.body).hexdigest()
    return str(Utils.get_authorization(sdk_request, ACS3_ALGORITHM, payload, ACCESS_KEY_ID, SECRET))


def as_received(request: SignedRequest) -> AcsRequest:
    headers = [(name.encode(), value.encode("latin-1")) for name, value in request.headers.items()]
    return AcsRequest("POST", "/", b"", headers, request.body)


def verifier() -> AcsVerifier:
    return AcsVerifier(
        {ACCESS_KEY_ID: AcsCredential(ACCESS_KEY_ID, Secret(SECRET))}, clock=lambda: NOW
    )


@pytest.mark.parametrize("parameters", PARAMETER_SETS)
def test_signature_equals_the_sdk(parameters: dict[str, str]) -> None:
    request = sign(parameters)
    assert request.headers["authorization"] == sdk_authorization(request)


def test_security_token_signed_like_sdk() -> None:
    request = sign({"KeyId": "key-abc"}, security_token=Secret(TOKEN))
    assert request.headers["x-acs-security-token"] == TOKEN
    assert "x-acs-security-token" in request.headers["authorization"]
    assert request.headers["authorization"] == sdk_authorization(request)
    caller = verifier().verify(as_received(request))
    assert caller.security_token == TOKEN


@pytest.mark.parametrize("parameters", PARAMETER_SETS)
def test_verifier_accepts_and_reads_parameters(parameters: dict[str, str]) -> None:
    caller = verifier().verify(as_received(sign(parameters)))
    assert caller.access_key_id == ACCESS_KEY_ID
    assert caller.action == "GenerateDataKey"
    assert caller.parameters == parameters


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,15}", fullmatch=True), st.text()))
def test_any_parameters_round_trip(parameters: dict[str, str]) -> None:
    request = sign(parameters, nonce=None)
    assert dict(parse_qsl(request.body.decode("ascii"), keep_blank_values=True)) == parameters
    assert verifier().verify(as_received(request)).parameters == parameters


@pytest.mark.parametrize("name", ["x-acs-action", "x-acs-date", "host", "x-acs-content-sha256"])
def test_changed_signed_header_is_rejected(name: str) -> None:
    request = sign({"KeyId": "key-abc"})
    headers = dict(request.headers)
    headers[name] = {
        "x-acs-action": "Decrypt",
        "x-acs-date": "2026-12-05T07:30:01Z",
        "host": "127.0.0.1:9444",
        "x-acs-content-sha256": "0" * 64,
    }[name]
    with pytest.raises(SignatureError) as raised:
        verifier().verify(as_received(SignedRequest(headers, request.body)))
    assert raised.value.code == SignatureErrorCode.SIGNATURE_DOES_NOT_MATCH.value


def test_changed_body_is_rejected() -> None:
    request = sign({"KeyId": "key-abc"})
    with pytest.raises(SignatureError):
        verifier().verify(as_received(SignedRequest(request.headers, b"KeyId=key-abd")))


def test_every_request_gets_a_new_nonce() -> None:
    first, second = sign({}, nonce=None), sign({}, nonce=None)
    assert first.headers["x-acs-signature-nonce"] != second.headers["x-acs-signature-nonce"]
    assert len(first.headers["x-acs-signature-nonce"]) == 32


def test_repr_leaves_out_parameters_and_signature() -> None:
    request = sign({"Plaintext": "c2VjcmV0"}, security_token=Secret(TOKEN))
    text = repr(request)
    assert "c2VjcmV0" not in text
    assert TOKEN not in text
    assert request.headers["authorization"].rpartition("=")[2] not in text
    assert text == "SignedRequest(action='GenerateDataKey', body=<18 bytes>)"


def test_form_encode_uses_rfc_3986() -> None:
    assert form_encode({"a b": "1+1=2&~*"}) == "a%20b=1%2B1%3D2%26~%2A"
