"""The KMS audit trail over the wire: every call recorded, none with a parameter value.

One Encrypt is followed from the KMS trail into the XKI proxy's audit log by
its request ID, which the KMS sends to the proxy as ``kmsRequestId``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hyok.cli.main import _register, cli
from hyok.kms.audit import read_events, verify
from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server
from tests.integration._ram import create_access_key, create_user, kms, unique
from tests.integration._sdk import call, client_error

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration


def event_for(stack: KmsStack, request_id: str, timeout: float = 3.0) -> dict[str, Any]:
    """Wait for the trail's event of ``request_id``: the app writes it after the response."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for _, e in read_events(stack.audit_path) if e.get("request_id") == request_id]
        if found:
            assert len(found) == 1
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"no audit event for request {request_id}")
        time.sleep(0.01)


def test_one_encrypt_is_followed_into_the_proxy(kms_stack: KmsStack) -> None:
    created = call(
        kms_stack.sdk(),
        "CreateKey",
        {"DKMSInstanceId": kms_stack.instance_id, "ExternalKeyId": "app-1"},
    )
    key_id = created["KeyMetadata"]["KeyId"]
    plaintext = base64.b64encode(b"audited secret plaintext").decode()
    body = call(kms_stack.sdk(), "Encrypt", {"KeyId": key_id, "Plaintext": plaintext})
    request_id = body["RequestId"]

    event = event_for(kms_stack, request_id)
    assert event["action"] == "Encrypt"
    assert event["outcome"] == "success"
    assert event["code"] == "OK"
    assert event["key_ids"] == [key_id]
    assert event["principal"] == f"acs:ram::{ACCOUNT_ID}:root"
    assert event["access_key_id"] == kms_stack.access_key_id
    assert event["source_ip"] == "127.0.0.1"
    assert event["latency_ms"] > 0

    proxy_line = kms_stack.proxy.audit.for_request(request_id)
    assert proxy_line["kmsRequestId"] == request_id

    text = kms_stack.audit_path.read_text(encoding="ascii")
    assert plaintext not in text
    assert body["CiphertextBlob"] not in text
    assert kms_stack.secret not in text
    assert not verify(kms_stack.audit_path)[2]


def test_denied_and_unauthenticated_calls_are_recorded(kms_stack: KmsStack) -> None:
    name = unique("audited")
    create_user(kms_stack, name)
    client = kms(kms_stack, *create_access_key(kms_stack, name))
    error = client_error(lambda: call(client, "ListKeys"))
    denied = event_for(kms_stack, error.data["RequestId"])
    assert (denied["outcome"], denied["code"]) == ("denied", "Forbidden.NoPermission")
    assert denied["principal"] == f"acs:ram::{ACCOUNT_ID}:user/{name}"

    wrong = kms(kms_stack, kms_stack.access_key_id, "WrongSecretWrongSecretWrong00000")
    error = client_error(lambda: call(wrong, "DescribeRegions"))
    refused = event_for(kms_stack, error.data["RequestId"])
    assert (refused["outcome"], refused["code"]) == ("unauthenticated", "SignatureDoesNotMatch")
    assert refused["principal"] == "-"

    missing = "key-hzz00000000000000000000"
    error = client_error(lambda: call(kms_stack.sdk(), "DescribeKey", {"KeyId": missing}))
    failed = event_for(kms_stack, error.data["RequestId"])
    assert (failed["outcome"], failed["code"]) == ("failed", "Forbidden.KeyNotFound")
    assert failed["key_ids"] == [missing]


def kms_config(stack: KmsStack, tmp_path: Path) -> Path:
    config = tmp_path / "kms.toml"
    config.write_text(
        "\n".join(
            [
                "[server]",
                'host = "127.0.0.1"',
                "port = 1",
                "insecure_plain_http = true",
                "[root_key]",
                'env = "HYOK_UNUSED_ROOT_KEY"',
                "[audit]",
                f"path = {json.dumps(str(stack.audit_path))}",
            ]
        ),
        encoding="utf-8",
    )
    return config


def test_cli_verifies_and_lists_the_trail(kms_stack: KmsStack, tmp_path: Path) -> None:
    request_id = call(kms_stack.sdk(), "DescribeRegions")["RequestId"]
    # The line is written at the end of the event-loop pass after the response.
    event_for(kms_stack, request_id)
    config = kms_config(kms_stack, tmp_path)
    _register()
    runner = CliRunner()
    result = runner.invoke(cli, ["kms", "audit", "verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output

    result = runner.invoke(
        cli,
        [
            "kms",
            "audit",
            "list",
            "--config",
            str(config),
            "--action",
            "DescribeRegions",
            "--output",
            "json",
            "--limit",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    [listed] = json.loads(result.stdout)
    assert listed["action"] == "DescribeRegions"


def test_unknown_action_is_recorded_by_name(kms_stack: KmsStack) -> None:
    error = client_error(lambda: call(kms_stack.sdk(), "NoSuchAction"))
    event = event_for(kms_stack, error.data["RequestId"])
    assert (event["action"], event["outcome"]) == ("NoSuchAction", "failed")
    assert event["principal"] == f"acs:ram::{ACCOUNT_ID}:root"


def test_health_path_is_not_an_api_call(kms_stack: KmsStack) -> None:
    import ssl

    import httpx

    before = kms_stack.audit_path.read_text(encoding="ascii").count("\n")
    context = ssl.create_default_context(cafile=str(kms_stack.ca_file))
    with httpx.Client(verify=context, trust_env=False) as client:
        response = client.get(f"https://127.0.0.1:{kms_stack.port}/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    event_for(kms_stack, call(kms_stack.sdk(), "DescribeRegions")["RequestId"])
    events = [e for _, e in read_events(kms_stack.audit_path)][before:]
    assert [e["action"] for e in events] == ["DescribeRegions"]
