"""hyok.kms.domain: the records' field checks, the listing types, ID generators and ARNs."""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyok.common.errors import ValidationError
from hyok.common.secrets import Secret
from hyok.kms import ciphertext, domain
from hyok.kms.domain import (
    MAX_DESCRIPTION_LENGTH,
    MAX_PAGE_SIZE,
    MAX_POLICY_BYTES,
    AccessKey,
    AccessKeyStatus,
    Account,
    Connectivity,
    Instance,
    InstanceErrorReason,
    InstanceStatus,
    Key,
    KeyArn,
    KeyFilter,
    KeyOrigin,
    KeySpec,
    KeyState,
    KeyUsage,
    KeyVersion,
    Page,
    PageRequest,
    ProtectionLevel,
    instance_arn,
    key_arn,
    new_access_key_id,
    new_access_key_secret,
    new_account_id,
    new_instance_id,
    new_key_id,
    new_key_version_id,
    parse_key_arn,
)
from hyok.kms.xki_client import Connectivity as ClientConnectivity

NOW = datetime(2026, 5, 20, 6, 34, 21, 123456, tzinfo=UTC)
ACCOUNT_ID = "1234567890123456"
PROXY_SECRET = "c2VjcmV0LXByb3h5LWtleS0xMjM0NTY3ODkwYWJjZGVm"  # 44 Base64 characters
ACCESS_KEY_SECRET = "AkSecretValue0123456789abcdef"


def seeded(seed: int) -> Callable[[int], bytes]:
    generator = random.Random(seed)
    return generator.randbytes


def make_account(**changes: Any) -> Account:
    fields: dict[str, Any] = {"account_id": ACCOUNT_ID, "created_at": NOW}
    fields.update(changes)
    return Account(**fields)


def make_access_key(**changes: Any) -> AccessKey:
    fields: dict[str, Any] = {
        "access_key_id": "LTAI5tExampleAccessKey01",
        "account_id": ACCOUNT_ID,
        "secret": Secret(ACCESS_KEY_SECRET),
        "created_at": NOW,
    }
    fields.update(changes)
    return AccessKey(**fields)


def make_instance(**changes: Any) -> Instance:
    fields: dict[str, Any] = {
        "instance_id": "kst-bjj62d8f5e0sgtx8h1234",
        "account_id": ACCOUNT_ID,
        "region": "cn-hangzhou",
        "name": "payments HSM",
        "connectivity": "public",
        "proxy_endpoint": "https://xks.example.com",
        "proxy_uri_path": "/tenant-1/kms/xks/v1",
        "proxy_access_key_id": "MUBSXM6K3KMXHN6RRCXI7TWQH4",
        "proxy_secret": Secret(PROXY_SECRET),
        "created_at": NOW,
    }
    fields.update(changes)
    return Instance(**fields)


def make_key(**changes: Any) -> Key:
    fields: dict[str, Any] = {
        "key_id": "key-hzz62f1cb66fa42qo1234",
        "account_id": ACCOUNT_ID,
        "region": "cn-hangzhou",
        "instance_id": "kst-bjj62d8f5e0sgtx8h1234",
        "external_key_id": "app-key-1",
        "origin": "EXTERNAL",
        "protection_level": "HSM",
        "creator": ACCOUNT_ID,
        "created_at": NOW,
        "primary_key_version_id": "5c1e3a0e-9a53-4d8f-8c0e-6d2a9b1f7e21",
        "policy": '{"Version": "1", "Statement": []}',
    }
    fields.update(changes)
    return Key(**fields)


# --- Enumerations -----------------------------------------------------------------


def test_enum_wire_values() -> None:
    assert [str(value) for value in KeyState] == ["Enabled", "Disabled", "PendingDeletion"]
    assert [str(value) for value in InstanceStatus] == [
        "Uninitialized",
        "Connecting",
        "Connected",
        "Disconnected",
        "Error",
    ]
    assert str(KeySpec.ALIYUN_AES_256) == "Aliyun_AES_256"
    assert str(KeyUsage.ENCRYPT_DECRYPT) == "ENCRYPT/DECRYPT"
    assert [str(value) for value in KeyOrigin] == ["Aliyun_KMS", "EXTERNAL"]
    assert [str(value) for value in ProtectionLevel] == ["SOFTWARE", "HSM"]
    assert [str(value) for value in AccessKeyStatus] == ["Active", "Inactive"]


def test_connectivity_matches_proxy_client() -> None:
    assert {str(value) for value in Connectivity} == {str(value) for value in ClientConnectivity}
    for value in Connectivity:
        assert ClientConnectivity(str(value)).value == value.value


# --- Account and AccessKey -----------------------------------------------------------


def test_account_valid() -> None:
    account = make_account(created_at=NOW.astimezone(timezone(timedelta(hours=8))))
    assert account.account_id == ACCOUNT_ID
    assert account.created_at.tzinfo is UTC
    assert account.created_at == NOW


@pytest.mark.parametrize("account_id", ["12345678901", "12345678901234567", "12345678901a", ""])
def test_account_id_invalid(account_id: str) -> None:
    with pytest.raises(ValidationError, match="account_id"):
        make_account(account_id=account_id)


def test_account_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_account(created_at=datetime(2026, 1, 1))


def test_account_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="account_id must be a str"):
        make_account(account_id=1234567890123)
    with pytest.raises(TypeError, match="created_at must be a datetime"):
        make_account(created_at="2026-01-01T00:00:00Z")


def test_access_key_defaults_and_coercion() -> None:
    key = make_access_key(status="Inactive")
    assert key.status is AccessKeyStatus.INACTIVE
    assert make_access_key().status is AccessKeyStatus.ACTIVE


def test_access_key_repr_hides_secret(sensitive: Callable[[str], None]) -> None:
    sensitive(ACCESS_KEY_SECRET)
    key = make_access_key()
    assert ACCESS_KEY_SECRET not in repr(key)
    assert ACCESS_KEY_SECRET not in str(key)
    assert key.secret.reveal() == ACCESS_KEY_SECRET


def test_access_key_secret_rule_hides_value() -> None:
    with pytest.raises(ValidationError) as caught:
        make_access_key(secret=Secret("short secret"))
    assert "short secret" not in caught.value.message
    assert "12 characters" in caught.value.message
    with pytest.raises(TypeError, match="Secret"):
        make_access_key(secret=ACCESS_KEY_SECRET)


@pytest.mark.parametrize("access_key_id", ["LTAI-has-dash-0000", "short", "x" * 129])
def test_access_key_id_invalid(access_key_id: str) -> None:
    with pytest.raises(ValidationError, match="access_key_id"):
        make_access_key(access_key_id=access_key_id)


def test_access_key_status_invalid() -> None:
    with pytest.raises(ValidationError, match="use one of Active, Inactive"):
        make_access_key(status="Deleted")


def test_access_key_is_unhashable_through_secret() -> None:
    # Equal records compare by value; hashing would need the secret's hash.
    assert make_access_key() == make_access_key()
    assert make_access_key() != make_access_key(secret=Secret(ACCESS_KEY_SECRET + "x"))


# --- Instance ---------------------------------------------------------------------


def test_instance_public_valid() -> None:
    instance = make_instance()
    assert instance.connectivity is Connectivity.PUBLIC
    assert instance.status is InstanceStatus.UNINITIALIZED
    assert instance.error_reason is None
    assert instance.arn == "acs:kms:cn-hangzhou:1234567890123456:keystore/kst-bjj62d8f5e0sgtx8h1234"


def test_instance_vpc_needs_endpoint_service() -> None:
    instance = make_instance(
        connectivity="vpc", vpc_endpoint_service="com.example.privatelink.cn-hangzhou.epsrv-1"
    )
    assert instance.connectivity is Connectivity.VPC
    with pytest.raises(ValidationError, match="vpc_endpoint_service is missing"):
        make_instance(connectivity="vpc")
    with pytest.raises(ValidationError, match="connectivity is 'public'"):
        make_instance(vpc_endpoint_service="epsrv-1")


def test_instance_repr_hides_proxy_secret(sensitive: Callable[[str], None]) -> None:
    sensitive(PROXY_SECRET)
    assert PROXY_SECRET not in repr(make_instance())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instance_id", "kst-UPPER"),
        ("instance_id", "key-abc"),
        ("instance_id", "kst-"),
        ("instance_id", "kst-" + "a" * 61),
        ("region", "CN-Hangzhou"),
        ("region", "cn_hangzhou"),
        ("region", "-cn"),
        ("name", ""),
        ("name", "n" * 129),
        ("name", "bad\x00name"),
        ("connectivity", "internet"),
        ("proxy_endpoint", "http://xks.example.com"),
        ("proxy_endpoint", "https://xks example.com"),
        ("proxy_uri_path", "/kms/xks/v2"),
        ("proxy_uri_path", "kms/xks/v1"),
        ("proxy_uri_path", "/" + "a" * 117 + "/kms/xks/v1"),
        ("proxy_access_key_id", "lowercase-key-id-0000"),
        ("proxy_access_key_id", "ABCDEFGHIJKLMNOPQRS"),
        ("tls_fingerprint", "AB" * 32),
        ("tls_fingerprint", "ab:" * 31 + "ab"),
        ("status", "Online"),
        ("error_detail", "detail without a reason"),
    ],
)
def test_instance_field_invalid(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        make_instance(**{field: value})
    assert field in caught.value.message


def test_instance_uri_path_limits() -> None:
    longest = "/" + "a" * 116 + "/kms/xks/v1"
    assert len(longest) == 128
    assert make_instance(proxy_uri_path=longest).proxy_uri_path == longest
    assert make_instance(proxy_uri_path="/kms/xks/v1").proxy_uri_path == "/kms/xks/v1"


def test_instance_proxy_secret_rule_hides_value() -> None:
    with pytest.raises(ValidationError) as caught:
        make_instance(proxy_secret=Secret("too-short-proxy-secret"))
    assert "too-short-proxy-secret" not in caught.value.message
    assert "proxy secret" in caught.value.message


def test_instance_error_reason_rules() -> None:
    failed = make_instance(status="Error", error_reason="TlsFailure", error_detail="expired")
    assert failed.error_reason is InstanceErrorReason.TLS_FAILURE
    unreachable = make_instance(status="Disconnected", error_reason="ProxyUnreachable")
    assert unreachable.error_reason is InstanceErrorReason.PROXY_UNREACHABLE
    assert make_instance(status="Disconnected").error_reason is None
    with pytest.raises(ValidationError, match="status 'Error' needs a reason"):
        make_instance(status="Error")
    with pytest.raises(ValidationError, match="only 'Error' and 'Disconnected'"):
        make_instance(status="Connected", error_reason="TimedOut")
    with pytest.raises(ValidationError, match="error_reason"):
        make_instance(status="Error", error_reason="Unknown")


def make_unconfigured_instance(**changes: Any) -> Instance:
    fields: dict[str, Any] = {
        "instance_id": "kst-bjj62d8f5e0sgtx8h5678",
        "account_id": ACCOUNT_ID,
        "region": "cn-hangzhou",
        "name": "not yet bound",
        "created_at": NOW,
    }
    fields.update(changes)
    return Instance(**fields)


def test_instance_without_proxy_configuration() -> None:
    instance = make_unconfigured_instance()
    assert not instance.configured
    assert instance.connectivity is Connectivity.PUBLIC
    assert instance.status is InstanceStatus.UNINITIALIZED
    for name in ("proxy_endpoint", "proxy_uri_path", "proxy_access_key_id", "proxy_secret"):
        assert getattr(instance, name) is None
    assert make_instance().configured
    disconnected = make_unconfigured_instance(status="Disconnected")
    assert disconnected.status is InstanceStatus.DISCONNECTED


@pytest.mark.parametrize(
    "missing",
    [
        ("proxy_endpoint",),
        ("proxy_secret",),
        ("proxy_uri_path", "proxy_access_key_id"),
    ],
)
def test_instance_partial_proxy_configuration(missing: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        make_instance(**dict.fromkeys(missing))
    message = caught.value.message
    assert message.startswith(", ".join(missing) + " missing")
    assert "set all four or none" in message
    assert PROXY_SECRET not in message


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"vpc_endpoint_service": "epsrv-1"}, "vpc_endpoint_service 'epsrv-1' is set"),
        ({"tls_fingerprint": "ab" * 32}, "tls_fingerprint"),
        ({"connectivity": "vpc"}, "connectivity 'vpc' needs a proxy configuration"),
        ({"status": "Connected"}, "status 'Connected' needs a proxy configuration"),
        ({"status": "Connecting"}, "status 'Connecting' needs a proxy configuration"),
        (
            {"status": "Error", "error_reason": "TimedOut"},
            "status 'Error' needs a proxy configuration",
        ),
    ],
)
def test_instance_without_proxy_rules(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_unconfigured_instance(**changes)
    assert fragment in caught.value.message


def test_instance_same_proxy_configuration() -> None:
    instance = make_instance(tls_fingerprint="ab" * 32)
    assert instance.same_proxy_configuration(dataclasses.replace(instance, name="renamed"))
    assert instance.same_proxy_configuration(
        dataclasses.replace(instance, proxy_secret=Secret(PROXY_SECRET))
    )
    assert instance.same_proxy_configuration(
        dataclasses.replace(instance, status="Error", error_reason="TimedOut")
    )
    changes: list[dict[str, Any]] = [
        {"proxy_secret": Secret(PROXY_SECRET[:-1] + "g")},
        {"proxy_endpoint": "https://xks.example.com:8443"},
        {"proxy_uri_path": "/kms/xks/v1"},
        {"proxy_access_key_id": "MUBSXM6K3KMXHN6RRCXI7TWQH5"},
        {"tls_fingerprint": None},
        {"connectivity": "vpc", "vpc_endpoint_service": "epsrv-1"},
    ]
    for change in changes:
        assert not instance.same_proxy_configuration(dataclasses.replace(instance, **change))
    assert not instance.same_proxy_configuration(make_unconfigured_instance())
    assert make_unconfigured_instance().same_proxy_configuration(
        make_unconfigured_instance(name="other")
    )


def test_instance_health_check_time_in_utc() -> None:
    checked = NOW.astimezone(timezone(timedelta(hours=-5)))
    instance = make_instance(status="Connected", last_health_check_at=checked)
    assert instance.last_health_check_at == NOW
    assert instance.last_health_check_at is not None
    assert instance.last_health_check_at.tzinfo is UTC


# --- Key and KeyVersion -------------------------------------------------------------


def test_key_defaults() -> None:
    key = make_key()
    assert key.state is KeyState.ENABLED
    assert key.key_spec is KeySpec.ALIYUN_AES_256
    assert key.key_usage is KeyUsage.ENCRYPT_DECRYPT
    assert key.origin is KeyOrigin.EXTERNAL
    assert key.protection_level is ProtectionLevel.HSM
    assert key.description == ""
    assert key.deletion_protection is False
    assert key.delete_date is None
    assert key.arn == "acs:kms:cn-hangzhou:1234567890123456:key/key-hzz62f1cb66fa42qo1234"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key_id", "key-ABC"),
        ("key_id", "kst-abc"),
        ("key_id", "key-" + "a" * 125),
        ("key_id", "5c1e3a0e-9a53-4d8f-8c0e-6d2a9b1f7e21"),
        ("instance_id", "key-abc"),
        ("external_key_id", ""),
        ("external_key_id", "has space"),
        ("external_key_id", "x" * 129),
        ("description", "d" * (MAX_DESCRIPTION_LENGTH + 1)),
        ("state", "PendingImport"),
        ("key_spec", "RSA_2048"),
        ("key_usage", "SIGN/VERIFY"),
        ("origin", "AWS_KMS"),
        ("protection_level", "CLOUD"),
        ("creator", ""),
        ("primary_key_version_id", "5C1E3A0E-9A53-4D8F-8C0E-6D2A9B1F7E21"),
        ("primary_key_version_id", "not-a-uuid"),
        ("policy", "not json"),
        ("policy", "[]"),
    ],
)
def test_key_field_invalid(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        make_key(**{field: value})
    assert field in caught.value.message


def test_key_longest_id_fits_ciphertext_rules() -> None:
    key_id = "key-" + "z" * 124
    assert len(key_id) == ciphertext.MAX_KEY_ID_LENGTH
    key = make_key(key_id=key_id)
    blob = ciphertext.CiphertextBlob(
        key_id=key.key_id,
        key_version_id=key.primary_key_version_id,
        iv=bytes(12),
        tag=bytes(16),
        ciphertext=b"x",
    )
    assert ciphertext.decode_blob(ciphertext.encode_blob(blob)) == blob
    assert ciphertext.proxy_aad(key.arn, key.primary_key_version_id, {})


def test_key_description_limit() -> None:
    assert len(make_key(description="d" * MAX_DESCRIPTION_LENGTH).description) == 8192
    assert make_key(description="multi\nline ü").description == "multi\nline ü"
    with pytest.raises(ValidationError, match="NUL"):
        make_key(description="a\x00b")


def test_key_policy_limit_in_bytes() -> None:
    padding = MAX_POLICY_BYTES - len('{"a": ""}')
    assert make_key(policy='{"a": "' + "x" * padding + '"}')
    # Two bytes per character in UTF-8: half as many characters reach the limit.
    with pytest.raises(ValidationError, match="bytes in UTF-8"):
        make_key(policy='{"a": "' + "é" * (padding // 2 + 1) + '"}')


def test_key_pending_deletion_needs_delete_date() -> None:
    deleting = make_key(state="PendingDeletion", delete_date=NOW + timedelta(days=7))
    assert deleting.state is KeyState.PENDING_DELETION
    with pytest.raises(ValidationError, match="delete_date is missing"):
        make_key(state="PendingDeletion")
    with pytest.raises(ValidationError, match="only 'PendingDeletion'"):
        make_key(state="Disabled", delete_date=NOW)


def test_key_deletion_protection_rules() -> None:
    protected = make_key(deletion_protection=True, deletion_protection_description="prod")
    assert protected.deletion_protection_description == "prod"
    with pytest.raises(ValidationError, match="turn deletion protection off first"):
        make_key(
            deletion_protection=True, state="PendingDeletion", delete_date=NOW + timedelta(days=7)
        )
    with pytest.raises(ValidationError, match="only when turning protection on"):
        make_key(deletion_protection_description="orphan")
    with pytest.raises(TypeError, match="deletion_protection must be a bool"):
        make_key(deletion_protection=1)


def test_key_replace_revalidates() -> None:
    key = make_key()
    with pytest.raises(ValidationError, match="delete_date is missing"):
        dataclasses.replace(key, state=KeyState.PENDING_DELETION)


def test_key_version_valid_and_invalid() -> None:
    version = KeyVersion(
        key_id="key-abc", key_version_id="5c1e3a0e-9a53-4d8f-8c0e-6d2a9b1f7e21", created_at=NOW
    )
    assert version.key_id == "key-abc"
    with pytest.raises(ValidationError, match="key_version_id"):
        KeyVersion(key_id="key-abc", key_version_id="v1", created_at=NOW)


# --- Listing ----------------------------------------------------------------------


def test_key_filter_coerces_strings() -> None:
    filters = KeyFilter.from_strings(
        states=["Enabled", KeyState.DISABLED],
        specs=["Aliyun_AES_256"],
        usages=["ENCRYPT/DECRYPT"],
        protection_levels=["HSM"],
        instance_ids=["kst-abc"],
    )
    assert filters.states == frozenset({KeyState.ENABLED, KeyState.DISABLED})
    assert filters.specs == frozenset({KeySpec.ALIYUN_AES_256})
    assert filters.usages == frozenset({KeyUsage.ENCRYPT_DECRYPT})
    assert filters.protection_levels == frozenset({ProtectionLevel.HSM})
    assert filters.instance_ids == frozenset({"kst-abc"})
    assert KeyFilter().states == frozenset()


def test_key_filter_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="states"):
        KeyFilter.from_strings(states=["Enabled", "Gone"])
    with pytest.raises(ValidationError, match="instance_ids"):
        KeyFilter.from_strings(instance_ids=["key-abc"])
    with pytest.raises(TypeError, match="not a single str"):
        KeyFilter(states="Enabled")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a single str"):
        KeyFilter(instance_ids="kst-abc")  # type: ignore[arg-type]


def test_page_request_bounds() -> None:
    assert PageRequest().offset == 0
    assert PageRequest(number=3, size=20).offset == 40
    assert PageRequest(size=MAX_PAGE_SIZE).size == 100
    for number in (0, -1, True, 1.5):
        with pytest.raises(ValidationError, match="page number"):
            PageRequest(number=number)  # type: ignore[arg-type]
    for size in (0, MAX_PAGE_SIZE + 1, False):
        with pytest.raises(ValidationError, match="page size"):
            PageRequest(size=size)


def test_page_holds_items() -> None:
    page = Page(items=(1, 2), number=1, size=2, total_count=5)
    assert page.items == (1, 2)
    assert page.total_count == 5


# --- IDs --------------------------------------------------------------------------


def test_generated_ids_have_documented_shapes() -> None:
    assert re.fullmatch(r"key-[a-z0-9]{21}", new_key_id())
    assert re.fullmatch(r"kst-[a-z0-9]{21}", new_instance_id())
    version_id = new_key_version_id()
    assert uuid.UUID(version_id).version == 4
    assert str(uuid.UUID(version_id)) == version_id
    assert re.fullmatch(r"LTAI[A-Za-z0-9]{20}", new_access_key_id())
    assert re.fullmatch(r"[A-Za-z0-9]{30}", new_access_key_secret().reveal())
    assert re.fullmatch(r"[1-9][0-9]{15}", new_account_id())


def test_generated_ids_are_deterministic_with_injected_randomness() -> None:
    for generate in (new_key_id, new_instance_id, new_key_version_id, new_access_key_id):
        assert generate(seeded(7)) == generate(seeded(7))
        assert generate(seeded(7)) != generate(seeded(8))
    assert new_account_id(seeded(1)) == new_account_id(seeded(1))
    assert new_access_key_secret(seeded(1)) == new_access_key_secret(seeded(1))


def test_generated_ids_pass_record_checks() -> None:
    key_id = new_key_id()
    version_id = new_key_version_id()
    instance_id = new_instance_id()
    account_id = new_account_id()
    key = make_key(
        key_id=key_id,
        primary_key_version_id=version_id,
        instance_id=instance_id,
        account_id=account_id,
    )
    assert key.key_id == key_id
    assert make_instance(instance_id=instance_id, account_id=account_id)
    assert make_access_key(access_key_id=new_access_key_id(), secret=new_access_key_secret())


def test_random_string_drops_biased_bytes() -> None:
    # 252 is the largest multiple of 36 below 256, so bytes 252 to 255 are
    # dropped, and the generator requests as many bytes again as it dropped.
    chunks = [bytes([252, 253, 254, 255, *range(17)]), bytes(range(17, 21))]
    requests: list[int] = []

    def random_bytes(count: int) -> bytes:
        requests.append(count)
        return chunks[len(requests) - 1]

    assert new_key_id(random_bytes) == "key-abcdefghijklmnopqrstu"
    assert requests == [21, 4]


@given(st.binary(min_size=64, max_size=64))
def test_key_id_from_any_random_bytes(data: bytes) -> None:
    source = random.Random(data)
    key_id = new_key_id(source.randbytes)
    assert re.fullmatch(r"key-[a-z0-9]{21}", key_id)


# --- ARNs -------------------------------------------------------------------------


def test_key_and_instance_arns() -> None:
    assert key_arn("cn-hangzhou", ACCOUNT_ID, "key-abc") == (
        "acs:kms:cn-hangzhou:1234567890123456:key/key-abc"
    )
    assert instance_arn("cn-hangzhou", ACCOUNT_ID, "kst-abc") == (
        "acs:kms:cn-hangzhou:1234567890123456:keystore/kst-abc"
    )
    with pytest.raises(ValidationError, match="key_id"):
        key_arn("cn-hangzhou", ACCOUNT_ID, "alias/abc")
    with pytest.raises(ValidationError, match="region"):
        instance_arn("cn:hangzhou", ACCOUNT_ID, "kst-abc")


def test_parse_key_arn_round_trip() -> None:
    arn = "acs:kms:cn-shanghai:123456789012:key/key-xyz0"
    parsed = parse_key_arn(arn)
    assert parsed == KeyArn("cn-shanghai", "123456789012", "key-xyz0")
    assert str(parsed) == arn


@pytest.mark.parametrize(
    "arn",
    [
        "key-xyz0",
        "acs:kms:cn-shanghai:123456789012:alias/app",
        "acs:kms:cn-shanghai:123456789012:keystore/kst-abc",
        "acs:kms:cn-shanghai:12345:key/key-xyz0",
        "acs:kms::123456789012:key/key-xyz0",
        "acs:kms:cn-shanghai:123456789012:key/key-UPPER",
        "acs:ram::123456789012:key/key-xyz0",
    ],
)
def test_parse_key_arn_invalid(arn: str) -> None:
    with pytest.raises(ValidationError):
        parse_key_arn(arn)


# --- Module surface -----------------------------------------------------------------


def test_exports_exist() -> None:
    for name in domain.__all__:
        assert hasattr(domain, name), name
    assert sorted(domain.__all__) == sorted(set(domain.__all__))
