"""Authentication and authorization of the XKS proxy over TLS on loopback.

- SigV4 edge cases, signed by botocore: wrong secret, unknown access key,
  clock skew, body changed after signing, headers left unsigned, wrong region
  or service, no signature.
- Credential rotation while the proxy runs: the credential file is rewritten
  with ``CredentialFile.add`` and ``remove``, and the proxy polls it once a
  second.
- Mutual TLS with the subject guard of ``hyok.xki.tls_guard``.
- Cedar policies of one key store.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential
from hyok.common.tls import (
    CertificateBundle,
    SubjectAllowList,
    client_ssl_context,
    create_ca,
    issue_client_certificate,
)
from hyok.xki.tls_guard import base_protocol_class, mtls_protocol_class
from tests.conftest import register_sensitive
from tests.integration._xks import (
    PRINCIPAL,
    DataDir,
    RunningProxy,
    XksClient,
    assert_same_bytes,
    assert_xks_error,
    b64,
    encrypt_body,
    expect_ok,
    init_data_dir,
    keystore_entry,
    new_credential,
    request_metadata,
    run_proxy,
    secret_bytes,
    xks_data_dir,  # noqa: F401 - a pytest fixture, found by name
)

pytestmark = pytest.mark.integration

INTRUDER = "arn:aws:iam::111122223333:role/intruder"
POLICIES = f"""\
// Only the application role may use the keys.
@id("allow-app-role")
permit (principal == Xks::Principal::"{PRINCIPAL}", action, resource);

// ReEncrypt is not allowed for anyone.
@id("deny-reencrypt")
forbid (principal, action, resource) when {{ context.kmsOperation == "ReEncrypt" }};
"""
# The proxy polls credential files once a second. The rest allows for a slow machine.
RELOAD_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def xks(xks_data_dir: DataDir) -> Iterator[RunningProxy]:  # noqa: F811 - the fixture
    data = xks_data_dir
    (data.root / "policies").mkdir()
    (data.root / "policies" / "guarded.cedar").write_text(POLICIES, encoding="utf-8")
    for store in ("rotating", "streaming", "damaged", "guarded"):
        data.add_store_credentials(store)
    settings = data.write_config(
        keystores=[
            keystore_entry("default"),
            keystore_entry("rotating", path_prefix="/rotating"),
            keystore_entry("streaming", path_prefix="/streaming"),
            keystore_entry("damaged", path_prefix="/damaged"),
            keystore_entry(
                "guarded", path_prefix="/guarded", cedar_policy_file="policies/guarded.cedar"
            ),
        ],
    )
    with run_proxy(data, settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(xks: RunningProxy) -> XksClient:
    return xks.client()


def random_secret() -> str:
    return b64(secret_bytes(32))


def wait_for_status(
    send: Callable[[], httpx.Response], status: int, *, timeout: float = RELOAD_TIMEOUT
) -> float:
    """Repeat a request until its status is ``status`` and return the seconds that took."""
    started = time.monotonic()
    while True:
        response = send()
        if response.status_code == status:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"no {status} within {timeout} s; last status {response.status_code}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# SigV4


def test_signed_request_accepted(xks: RunningProxy, client: XksClient) -> None:
    metadata = request_metadata("DescribeKey")

    expect_ok(client.metadata("app-1", metadata=metadata))

    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert event["accessKeyId"] == xks.data.credentials["default"].access_key_id


def test_wrong_secret(xks: RunningProxy, client: XksClient) -> None:
    access_key_id = xks.data.credentials["default"].access_key_id

    response = client.health(secret=random_secret())

    assert_xks_error(
        response, 401, "AuthenticationFailedException", "signature mismatch", access_key_id
    )


def test_unknown_access_key_id(client: XksClient) -> None:
    stranger = Credential("UNKNOWNACCESSKEY234567ABCD", Secret(random_secret()))

    response = client.health(credential=stranger)

    assert_xks_error(
        response, 401, "AuthenticationFailedException", "'UNKNOWNACCESSKEY234567ABCD'"
    )


@pytest.mark.parametrize(
    ("clock_skew", "status"),
    [(301, 401), (-301, 401), (299, 200), (-299, 200)],
    ids=["301s-ahead", "301s-behind", "299s-ahead", "299s-behind"],
)
def test_clock_skew(client: XksClient, clock_skew: int, status: int) -> None:
    response = client.health(clock_skew=clock_skew)

    if status == 200:
        expect_ok(response)
    else:
        direction = "after" if clock_skew > 0 else "before"
        assert_xks_error(
            response, 401, "AuthenticationFailedException", f"seconds {direction} the server time"
        )


def test_body_changed_after_signing(client: XksClient) -> None:
    signed = encrypt_body(secret_bytes(16))
    sent = dict(signed, plaintext=b64(secret_bytes(16)))

    response = client.send(
        client.path("encrypt", "app-1"),
        signed,
        tampered_body=json.dumps(sent).encode(),
    )

    assert_xks_error(response, 401, "AuthenticationFailedException", "signature mismatch")


def test_header_changed_after_signing(client: XksClient) -> None:
    body = encrypt_body(secret_bytes(16))

    response = client.send(
        client.path("encrypt", "app-1"),
        body,
        content_type="application/json",
        extra_headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert_xks_error(response, 401, "AuthenticationFailedException", "signature mismatch")


def test_path_changed_after_signing(client: XksClient) -> None:
    # A signature for GetKeyMetadata on one key must not work for another key.
    body = {"requestMetadata": request_metadata("DescribeKey")}
    signed = client.send(client.path("metadata", "app-1"), body)
    expect_ok(signed)
    headers = {
        name: value
        for name, value in signed.request.headers.items()
        if name.lower() in {"authorization", "x-amz-date", "content-type"}
    }

    response = client.raw(
        "POST", client.path("metadata", "other-key"), content=signed.request.content,
        headers=headers,
    )

    assert_xks_error(response, 401, "AuthenticationFailedException", "signature mismatch")


@pytest.mark.parametrize("header", ["host", "x-amz-date"])
def test_signed_headers_must_include(client: XksClient, header: str) -> None:
    response = client.health(unsigned_headers=[header])

    assert_xks_error(
        response, 401, "AuthenticationFailedException", "does not include", f"'{header}'"
    )


def test_content_type_may_stay_unsigned(client: XksClient) -> None:
    # The specification requires host and x-amz-date only.
    expect_ok(client.health(unsigned_headers=["content-type"]))


def test_wrong_region(client: XksClient) -> None:
    response = client.health(region="us-east-1")

    assert_xks_error(
        response, 401, "AuthenticationFailedException", "'us-east-1'", "'cn-hangzhou'"
    )


def test_wrong_service(client: XksClient) -> None:
    response = client.health(service="kms")

    assert_xks_error(response, 401, "AuthenticationFailedException", "'kms'", "kms-xks-proxy")


def test_unsigned_request(client: XksClient) -> None:
    response = client.health(signed=False)

    assert_xks_error(
        response, 401, "AuthenticationFailedException", "missing Authorization header"
    )


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        ("Basic dXNlcjpwYXNzd29yZA==", "'Basic'"),
        ("AWS4-HMAC-SHA512 Credential=x", "'AWS4-HMAC-SHA512'"),
        ("AWS4-HMAC-SHA256", "nothing follows"),
        ("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00", "Credential"),
    ],
    ids=["basic", "other-algorithm", "empty", "malformed"],
)
def test_malformed_authorization(client: XksClient, authorization: str, fragment: str) -> None:
    response = client.health(signed=False, extra_headers={"Authorization": authorization})

    assert_xks_error(response, 401, "AuthenticationFailedException", fragment)


def test_unsigned_payload_rejected(client: XksClient) -> None:
    response = client.health(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})

    assert_xks_error(response, 401, "AuthenticationFailedException", "UNSIGNED-PAYLOAD")


def test_payload_hash_header_accepted(client: XksClient) -> None:
    body = {"requestMetadata": request_metadata("DescribeKey")}
    digest = hashlib.sha256(json.dumps(body).encode()).hexdigest()

    response = client.send(
        client.path("metadata", "app-1"), body, headers={"X-Amz-Content-SHA256": digest}
    )

    expect_ok(response)


def test_rejected_request_is_audited(xks: RunningProxy, client: XksClient) -> None:
    access_key_id = "AUDITPROBE" + os.urandom(8).hex().upper()[:16]
    stranger = Credential(access_key_id, Secret(random_secret()))

    response = client.health(credential=stranger)

    message = assert_xks_error(response, 401, "AuthenticationFailedException")
    event = xks.audit.wait_for(lambda event: access_key_id in event.get("message", ""))
    assert event["message"] == message
    assert event["status"] == 401
    assert event["outcome"] == "AuthenticationFailedException"
    assert event["operation"] == "GetHealthStatus"
    assert event["accessKeyId"] == ""


# ---------------------------------------------------------------------------
# Credential rotation


def test_credential_rotation_without_restart(xks: RunningProxy) -> None:
    client = xks.client("rotating")
    credential_file = xks.data.credential_file("rotating")
    original = xks.data.credentials["rotating"].credential
    added = new_credential()

    credential_file.add(added)
    seconds_to_accept = wait_for_status(lambda: client.health(credential=added.credential), 200)
    still_original = client.health(credential=original)
    credential_file.remove(original.access_key_id)
    seconds_to_reject = wait_for_status(lambda: client.health(credential=original), 401)
    after_removal = client.health(credential=added.credential)

    expect_ok(still_original)
    expect_ok(after_removal)
    assert seconds_to_accept < 2.5
    assert seconds_to_reject < 2.5
    response = client.health(credential=original)
    assert_xks_error(response, 401, "AuthenticationFailedException", original.access_key_id)


def test_requests_in_flight_during_reload(xks: RunningProxy) -> None:
    """A steady stream of requests keeps succeeding while credentials are added and removed."""
    credential_file = xks.data.credential_file("streaming")
    watcher = xks.client("streaming")
    workers = [xks.client("streaming") for _ in range(4)]
    stop = threading.Event()
    statuses: list[int] = []
    lock = threading.Lock()

    def stream(worker: XksClient) -> None:
        while not stop.is_set():
            plaintext = secret_bytes(32)
            encrypted = worker.encrypt("app-1", plaintext)
            decrypted = worker.decrypt("app-1", encrypted.json()) if encrypted.is_success else None
            with lock:
                statuses.append(encrypted.status_code)
                if decrypted is not None:
                    statuses.append(decrypted.status_code)
                    if decrypted.is_success:
                        assert_same_bytes(
                            base64.b64decode(decrypted.json()["plaintext"]),
                            plaintext,
                        )

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        futures = [pool.submit(stream, worker) for worker in workers]
        try:
            # Two reloads: one adds a credential, one removes it.
            extra = new_credential()
            probe = functools.partial(watcher.health, credential=extra.credential)
            credential_file.add(extra)
            wait_for_status(probe, 200)
            credential_file.remove(extra.access_key_id)
            wait_for_status(probe, 401)
        finally:
            stop.set()
        for future in futures:
            future.result()

    assert len(statuses) >= 20
    assert set(statuses) == {200}


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_damaged_credential_file_keeps_credentials(
    xks: RunningProxy, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    client = xks.client("damaged")
    path = xks.data.credential_file("damaged").path
    sealed = path.read_bytes()
    caplog.set_level(logging.ERROR, logger="hyok.xki")

    if damage == "garbage":
        path.write_bytes(b"not a sealed credential file")
    else:
        path.unlink()
    try:
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
        during = client.health()
    finally:
        path.write_bytes(sealed)

    # The proxy logs the failure and keeps the credentials it had.
    expect_ok(during)
    messages = [record.getMessage() for record in caplog.records]
    assert any("damaged" in message and "keeping" in message for message in messages)
    expect_ok(client.health())


# ---------------------------------------------------------------------------
# Mutual TLS


ALLOWED_SUBJECT = "CN=kms.hyok.test,O=hyok"
INTRUDER_SUBJECT = "CN=intruder.hyok.test,O=hyok"


class RejectRecorder:
    """An on_reject callback for the subject guard that records the rejected subjects."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self._event = threading.Event()

    def __call__(self, subject: str) -> None:
        self.subjects.append(subject)
        self._event.set()

    def wait(self, timeout: float = 5.0) -> list[str]:
        self._event.wait(timeout)
        return self.subjects


@dataclass
class MutualTls:
    proxy: RunningProxy
    recorder: RejectRecorder
    certificates: Path

    def context(
        self, name: str | None, *, version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client context that presents certificate ``name``, or none, and trusts the proxy."""
        if name is None:
            context = client_ssl_context(self.proxy.data.ca_file)
        else:
            context = client_ssl_context(
                self.proxy.data.ca_file,
                cert_file=self.certificates / f"{name}.pem",
                key_file=self.certificates / f"{name}-key.pem",
            )
        if version is not None:
            context.minimum_version = version
            context.maximum_version = version
        return context


def _write_pair(bundle: CertificateBundle, directory: Path, name: str) -> None:
    register_sensitive(b"".join(bundle.key_pem.splitlines()[1:-1]))
    bundle.write(directory / f"{name}.pem", directory / f"{name}-key.pem")


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MutualTls]:
    data = init_data_dir(tmp_path_factory.mktemp("xki-mtls"))
    certificates = data.root / "tls"
    client_ca = create_ca("hyok test client CA", days=30)
    _write_pair(client_ca, certificates, "client-ca")
    other_ca = create_ca("other client CA", days=30)
    _write_pair(issue_client_certificate(client_ca, subject=ALLOWED_SUBJECT, days=7),
                certificates, "allowed")
    _write_pair(issue_client_certificate(client_ca, subject=INTRUDER_SUBJECT, days=7),
                certificates, "intruder")
    _write_pair(issue_client_certificate(other_ca, subject=ALLOWED_SUBJECT, days=7),
                certificates, "foreign")
    settings = data.write_config(
        server={"client_ca_file": "tls/client-ca.pem", "client_subjects": [ALLOWED_SUBJECT]},
        keystores=[keystore_entry("default")],
    )
    # The same protocol class that `hyok xki serve` builds for mutual TLS.
    recorder = RejectRecorder()
    protocol = mtls_protocol_class(
        base_protocol_class("httptools"),
        SubjectAllowList(settings.server.client_subjects),
        recorder,
    )
    with run_proxy(data, settings, http=protocol) as running:
        yield MutualTls(running, recorder, certificates)


def test_mtls_allowed_subject(mtls: MutualTls) -> None:
    client = mtls.proxy.client(ssl_context=mtls.context("allowed"))
    plaintext = secret_bytes(32)

    expect_ok(client.health())
    encrypted = client.encrypt_ok("app-1", plaintext)

    assert_same_bytes(client.decrypted("app-1", encrypted), plaintext)
    assert mtls.recorder.subjects == []


def test_mtls_still_needs_signature(mtls: MutualTls) -> None:
    client = mtls.proxy.client(ssl_context=mtls.context("allowed"))

    response = client.health(signed=False)

    assert_xks_error(response, 401, "AuthenticationFailedException")


def test_mtls_other_subject_closed(mtls: MutualTls) -> None:
    client = mtls.proxy.client(ssl_context=mtls.context("intruder"))
    lines_before = mtls.proxy.audit.settled_count()

    with pytest.raises(httpx.TransportError):
        client.health()

    assert INTRUDER_SUBJECT in mtls.recorder.wait()
    # The connection was closed before a request was read, so nothing was audited.
    assert mtls.proxy.audit.settled_count() == lines_before


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
@pytest.mark.parametrize("certificate", ["foreign", None], ids=["other-ca", "no-certificate"])
def test_mtls_handshake_fails(
    mtls: MutualTls, certificate: str | None, version: ssl.TLSVersion
) -> None:
    client = mtls.proxy.client(ssl_context=mtls.context(certificate, version=version))
    rejected_before = len(mtls.recorder.subjects)
    lines_before = mtls.proxy.audit.settled_count()

    # With TLS 1.2 the handshake itself fails. With TLS 1.3 the client's side
    # completes first and the server's alert or close arrives on the first read.
    expected = httpx.ConnectError if version is ssl.TLSVersion.TLSv1_2 else httpx.TransportError
    with pytest.raises(expected):
        client.health()

    # OpenSSL rejected the certificate, so the subject guard never ran.
    assert len(mtls.recorder.subjects) == rejected_before
    assert mtls.proxy.audit.settled_count() == lines_before


# ---------------------------------------------------------------------------
# Cedar


@pytest.mark.parametrize("operation", ["metadata", "encrypt", "decrypt"])
def test_cedar_permits_principal(xks: RunningProxy, operation: str) -> None:
    client = xks.client("guarded")
    plaintext = secret_bytes(24)

    if operation == "metadata":
        expect_ok(client.metadata("app-1"))
    elif operation == "encrypt":
        client.encrypt_ok("app-1", plaintext)
    else:
        encrypted = client.encrypt_ok("app-1", plaintext)
        assert_same_bytes(client.decrypted("app-1", encrypted), plaintext)


def test_cedar_denies_other_principal(xks: RunningProxy) -> None:
    client = xks.client("guarded")
    metadata = request_metadata("Encrypt", awsPrincipalArn=INTRUDER)

    response = client.encrypt("app-1", secret_bytes(16), metadata=metadata)

    assert_xks_error(response, 403, "AccessDeniedException", INTRUDER, "Encrypt", "app-1")
    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert event["status"] == 403
    assert event["outcome"] == "AccessDeniedException"
    assert event["policy"] == "no permit policy matched"
    assert event["principal"] == INTRUDER


@pytest.mark.parametrize("operation", ["metadata", "decrypt"])
def test_cedar_forbid_names_policy(xks: RunningProxy, operation: str) -> None:
    client = xks.client("guarded")
    encrypted = client.encrypt_ok("app-1", secret_bytes(24))
    metadata = request_metadata("ReEncrypt")

    if operation == "metadata":
        response = client.metadata("app-1", metadata=metadata)
    else:
        response = client.decrypt("app-1", encrypted, metadata=metadata)

    assert_xks_error(response, 403, "AccessDeniedException", PRINCIPAL)
    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert event["status"] == 403
    assert event["kmsOperation"] == "ReEncrypt"
    assert "deny-reencrypt" in event["policy"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"kmsRequestId": "health-1", "kmsOperation": "KmsHealthCheck"},
        {"kmsRequestId": "health-2", "kmsOperation": "ReEncrypt", "awsPrincipalArn": INTRUDER},
    ],
    ids=["kms-health-check", "forbidden-operation-and-principal"],
)
def test_cedar_never_applies_to_health(xks: RunningProxy, metadata: dict[str, str]) -> None:
    response = xks.client("guarded").health(metadata=metadata)

    expect_ok(response)
    event = xks.audit.for_request(metadata["kmsRequestId"])
    assert "policy" not in event


def test_cedar_only_on_its_store(client: XksClient) -> None:
    # The default store has no policy file, so any principal may use it.
    metadata = request_metadata("ReEncrypt", awsPrincipalArn=INTRUDER)

    expect_ok(client.encrypt("app-1", secret_bytes(16), metadata=metadata))
