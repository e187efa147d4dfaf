"""Capture requests that the official Alibaba Cloud SDKs send, on a loopback HTTP server.

The tests and ``make_vectors.py`` share this module. :class:`CaptureServer`
listens on 127.0.0.1 only, records each request as an ASGI server would
deliver it, and responds with a small JSON body that the SDKs accept. The SDK
clients built here always point at that server.

Each :class:`Case` is one KMS call, with the wire parameters it must produce
according to the SDK's request model. The cases cover every request shape of
the KMS OpenAPI: plain, large, JSON-valued, boolean and integer parameters,
repeat lists, a form body, STS credentials, non-ASCII values and the
characters that percent-encoding treats specially.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ACCESS_KEY_ID = "LTAI5tHyokTest0000000001"
# An invented secret, with '/', '+' and '=' to exercise UTF-8 key handling.
SECRET = "hyokAcsTestSecret/+=Q2mT7wXzR4pL8vN1sB6"
SECURITY_TOKEN = "CAIS8gF1q6Ft5B2yfSjIr5bhLcz/2qFX0qWpY0Xh1mQfTt0=+hyokTestToken"
REGION = "cn-hangzhou"
VERSION = "2016-01-20"
RESPONSE = b'{"RequestId":"4112f4d6-db54-4af4-ae30-c55a22a8dfae","KeyId":"key-hyok"}'

# Values with the characters that form encoding and RFC 3986 treat differently.
SPECIALS = "a+b/c~d*e f&g=h%i?j#k"
DESCRIPTION = f"生产环境 主密钥: {SPECIALS}"
PLAINTEXT_6KB = base64.b64encode(hashlib.shake_256(b"hyok plaintext").digest(6144)).decode()
CONTEXT = {"purpose": "备份 backup", "path": SPECIALS}
KEY_ID = "key-hzz62f1cb66fa42qo0001"
KEY_ARN = f"acs:kms:{REGION}:123456789012:key/{KEY_ID}"
TAGS_JSON = '[{"TagKey":"env","TagValue":"生产"},{"TagKey":"team","TagValue":"a b+c"}]'
RECIPIENT = json.dumps(
    {
        "AttestationDocument": base64.b64encode(b"attestation document " * 8).decode(),
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
    },
    separators=(",", ":"),
)
CIPHERTEXT = base64.b64encode(hashlib.shake_256(b"hyok ciphertext").digest(96)).decode()


def _policy(size: int) -> str:
    """Return a key policy document of about ``size`` characters, as a JSON string."""
    statements: list[dict[str, Any]] = []
    index = 0
    while len(json.dumps({"Version": "1", "Statement": statements})) < size:
        index += 1
        statements.append(
            {
                "Sid": f"Allow use by role {index}",
                "Effect": "Allow",
                "Principal": {"RAM": [f"acs:ram::123456789012:role/app-{index:04d}"]},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": ["*"],
            }
        )
    return json.dumps({"Version": "1", "Statement": statements})


POLICY_30KB = _policy(30_000)


@dataclass(frozen=True)
class Case:
    """One KMS call and the wire parameters that the SDK must send for it.

    ``build`` takes the ``alibabacloud_kms20160120.models`` module and returns
    the request model for the current SDK. ``parameters`` are the expected
    wire names and values, including the form-body parameter ``Recipient``.
    """

    name: str
    action: str
    build: Callable[[Any], Any]
    parameters: dict[str, str]
    security_token: str | None = None
    user_agent: str | None = None
    legacy: bool = True
    legacy_method: str = "GET"
    body_parameters: frozenset[str] = field(default_factory=frozenset)


def _tag_resources(models: Any) -> Any:
    tag = models.TagResourcesRequestTag
    return models.TagResourcesRequest(
        region_id=REGION,
        resource_type="key",
        resource_id=[f"key-hzz{index:02d}" for index in range(1, 12)],
        tag=[tag(key="env", value="prod"), tag(key="团队", value="a b+c/d")],
    )


CASES: tuple[Case, ...] = (
    Case(
        "describe-key",
        "DescribeKey",
        lambda m: m.DescribeKeyRequest(key_id=KEY_ID),
        {"KeyId": KEY_ID},
    ),
    Case(
        "describe-key-latin1-user-agent",
        "DescribeKey",
        lambda m: m.DescribeKeyRequest(key_id=KEY_ID),
        {"KeyId": KEY_ID},
        user_agent="hyök-tëst",
        legacy=False,
    ),
    Case(
        "encrypt-6kb-encryption-context",
        "Encrypt",
        lambda m: m.EncryptRequest(
            key_id="alias/hyok-test", plaintext=PLAINTEXT_6KB, encryption_context=CONTEXT
        ),
        {
            "KeyId": "alias/hyok-test",
            "Plaintext": PLAINTEXT_6KB,
            "EncryptionContext": json.dumps(CONTEXT, separators=(",", ":"), ensure_ascii=False),
        },
    ),
    Case(
        "encrypt-sts",
        "Encrypt",
        lambda m: m.EncryptRequest(key_id=KEY_ID, plaintext="SGVsbG8gV29ybGQh"),
        {"KeyId": KEY_ID, "Plaintext": "SGVsbG8gV29ybGQh"},
        security_token=SECURITY_TOKEN,
    ),
    Case(
        "create-key-true-and-json-tags",
        "CreateKey",
        lambda m: m.CreateKeyRequest(
            description=DESCRIPTION,
            enable_automatic_rotation=True,
            rotation_interval="31536000s",
            key_spec="Aliyun_AES_256",
            tags=TAGS_JSON,
        ),
        {
            "Description": DESCRIPTION,
            "EnableAutomaticRotation": "True",
            "RotationInterval": "31536000s",
            "KeySpec": "Aliyun_AES_256",
            "Tags": TAGS_JSON,
        },
        legacy_method="POST",
    ),
    Case(
        "set-deletion-protection-false",
        "SetDeletionProtection",
        lambda m: m.SetDeletionProtectionRequest(
            enable_deletion_protection=False, protected_resource_arn=KEY_ARN
        ),
        {"EnableDeletionProtection": "False", "ProtectedResourceArn": KEY_ARN},
    ),
    Case(
        "tag-resources-repeat-lists",
        "TagResources",
        _tag_resources,
        {
            "RegionId": REGION,
            "ResourceType": "key",
            **{f"ResourceId.{index}": f"key-hzz{index:02d}" for index in range(1, 12)},
            "Tag.1.Key": "env",
            "Tag.1.Value": "prod",
            "Tag.2.Key": "团队",
            "Tag.2.Value": "a b+c/d",
        },
        legacy_method="POST",
    ),
    Case(
        "set-key-policy-30kb",
        "SetKeyPolicy",
        lambda m: m.SetKeyPolicyRequest(key_id=KEY_ID, policy_name="default", policy=POLICY_30KB),
        {"KeyId": KEY_ID, "PolicyName": "default", "Policy": POLICY_30KB},
    ),
    Case(
        "update-key-description-specials",
        "UpdateKeyDescription",
        lambda m: m.UpdateKeyDescriptionRequest(key_id=KEY_ID, description=DESCRIPTION),
        {"KeyId": KEY_ID, "Description": DESCRIPTION},
    ),
    Case(
        "decrypt-recipient-form-body",
        "Decrypt",
        lambda m: m.DecryptRequest(
            ciphertext_blob=CIPHERTEXT, encryption_context=CONTEXT, recipient=RECIPIENT
        ),
        {
            "CiphertextBlob": CIPHERTEXT,
            "EncryptionContext": json.dumps(CONTEXT, separators=(",", ":"), ensure_ascii=False),
            "Recipient": RECIPIENT,
        },
        legacy=False,
        body_parameters=frozenset({"Recipient"}),
    ),
    Case(
        "generate-data-key-int-and-recipient",
        "GenerateDataKey",
        lambda m: m.GenerateDataKeyRequest(key_id=KEY_ID, number_of_bytes=32, recipient=RECIPIENT),
        {"KeyId": KEY_ID, "NumberOfBytes": "32", "Recipient": RECIPIENT},
        security_token=SECURITY_TOKEN,
        legacy=False,
        body_parameters=frozenset({"Recipient"}),
    ),
)


@dataclass(frozen=True)
class Captured:
    """A request as an ASGI server delivers it: raw path, raw query, lower-case header names."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RecordingServer

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        # http.server decodes header lines as ISO-8859-1, so this restores the raw bytes.
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers.raw_items()
        ]
        self.server.requests.append(
            Captured(self.command, path, query.encode("latin-1"), headers, body)
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(RESPONSE)))
        self.end_headers()
        self.wfile.write(RESPONSE)

    do_GET = do_POST = _record

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries parameter values: keep it out of test logs.
        pass


class _RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Captured] = []


class CaptureServer:
    """A loopback HTTP server that records requests; ``endpoint`` is its ``host:port``."""

    def __init__(self, server: _RecordingServer) -> None:
        self._server = server
        host, port = server.server_address[:2]
        self.endpoint = f"{host!s}:{port}"

    def last(self) -> Captured:
        return self._server.requests[-1]

    def count(self) -> int:
        return len(self._server.requests)


@contextmanager
def capture_server() -> Iterator[CaptureServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, name="acs-capture", daemon=True)
    thread.start()
    try:
        yield CaptureServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _snake_case(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


def call_current_sdk(
    server: CaptureServer, case: Case, *, signature_algorithm: str | None = None
) -> Captured:
    """Call ``case`` with ``alibabacloud-kms20160120`` against ``server`` and return the request.

    ``signature_algorithm="v2"`` selects the V1 (HMAC-SHA1) signature, and
    None the default ACS3-HMAC-SHA256.
    """
    from alibabacloud_kms20160120 import models
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_tea_openapi.models import Config

    config = Config(
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=SECRET,
        security_token=case.security_token,
        endpoint=server.endpoint,
        protocol="http",
        region_id=REGION,
        signature_algorithm=signature_algorithm,
        user_agent=case.user_agent,
    )
    before = server.count()
    getattr(Client(config), _snake_case(case.action))(case.build(models))
    assert server.count() == before + 1, "the SDK sent no request or retried"
    return server.last()


def call_legacy_sdk(server: CaptureServer, case: Case, *, method: str | None = None) -> Captured:
    """Call ``case`` with ``aliyun-python-sdk-core`` against ``server`` and return the request.

    The legacy KMS request classes add each parameter with
    ``add_query_param``, as this function does with the expected parameters,
    and the core SDK signs them with V1 (HMAC-SHA1).
    """
    import importlib

    from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
    from aliyunsdkcore.client import AcsClient

    module = importlib.import_module(f"aliyunsdkkms.request.v20160120.{case.action}Request")
    request = getattr(module, f"{case.action}Request")()
    for name, value in case.parameters.items():
        request.add_query_param(name, value)
    request.set_method(method or case.legacy_method)
    request.set_protocol_type("http")
    # An explicit endpoint bypasses the SDK's endpoint resolution entirely.
    request.set_endpoint(server.endpoint)
    credential: Any
    if case.security_token is None:
        credential = AccessKeyCredential(ACCESS_KEY_ID, SECRET)
    else:
        credential = StsTokenCredential(ACCESS_KEY_ID, SECRET, case.security_token)
    client = AcsClient(credential=credential, region_id=REGION, auto_retry=False)
    before = server.count()
    try:
        client.do_action_with_exception(request)
    finally:
        # The client closes its connection pool only when garbage-collected.
        client.session.close()
    assert server.count() == before + 1, "the SDK sent no request or retried"
    return server.last()
