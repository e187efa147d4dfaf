"""Limits and observability of the XKS proxy over TLS on loopback.

Rate limit, backend deadline, request body limit, the deep health cache,
``/healthz``, the audit log and ``/metrics``. The proxy of this module runs
with ``max_body_bytes = 20000`` and ``health_cache_seconds = 0.5``, and counts
the deep health checks that reach its file backend.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential
from tests.conftest import register_sensitive
from tests.integration._xks import (
    PRINCIPAL,
    DataDir,
    HealthCountingKeyManager,
    Metrics,
    RunningProxy,
    SlowKeyManager,
    XksClient,
    assert_same_bytes,
    assert_xks_error,
    b64,
    encrypt_body,
    expect_ok,
    file_backend,
    keystore_entry,
    request_metadata,
    run_proxy,
    secret_bytes,
    unb64,
    xks_data_dir,  # noqa: F401 - a pytest fixture, found by name
)

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 20_000
HEALTH_CACHE_SECONDS = 0.5
AUDIT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
AUDIT_FIELDS = {
    "time",
    "event",
    "keyStore",
    "operation",
    "keyId",
    "outcome",
    "status",
    "latencyMs",
    "accessKeyId",
    "source",
    "kmsRequestId",
    "kmsOperation",
    "principal",
    "kmsKeyArn",
    "viaService",
    "sourceVpc",
    "sourceVpce",
}


@dataclass
class LimitsProxy:
    running: RunningProxy
    counting: HealthCountingKeyManager
    slow: SlowKeyManager


@pytest.fixture(scope="module")
def limits(xks_data_dir: DataDir) -> Iterator[LimitsProxy]:  # noqa: F811 - the fixture
    data = xks_data_dir
    data.add_store_credentials("throttled")
    data.add_store_credentials("slow")
    settings = data.write_config(
        server={
            "max_body_bytes": MAX_BODY_BYTES,
            "health_cache_seconds": HEALTH_CACHE_SECONDS,
            "request_deadline_ms": 200,
        },
        backends={"local": file_backend(), "slow": file_backend()},
        keystores=[
            keystore_entry("default"),
            keystore_entry("throttled", path_prefix="/throttled", rate_limit=5, rate_burst=5),
            keystore_entry("slow", path_prefix="/slow", backend="slow"),
        ],
    )
    counting = HealthCountingKeyManager(data.open_keystore())
    slow = SlowKeyManager(data.open_keystore(), delay=0.0)
    with run_proxy(data, settings, backends={"local": counting, "slow": slow}) as running:
        yield LimitsProxy(running, counting, slow)


@pytest.fixture(scope="module")
def xks(limits: LimitsProxy) -> RunningProxy:
    return limits.running


@pytest.fixture(scope="module")
def client(xks: RunningProxy) -> XksClient:
    return xks.client()


# ---------------------------------------------------------------------------
# Rate limit


def test_rate_limit_burst_then_throttle(xks: RunningProxy) -> None:
    client = xks.client("throttled")
    # Requests that fail authentication take no token. They also open the
    # TLS connection, so the burst below is not slowed by a handshake.
    for _ in range(3):
        assert_xks_error(client.health(signed=False), 401, "AuthenticationFailedException")

    burst = [client.metadata("app-1") for _ in range(6)]

    for response in burst[:5]:
        expect_ok(response)
    # Five tokens at five per second: the sixth request arrives before one
    # more token has accrued, unless the five took longer than 0.2 s.
    assert_xks_error(burst[5], 429, "ThrottlingException", "throttled", "5 requests per second")

    time.sleep(0.25)
    expect_ok(client.metadata("app-1"))
    assert_xks_error(client.metadata("app-1"), 429, "ThrottlingException")


def test_rate_limit_is_per_store(xks: RunningProxy, client: XksClient) -> None:
    throttled = xks.client("throttled")
    statuses = [throttled.health().status_code for _ in range(8)]

    assert 429 in statuses
    for _ in range(10):
        expect_ok(client.health())


# ---------------------------------------------------------------------------
# Backend deadline


def test_backend_within_deadline(limits: LimitsProxy) -> None:
    client = limits.running.client("slow")
    plaintext = secret_bytes(16)
    limits.slow.delay = 0.05
    try:
        encrypted = client.encrypt_ok("app-1", plaintext)
        decrypted = client.decrypted("app-1", encrypted)
    finally:
        limits.slow.delay = 0.0

    assert_same_bytes(decrypted, plaintext)


def test_backend_past_deadline(limits: LimitsProxy, client: XksClient) -> None:
    slow_client = limits.running.client("slow")
    limits.slow.delay = 0.8
    try:
        started = time.monotonic()
        response = slow_client.metadata("app-1")
        timed_out_after = time.monotonic() - started

        # The event loop stays free while the backend thread still sleeps.
        started = time.monotonic()
        other = client.metadata("app-1")
        other_took = time.monotonic() - started
    finally:
        limits.slow.delay = 0.0

    assert_xks_error(response, 503, "DependencyTimeoutException", "200 ms")
    assert 0.2 <= timed_out_after < 0.75
    expect_ok(other)
    # Well below the 0.8 s the backend thread still sleeps; loose for a loaded machine.
    assert other_took < 0.6


def test_deadline_covers_integrity_check(limits: LimitsProxy) -> None:
    # With ciphertextDataIntegrityValueAlgorithm the proxy calls the backend
    # twice (encrypt, then decrypt to check the result). The deadline is per
    # request, so that the response reaches KMS within its 250 ms budget.
    client = limits.running.client("slow")
    limits.slow.delay = 0.18
    try:
        started = time.monotonic()
        response = client.encrypt("app-1", secret_bytes(16), cdiv=True)
        elapsed = time.monotonic() - started
    finally:
        limits.slow.delay = 0.0

    # A deadline per backend call would let both calls finish (0.36 s) and
    # return 200, so the 503 proves that the budget covers the request.
    # The time bound only catches a hang; it stays loose for a loaded machine.
    assert_xks_error(response, 503, "DependencyTimeoutException")
    assert elapsed < 1.0, f"answered after {elapsed:.3f} s"


# ---------------------------------------------------------------------------
# Request body limit


def _padded_encrypt_body(size: int) -> bytes:
    body = json.dumps(encrypt_body(secret_bytes(16))).encode()
    return body + b" " * (size - len(body))


def test_body_at_limit_accepted(client: XksClient) -> None:
    body = _padded_encrypt_body(MAX_BODY_BYTES)

    response = client.send(client.path("encrypt", "app-1"), body)

    expect_ok(response)


def test_body_above_limit(client: XksClient) -> None:
    body = _padded_encrypt_body(MAX_BODY_BYTES + 1)

    response = client.send(client.path("encrypt", "app-1"), body)

    assert_xks_error(
        response, 501, "UnsupportedOperationException", str(MAX_BODY_BYTES + 1),
        str(MAX_BODY_BYTES),
    )


def test_chunked_body_within_limit(client: XksClient) -> None:
    plaintext = secret_bytes(4300)
    body = encrypt_body(plaintext)

    encrypted = expect_ok(client.send(client.path("encrypt", "app-1"), body, chunk_size=1000))

    assert_same_bytes(client.decrypted("app-1", encrypted), plaintext)


def test_chunked_body_above_limit(client: XksClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b" " * 10_000
        yield b" " * 10_001

    response = client.raw(
        "POST",
        client.path("encrypt", "app-1"),
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert_xks_error(response, 501, "UnsupportedOperationException", str(MAX_BODY_BYTES))


def test_largest_plaintext_needs_larger_body_limit(client: XksClient) -> None:
    # 16,384 bytes of plaintext are 21,848 Base64 characters, above this proxy's body limit.
    response = client.encrypt("app-1", secret_bytes(16_384))

    assert_xks_error(response, 501, "UnsupportedOperationException", str(MAX_BODY_BYTES))


# ---------------------------------------------------------------------------
# Health


def test_deep_health_cached(limits: LimitsProxy, client: XksClient) -> None:
    counting = limits.counting
    time.sleep(HEALTH_CACHE_SECONDS + 0.1)
    checks_before = counting.health_calls

    expect_ok(client.health())
    after_first = counting.health_calls
    for _ in range(3):
        expect_ok(client.health())
    after_cached = counting.health_calls
    time.sleep(HEALTH_CACHE_SECONDS + 0.1)
    expect_ok(client.health())
    after_expiry = counting.health_calls

    assert after_first == checks_before + 1
    assert after_cached == after_first
    assert after_expiry == after_first + 1


def test_load_balancer_health(limits: LimitsProxy, client: XksClient) -> None:
    checks_before = limits.counting.health_calls

    get = client.raw("GET", "/healthz")
    head = client.raw("HEAD", "/healthz")

    assert get.status_code == 200
    assert get.json() == {"status": "ok"}
    assert head.status_code == 200
    assert head.content == b""
    # /healthz reports the cached result and never runs a deep check itself.
    assert limits.counting.health_calls == checks_before


# ---------------------------------------------------------------------------
# Audit log


def test_audit_line_fields(xks: RunningProxy, client: XksClient) -> None:
    metadata = request_metadata(
        "GenerateDataKey",
        kmsViaService="ebs",
        awsSourceVpc="vpc-0123456789abcdef0",
        awsSourceVpce="vpce-0a1b2c3d4e5f6a7b8",
    )

    expect_ok(client.encrypt("app-1", secret_bytes(32), metadata=metadata))

    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert set(event) == AUDIT_FIELDS
    assert AUDIT_TIME.fullmatch(event["time"])
    assert event["event"] == "xks"
    assert event["keyStore"] == "default"
    assert event["operation"] == "Encrypt"
    assert event["keyId"] == "app-1"
    assert event["outcome"] == "ok"
    assert event["status"] == 200
    assert isinstance(event["latencyMs"], float)
    assert 0 <= event["latencyMs"] < 5000
    assert event["accessKeyId"] == xks.data.credentials["default"].access_key_id
    assert event["source"] == "127.0.0.1"
    assert event["kmsOperation"] == "GenerateDataKey"
    assert event["principal"] == PRINCIPAL
    assert event["kmsKeyArn"] == metadata["kmsKeyArn"]
    assert event["viaService"] == "ebs"
    assert event["sourceVpc"] == "vpc-0123456789abcdef0"
    assert event["sourceVpce"] == "vpce-0a1b2c3d4e5f6a7b8"


def test_audit_line_of_health(xks: RunningProxy, client: XksClient) -> None:
    metadata = {"kmsRequestId": "health-audit-1", "kmsOperation": "KmsHealthCheck"}

    expect_ok(client.health(metadata=metadata))

    event = xks.audit.for_request("health-audit-1")
    assert event["operation"] == "GetHealthStatus"
    assert event["keyId"] == ""
    assert event["principal"] == ""
    assert event["kmsOperation"] == "KmsHealthCheck"


def test_one_audit_line_per_request(xks: RunningProxy, client: XksClient) -> None:
    before = xks.audit.settled_count()

    responses = [
        client.metadata("app-1"),
        client.health(signed=False),
        client.send("/unknown/kms/xks/v1/health", {"requestMetadata": request_metadata()}),
        client.raw("GET", client.path("encrypt", "app-1")),
        client.send(client.path("encrypt", "app-1"), b"{not json"),
        client.send(client.path("encrypt", "app-1"), _padded_encrypt_body(MAX_BODY_BYTES + 1)),
        client.metadata("no-such-key"),
    ]
    # Neither of these is an XKS request, so neither is audited.
    client.raw("GET", "/healthz")
    client.raw("GET", "/metrics")

    statuses = [response.status_code for response in responses]
    assert statuses == [200, 401, 404, 405, 400, 501, 404]
    xks.audit.wait_for_count(before + len(responses))
    events = xks.audit.events()
    assert xks.audit.settled_count() == before + len(responses)
    new = events[before:]
    assert [event["status"] for event in new] == statuses
    assert {event["event"] for event in new} == {"xks"}
    assert [event["outcome"] for event in new] == [
        "ok",
        "AuthenticationFailedException",
        "InvalidUriPathException",
        "MethodNotAllowed",
        "ValidationException",
        "UnsupportedOperationException",
        "KeyNotFoundException",
    ]
    assert ["message" in event for event in new] == [False] + [True] * 6
    assert new[2]["keyStore"] == "-"
    assert new[2]["operation"] == "-"


def _encoded_forms(value: bytes) -> list[bytes]:
    return [
        value,
        base64.b64encode(value),
        base64.urlsafe_b64encode(value).rstrip(b"="),
        binascii.hexlify(value),
    ]


def test_audit_holds_no_secret_data(xks: RunningProxy, client: XksClient) -> None:
    plaintext = secret_bytes(64)
    aad = secret_bytes(48)
    encrypted = client.encrypt_ok("app-1", plaintext, aad=aad, cdiv=True)
    decrypted = client.decrypted("app-1", encrypted, aad=aad)
    assert_same_bytes(decrypted, plaintext)
    # A request that fails after its body was parsed must not log the body either.
    bad_aad = client.decrypt("app-1", encrypted, aad=secret_bytes(48))
    assert_xks_error(bad_aad, 400, "InvalidCiphertextException")
    values = {
        "plaintext": plaintext,
        "aad": aad,
        "tag": unb64(encrypted["authenticationTag"]),
        "ciphertext": unb64(encrypted["ciphertext"]),
        "integrity value": unb64(encrypted["ciphertextDataIntegrityValue"]),
        "secret access key": xks.data.credentials["default"].credential.secret.reveal_bytes(),
        "passphrase": xks.data.passphrase.reveal_bytes(),
    }
    for value in values.values():
        register_sensitive(value)
    xks.audit.settled_count()

    content = xks.data.audit_file.read_bytes()

    leaked = [
        name
        for name, value in values.items()
        if any(form in content for form in _encoded_forms(value))
    ]
    assert leaked == []


# ---------------------------------------------------------------------------
# Metrics


def _wait_for_metrics(
    client: XksClient, name: str, labels: dict[str, str], minimum: float, timeout: float = 3.0
) -> Metrics:
    """Scrape until sample ``name`` with ``labels`` reaches ``minimum``."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = client.scrape_metrics()
        if (metrics.value(name, **labels) or 0) >= minimum or time.monotonic() > deadline:
            return metrics
        time.sleep(0.02)


def test_metrics_count_requests(client: XksClient) -> None:
    encrypt_ok = {"keystore": "default", "operation": "Encrypt", "outcome": "ok"}
    missing_key = {
        "keystore": "default",
        "operation": "GetKeyMetadata",
        "outcome": "KeyNotFoundException",
    }
    before = client.scrape_metrics()
    encrypts_before = before.value("hyok_xki_requests_total", **encrypt_ok) or 0
    missing_before = before.value("hyok_xki_requests_total", **missing_key) or 0
    durations_before = before.value("hyok_xki_request_duration_seconds_count", **encrypt_ok) or 0

    client.encrypt_ok("app-1", secret_bytes(16))
    client.encrypt_ok("app-1", secret_bytes(16))
    assert_xks_error(client.metadata("no-such-key"), 404, "KeyNotFoundException")
    after = _wait_for_metrics(
        client, "hyok_xki_requests_total", missing_key, missing_before + 1
    )

    assert after.value("hyok_xki_requests_total", **encrypt_ok) == encrypts_before + 2
    assert after.value("hyok_xki_requests_total", **missing_key) == missing_before + 1
    assert (
        after.value("hyok_xki_request_duration_seconds_count", **encrypt_ok)
        == durations_before + 2
    )


def test_metrics_credential_age(xks: RunningProxy, client: XksClient) -> None:
    metrics = client.scrape_metrics()

    ages = {
        (labels["keystore"], labels["access_key_id"]): age
        for labels, age in metrics.labelled("hyok_xki_credential_age_seconds")
    }
    expected = {
        (store, xks.data.credentials[store].access_key_id)
        for store in ("default", "throttled", "slow")
    }
    assert set(ages) == expected
    for age in ages.values():
        assert 0 <= age < 600


def test_metrics_certificate_days(client: XksClient) -> None:
    days = client.scrape_metrics().value("hyok_xki_tls_certificate_days_to_expiry")

    # initialise issues the server certificate for 825 days.
    assert days is not None
    assert 824 < days <= 825


def test_metrics_need_no_signature(client: XksClient) -> None:
    response = client.raw("GET", "/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "hyok_xki_requests_total" in response.text


def test_metrics_only_get(client: XksClient) -> None:
    response = client.raw("POST", "/metrics", content=b"{}")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_metrics_unknown_credential_not_labelled(client: XksClient) -> None:
    # Access key IDs from failed requests must not create metric labels.
    stranger_id = "METRICSPROBE" + "A" * 14
    stranger = Credential(stranger_id, Secret(b64(secret_bytes(32))))
    assert_xks_error(
        client.health(credential=stranger), 401, "AuthenticationFailedException"
    )

    text = client.raw("GET", "/metrics").text

    assert stranger_id not in text


def test_audit_keeps_request_id_of_invalid_body(xks: RunningProxy, client: XksClient) -> None:
    body = encrypt_body(secret_bytes(16))
    body["requestMetadata"] = {**body["requestMetadata"], "kmsRequestId": "audit-invalid-7"}
    body["encryptionAlgorithm"] = "AES_CBC"

    response = client.send(client.path("encrypt", "app-1"), body)

    assert response.status_code == 400
    event = xks.audit.for_request("audit-invalid-7")
    assert event["outcome"] == "ValidationException"
    assert event["kmsOperation"] == body["requestMetadata"]["kmsOperation"]
