"""Tests of hyok.kms.api.errors and hyok.kms.api.responses, with the official SDK parsing errors."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from hyok.common.acs_signature import SignatureError, SignatureErrorCode
from hyok.common.errors import RequestError
from hyok.kms.api import errors
from hyok.kms.api.errors import map_proxy_error
from hyok.kms.api.responses import CONTENT_TYPE, Response, error, success
from hyok.kms.ciphertext import INVALID_CIPHERTEXT_MESSAGE, InvalidCiphertextBlobError
from hyok.kms.xki_client import (
    ProxyError,
    ProxyErrorKind,
    ProxyInvalidResponseError,
    ProxyRejectedError,
    ProxyTimeoutError,
    ProxyTlsError,
    ProxyUnreachableError,
)

HOST_ID = "kms.cn-hangzhou.example.com"
RECOMMEND = "https://hyok.example.com/troubleshoot"
REQUEST_ID = "6a5c3f4e-1d2b-4c8a-9e7f-0b1a2c3d4e5f"
PROXY_SECRET_TEXT = "proxy-said-secret-detail-0123"

CODES: list[tuple[type[errors.KmsError], str, int]] = [
    (errors.InvalidParameterError, "InvalidParameter", 400),
    (errors.InvalidTagKeyError, "InvalidParameter.TagKey", 400),
    (errors.InvalidTagValueError, "InvalidParameter.TagValue", 400),
    (errors.MissingParameterError, "MissingParameter", 400),
    (errors.DuplicateTagKeyError, "Duplicate.TagKey", 400),
    (errors.UnsupportedOperationError, "UnsupportedOperation", 400),
    (errors.ForbiddenNoPermissionError, "Forbidden.NoPermission", 403),
    (errors.ForbiddenInstanceNotFoundError, "Forbidden.DKMSInstanceNotFound", 403),
    (errors.ForbiddenInstanceStateInvalidError, "Forbidden.DKMSInstanceStateInvalid", 403),
    (errors.ForbiddenKeyNotFoundError, "Forbidden.KeyNotFound", 404),
    (errors.ForbiddenKeyVersionNotFoundError, "Forbidden.KeyVersionNotFound", 404),
    (errors.ForbiddenAliasNotFoundError, "Forbidden.AliasNotFound", 404),
    (errors.DryRunOperationError, "DryRunOperationError", 412),
    (errors.InvalidActionNotFoundError, "InvalidAction.NotFound", 404),
    (errors.RejectedDisabledError, "Rejected.Disabled", 409),
    (errors.RejectedPendingDeletionError, "Rejected.PendingDeletion", 409),
    (errors.RejectedUnavailableError, "Rejected.Unavailable", 409),
    (errors.RejectedStateModifiedFailedError, "Rejected.StateModifiedFailed", 409),
    (errors.RejectedThrottlingError, "Rejected.Throttling", 429),
    (errors.RejectedShareQuotaExceedLimitError, "Rejected.ShareQuotaExceedLimit", 400),
    (errors.RejectedLimitExceededError, "Rejected.LimitExceeded", 400),
    (errors.AliasAlreadyExistsError, "AliasAlreadyExists", 400),
    (errors.DeleteConflictShareKeyError, "DeleteConflict.KmsInstanceShare.Key", 409),
    (errors.InternalFailureError, "InternalFailure", 500),
    (errors.ServiceUnavailableTemporaryError, "ServiceUnavailableTemporary", 503),
]


@pytest.mark.parametrize(("cls", "code", "status"), CODES, ids=[c[1] for c in CODES])
def test_error_class_code_and_status(cls: type[errors.KmsError], code: str, status: int) -> None:
    assert cls.code == code
    assert cls.http_status == status
    assert issubclass(cls, RequestError)


def test_every_error_class_listed() -> None:
    exported = {
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.KmsError)
    }
    assert exported - {errors.KmsError} == {cls for cls, _, _ in CODES}


# --- map_proxy_error ----------------------------------------------------------


def rejected(error_name: str, status: int = 400) -> ProxyRejectedError:
    return ProxyRejectedError(
        f"The XKI proxy rejected Encrypt ({error_name})",
        operation="Encrypt",
        external_key_id="ext-key-7",
        error_name=error_name,
        http_status=status,
        proxy_message=PROXY_SECRET_TEXT,
    )


def failure(cls: type[ProxyError], kind: ProxyErrorKind) -> ProxyError:
    return cls(kind, f"Proxy call failed: {kind}", operation="Decrypt", external_key_id="ext-key-7")


# (case id, proxy error, expected class, texts the message must contain)
PROXY_CASES: list[tuple[str, ProxyError, type[RequestError], tuple[str, ...]]] = [
    (
        "AuthenticationFailed",
        rejected("AuthenticationFailedException", 401),
        errors.ForbiddenInstanceStateInvalidError,
        ("kst-1", "credential", "access key ID and secret"),
    ),
    (
        "InvalidUriPath",
        rejected("InvalidUriPathException", 404),
        errors.ForbiddenInstanceStateInvalidError,
        ("kst-1", "URI path", "proxy path"),
    ),
    (
        "KeyNotFound",
        rejected("KeyNotFoundException", 404),
        errors.RejectedUnavailableError,
        ("key-1", "'ext-key-7'", "was not found", "Check that the external key exists"),
    ),
    (
        "InvalidState",
        rejected("InvalidStateException"),
        errors.RejectedUnavailableError,
        ("key-1", "'ext-key-7'", "not ENABLED", "Enable the external key"),
    ),
    (
        "InvalidKeyUsage",
        rejected("InvalidKeyUsageException"),
        errors.RejectedUnavailableError,
        ("key-1", "'ext-key-7'", "ENCRYPT and DECRYPT"),
    ),
    (
        "InvalidCiphertext",
        rejected("InvalidCiphertextException"),
        InvalidCiphertextBlobError,
        (INVALID_CIPHERTEXT_MESSAGE,),
    ),
    (
        "AccessDenied",
        rejected("AccessDeniedException", 403),
        errors.ForbiddenNoPermissionError,
        ("kst-1", "'ext-key-7'", "authorization policy"),
    ),
    (
        "Throttling",
        rejected("ThrottlingException", 429),
        errors.RejectedThrottlingError,
        ("kst-1", "Retry later"),
    ),
    (
        "UnsupportedOperation",
        rejected("UnsupportedOperationException", 501),
        errors.UnsupportedOperationError,
        ("kst-1", "size limits", "EncryptionContext"),
    ),
    (
        "DependencyTimeout",
        rejected("DependencyTimeoutException", 503),
        errors.ServiceUnavailableTemporaryError,
        ("kst-1", "key manager", "timed out"),
    ),
    (
        "Validation",
        rejected("ValidationException"),
        errors.InternalFailureError,
        ("kst-1", "malformed"),
    ),
    (
        "MethodNotAllowed",
        rejected("MethodNotAllowed", 405),
        errors.InternalFailureError,
        ("malformed",),
    ),
    (
        "Internal",
        rejected("InternalException", 500),
        errors.ServiceUnavailableTemporaryError,
        ("kst-1", "failed", "Retry later"),
    ),
    (
        "unknown errorName",
        rejected("SomethingNewException", 500),
        errors.ServiceUnavailableTemporaryError,
        ("kst-1", "Retry later"),
    ),
    *[
        (
            str(kind),
            failure(ProxyUnreachableError, kind),
            errors.ForbiddenInstanceStateInvalidError,
            ("kst-1", "unreachable", kind.value.replace("_", " "), "endpoint"),
        )
        for kind in (
            ProxyErrorKind.NAME_RESOLUTION_FAILED,
            ProxyErrorKind.CONNECTION_FAILED,
            ProxyErrorKind.CONNECTION_LOST,
        )
    ],
    *[
        (
            str(kind),
            failure(ProxyTlsError, kind),
            errors.ForbiddenInstanceStateInvalidError,
            ("kst-1", "TLS", kind.value.replace("_", " "), "fingerprint"),
        )
        for kind in (
            ProxyErrorKind.TLS_HANDSHAKE_FAILED,
            ProxyErrorKind.CERTIFICATE_INVALID,
            ProxyErrorKind.FINGERPRINT_MISMATCH,
        )
    ],
    *[
        (
            str(kind),
            failure(ProxyTimeoutError, kind),
            errors.ServiceUnavailableTemporaryError,
            ("kst-1", "timed out", kind.value.replace("_", " ")),
        )
        for kind in (
            ProxyErrorKind.POOL_TIMEOUT,
            ProxyErrorKind.CONNECT_TIMEOUT,
            ProxyErrorKind.RESPONSE_TIMEOUT,
        )
    ],
    *[
        (
            str(kind),
            failure(ProxyInvalidResponseError, kind),
            errors.InternalFailureError,
            ("kst-1", "invalid response", "XKS proxy API v1"),
        )
        for kind in (ProxyErrorKind.INVALID_RESPONSE, ProxyErrorKind.INTEGRITY_CHECK_FAILED)
    ],
    (
        "base ProxyError",
        ProxyError(
            ProxyErrorKind.CONNECTION_FAILED, "failed", operation="Encrypt", external_key_id=None
        ),
        errors.InternalFailureError,
        ("kst-1",),
    ),
]


@pytest.mark.parametrize(
    ("proxy_error", "expected", "texts"),
    [case[1:] for case in PROXY_CASES],
    ids=[case[0] for case in PROXY_CASES],
)
def test_map_proxy_error(
    proxy_error: ProxyError, expected: type[RequestError], texts: tuple[str, ...]
) -> None:
    mapped = map_proxy_error(proxy_error, key_id="key-1", instance_id="kst-1")
    assert type(mapped) is expected
    assert mapped.__cause__ is proxy_error
    for text in texts:
        assert text in mapped.message
    assert PROXY_SECRET_TEXT not in mapped.message


def test_map_proxy_error_ciphertext_detail() -> None:
    mapped = map_proxy_error(
        rejected("InvalidCiphertextException"), key_id="key-1", instance_id="kst-1"
    )
    assert isinstance(mapped, InvalidCiphertextBlobError)
    assert mapped.code == "InvalidParameter"
    assert "InvalidCiphertextException" in mapped.detail
    assert PROXY_SECRET_TEXT not in mapped.detail


def test_map_proxy_error_throttling_retry_after() -> None:
    mapped = map_proxy_error(rejected("ThrottlingException", 429), key_id="k", instance_id="i")
    assert isinstance(mapped, errors.RejectedThrottlingError)
    assert mapped.retry_after_ms == errors.PROXY_THROTTLING_RETRY_AFTER_MS


# --- responses ----------------------------------------------------------------


def test_success_body_and_headers() -> None:
    status, headers, body = success(REQUEST_ID, {"KeyId": "key-1", "Plain": "\u4e2d"})
    assert status == 200
    assert ("content-type", CONTENT_TYPE) in headers
    assert ("x-acs-request-id", REQUEST_ID) in headers
    assert ("content-length", str(len(body))) in headers
    assert json.loads(body) == {"KeyId": "key-1", "Plain": "\u4e2d", "RequestId": REQUEST_ID}


def test_success_rejects_request_id_field() -> None:
    with pytest.raises(ValueError, match="RequestId"):
        success(REQUEST_ID, {"RequestId": "other"})


def test_error_body_fields() -> None:
    status, headers, body = error(
        REQUEST_ID,
        errors.ForbiddenKeyNotFoundError("The key key-1 was not found."),
        host_id=HOST_ID,
        recommend_base=RECOMMEND,
    )
    assert status == 404
    assert ("x-acs-request-id", REQUEST_ID) in headers
    assert ("content-type", CONTENT_TYPE) in headers
    assert json.loads(body) == {
        "RequestId": REQUEST_ID,
        "HostId": HOST_ID,
        "Code": "Forbidden.KeyNotFound",
        "Message": "The key key-1 was not found.",
        "Recommend": f"{RECOMMEND}?q=Forbidden.KeyNotFound&requestId={REQUEST_ID}",
        "HttpStatus": 404,
    }


def test_error_rejects_success_status() -> None:
    bad = errors.InternalFailureError("x")
    bad.http_status = 200
    with pytest.raises(ValueError, match="400 to 599"):
        error(REQUEST_ID, bad, host_id=HOST_ID, recommend_base=RECOMMEND)


def test_error_lone_surrogate_stays_json() -> None:
    _, _, body = error(
        REQUEST_ID,
        errors.InternalFailureError("bad \udc80"),
        host_id=HOST_ID,
        recommend_base=RECOMMEND,
    )
    assert json.loads(body)["Message"] == "bad \udc80"


class _FixedResponseServer(http.server.ThreadingHTTPServer):
    """A loopback server that answers every request with one prepared response."""

    response: Response = (500, [], b"{}")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _FixedResponseServer

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        status, headers, body = self.server.response
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fixed_server() -> Iterator[_FixedResponseServer]:
    server = _FixedResponseServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def call_describe_key(server: _FixedResponseServer) -> object:
    sdk_client = pytest.importorskip("alibabacloud_kms20160120.client")
    sdk_models = pytest.importorskip("alibabacloud_kms20160120.models")
    from alibabacloud_tea_openapi.models import Config

    config = Config(
        access_key_id="LTAI5tTestAccessKeyId",
        access_key_secret="test-secret-for-loopback-only",
        endpoint=f"127.0.0.1:{server.server_address[1]}",
        protocol="http",
        region_id="cn-hangzhou",
    )
    client = sdk_client.Client(config)
    return client.describe_key(sdk_models.DescribeKeyRequest(key_id="key-1"))


# (case id, error, SDK exception class name, expected status)
SDK_CASES: list[tuple[str, RequestError, str, int]] = [
    ("missing", errors.MissingParameterError("KeyId"), "ClientException", 400),
    (
        "invalid",
        errors.InvalidParameterError("The parameter PageSize is bad.", parameter="PageSize"),
        "ClientException",
        400,
    ),
    (
        "not found",
        errors.ForbiddenKeyNotFoundError("Key key-1 was not found."),
        "ClientException",
        404,
    ),
    (
        "instance state",
        errors.ForbiddenInstanceStateInvalidError("The XKI proxy of kst-1 is unreachable."),
        "ClientException",
        403,
    ),
    (
        "unavailable",
        errors.RejectedUnavailableError("Key key-1 is unavailable."),
        "ClientException",
        409,
    ),
    (
        "throttling without wait",
        errors.RejectedThrottlingError("QPS Limit Exceeded"),
        "ClientException",
        429,
    ),
    (
        "throttling with wait",
        errors.RejectedThrottlingError("QPS Limit Exceeded", retry_after_ms=1500),
        "ThrottlingException",
        429,
    ),
    ("internal", errors.InternalFailureError("Internal error."), "ServerException", 500),
    (
        "unavailable temporary",
        errors.ServiceUnavailableTemporaryError("Retry later."),
        "ServerException",
        503,
    ),
    (
        "signature",
        SignatureError(
            SignatureErrorCode.SIGNATURE_DOES_NOT_MATCH, "The signature does not match."
        ),
        "ClientException",
        400,
    ),
    (
        "ciphertext",
        InvalidCiphertextBlobError("test"),
        "ClientException",
        400,
    ),
]


@pytest.mark.parametrize(
    ("exc", "sdk_class", "status"),
    [case[1:] for case in SDK_CASES],
    ids=[case[0] for case in SDK_CASES],
)
def test_sdk_parses_error(
    fixed_server: _FixedResponseServer, exc: RequestError, sdk_class: str, status: int
) -> None:
    from alibabacloud_tea_openapi import exceptions as sdk_exceptions

    fixed_server.response = error(REQUEST_ID, exc, host_id=HOST_ID, recommend_base=RECOMMEND)
    with pytest.raises(sdk_exceptions.AlibabaCloudException) as info:
        call_describe_key(fixed_server)
    raised = info.value
    assert type(raised).__name__ == sdk_class
    assert raised.code == exc.code
    assert raised.status_code == status
    assert raised.request_id == REQUEST_ID
    assert raised.message == f"code: {status}, {exc.message} request id: {REQUEST_ID}"
    assert raised.data["HostId"] == HOST_ID


def test_sdk_throttling_retry_after(fixed_server: _FixedResponseServer) -> None:
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    exc = errors.RejectedThrottlingError("QPS Limit Exceeded", retry_after_ms=1500)
    fixed_server.response = error(REQUEST_ID, exc, host_id=HOST_ID, recommend_base=RECOMMEND)
    with pytest.raises(ThrottlingException) as info:
        call_describe_key(fixed_server)
    assert info.value.retry_after == 1500


def test_sdk_access_denied_detail(fixed_server: _FixedResponseServer) -> None:
    from alibabacloud_tea_openapi.exceptions import ClientException

    detail = {"AuthAction": "kms:Decrypt", "NoPermissionType": "ImplicitDeny"}
    exc = errors.ForbiddenNoPermissionError("Access denied.", access_denied_detail=detail)
    fixed_server.response = error(REQUEST_ID, exc, host_id=HOST_ID, recommend_base=RECOMMEND)
    with pytest.raises(ClientException) as info:
        call_describe_key(fixed_server)
    assert info.value.code == "Forbidden.NoPermission"
    assert info.value.status_code == 403
    assert info.value.access_denied_detail == detail


def test_sdk_parses_success(fixed_server: _FixedResponseServer) -> None:
    fixed_server.response = success(
        REQUEST_ID, {"KeyMetadata": {"KeyId": "key-1", "KeyState": "Enabled"}}
    )
    result = call_describe_key(fixed_server)
    body = result.body  # type: ignore[attr-defined]
    assert body.request_id == REQUEST_ID
    assert body.key_metadata.key_id == "key-1"
    assert body.key_metadata.key_state == "Enabled"
