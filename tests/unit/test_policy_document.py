"""hyok.kms.domain policy documents: parsing, validation, conditions and wildcards."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyok.common.errors import ValidationError
from hyok.kms.domain._wildcards import wildcard_match
from hyok.kms.domain.policy_conditions import (
    Condition,
    ConditionContext,
    ConditionOperator,
    parse_conditions,
)
from hyok.kms.domain.policy_document import (
    MAX_IDENTITY_POLICY_LENGTH,
    MAX_KEY_POLICY_BYTES,
    Effect,
    parse_policy,
)
from hyok.kms.domain.policy_errors import PolicyDocumentError, PolicyKind
from hyok.kms.domain.policy_principals import (
    CallerKind,
    PolicyPrincipal,
    PrincipalKind,
    RamIdentity,
    parse_principal,
)

OWNER = "123456789012"
OTHER = "210987654321"
NOW = datetime(2026, 5, 20, 6, 34, 21, tzinfo=UTC)


def key_statement(**overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"RAM": [f"acs:ram::{OWNER}:*"]},
        "Action": ["kms:*"],
        "Resource": ["*"],
    }
    statement.update(overrides)
    return {name: value for name, value in statement.items() if value is not None}


def identity_statement(**overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}
    statement.update(overrides)
    return {name: value for name, value in statement.items() if value is not None}


def document(*statements: object, version: object = "1") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def rejected(text: str, kind: PolicyKind = PolicyKind.KEY) -> PolicyDocumentError:
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(text, kind)
    return info.value


# --- Valid documents --------------------------------------------------------------


def test_default_shape_parses() -> None:
    policy = parse_policy(document(key_statement(Sid="kms default key policy")), PolicyKind.KEY)
    (statement,) = policy.statements
    assert policy.kind is PolicyKind.KEY
    assert statement.effect is Effect.ALLOW
    assert statement.actions == ("kms:*",)
    assert statement.resources == ("*",)
    assert statement.principals == (PolicyPrincipal(OWNER, PrincipalKind.ANY_IDENTITY),)
    assert statement.sid == "kms default key policy"
    assert statement.conditions == ()


def test_strings_in_place_of_lists() -> None:
    text = document(
        key_statement(
            Principal={"RAM": f"acs:ram::{OWNER}:root"}, Action="kms:Encrypt", Resource="*"
        )
    )
    (statement,) = parse_policy(text, PolicyKind.KEY).statements
    assert statement.actions == ("kms:Encrypt",)
    assert statement.principals == (PolicyPrincipal(OWNER, PrincipalKind.ROOT),)


def test_policy_keeps_its_text() -> None:
    text = document(key_statement())
    assert parse_policy(text, PolicyKind.KEY).text == text


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (f"acs:ram::{OWNER}:root", PolicyPrincipal(OWNER, PrincipalKind.ROOT)),
        (f"acs:ram::{OWNER}:*", PolicyPrincipal(OWNER, PrincipalKind.ANY_IDENTITY)),
        (f"acs:ram::{OWNER}:user/alice", PolicyPrincipal(OWNER, PrincipalKind.USER, "alice")),
        (f"acs:ram::{OWNER}:user/a.b_c-1", PolicyPrincipal(OWNER, PrincipalKind.USER, "a.b_c-1")),
        (f"acs:ram::{OWNER}:role/app-1.x", PolicyPrincipal(OWNER, PrincipalKind.ROLE, "app-1.x")),
        ("acs:ram::1234567890123456:root", PolicyPrincipal("1234567890123456", PrincipalKind.ROOT)),
    ],
)
def test_principal_forms(arn: str, expected: PolicyPrincipal) -> None:
    parsed = parse_principal(arn, code="InvalidParameter", path="p")
    assert parsed == expected
    assert parsed.arn == arn


@pytest.mark.parametrize(
    "arn",
    [
        "acs:ram::12345:root",
        f"acs:ram:cn-hangzhou:{OWNER}:root",
        f"acs:ram::{OWNER}:user/",
        f"acs:ram::{OWNER}:user/a*",
        f"acs:ram::{OWNER}:role/under_score",
        f"acs:ram::{OWNER}:group/dev",
        f"acs:ram::{OWNER}:assumed-role/app/session",
        f"acs:ram::{OWNER}:user/" + "a" * 65,
        f"acs:ram::{OWNER}:Root",
        "*",
    ],
)
def test_invalid_principals(arn: str) -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_principal(arn, code="InvalidParameter", path="Statement[0].Principal.RAM[0]")
    assert info.value.path == "Statement[0].Principal.RAM[0]"
    assert "acs:ram::<account ID>:role/<role name>" in info.value.message


def test_identity_policy_with_arns() -> None:
    text = document(
        identity_statement(
            Action=["kms:Encrypt", "kms:Describe*", "ecs:*", "*"],
            Resource=[
                f"acs:kms:cn-hangzhou:{OWNER}:key/key-abc",
                "acs:kms:*:*:alias/app-*",
                "acs:ram::*:user/x",
                "*",
            ],
        ),
        identity_statement(Effect="Deny", Action=None, NotAction="kms:Decrypt"),
        identity_statement(Resource=None, NotResource="acs:kms:*:*:keystore/*"),
    )
    first, second, third = parse_policy(text, PolicyKind.IDENTITY).statements
    assert first.resources[1] == "acs:kms:*:*:alias/app-*"
    assert second.actions_negated
    assert second.effect is Effect.DENY
    assert third.resources_negated
    assert first.principals == ()


def test_identity_policy_length_limit() -> None:
    padding = " " * (MAX_IDENTITY_POLICY_LENGTH - len(document(identity_statement())))
    assert parse_policy(document(identity_statement()) + padding, PolicyKind.IDENTITY)
    error = rejected(document(identity_statement()) + padding + " ", PolicyKind.IDENTITY)
    assert error.code == "InvalidParameter.PolicyDocument.Length"
    assert str(MAX_IDENTITY_POLICY_LENGTH) in error.message


def test_key_policy_byte_limit() -> None:
    base = document(key_statement())
    exact = base + " " * (MAX_KEY_POLICY_BYTES - len(base))
    assert parse_policy(exact, PolicyKind.KEY)
    error = rejected(exact + " ")
    assert error.code == "InvalidParameter"
    assert error.path == ""
    assert "32768" in error.message


def test_key_policy_limit_counts_utf8_bytes() -> None:
    # 16,500 characters of "\u00e9" are 33,000 bytes in UTF-8.
    condition = {"StringEquals": {"kms:tag/env": "\u00e9" * 16_500}}
    text = json.dumps(
        {"Version": "1", "Statement": [key_statement(Condition=condition)]}, ensure_ascii=False
    )
    assert len(text) < MAX_KEY_POLICY_BYTES
    error = rejected(text)
    assert "bytes in UTF-8" in error.message


def test_error_is_a_validation_error() -> None:
    error = rejected("[]")
    assert isinstance(error, ValidationError)
    assert error.http_status == 400


# --- Invalid documents: the path and the fix --------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("not json", "", "not valid JSON"),
        ("[1]", "", "not an object"),
        ('{"Version":"1","Statement":[],"Version":"1"}', "", "repeats the JSON key 'Version'"),
        ('{"Version":"1","Statement":[{"Effect":NaN}]}', "", "NaN"),
        ("[" * 100_00 + "]" * 100_00, "", "nests JSON too deeply"),
        (document(key_statement(), version=1), "Version", 'the string "1"'),
        (document(key_statement(), version="2012-10-17"), "Version", 'the string "1"'),
        (json.dumps({"Statement": [key_statement()]}), "Version", "is missing"),
        (json.dumps({"Version": "1"}), "Statement", "is missing"),
        (json.dumps({"Version": "1", "Statement": []}), "Statement", "at least one"),
        (json.dumps({"Version": "1", "Statement": key_statement()}), "Statement", "JSON list"),
        (json.dumps({"Version": "1", "Statement": [key_statement()], "Id": "x"}), "Id", "Version"),
        (json.dumps({"version": "1", "Statement": [key_statement()]}), "version", "write Version"),
        (document("allow"), "Statement[0]", "not an object"),
        (document(key_statement(Effect=None)), "Statement[0].Effect", "is missing"),
        (document(key_statement(Effect="allow")), "Statement[0].Effect", "case-sensitive"),
        (document(key_statement(Action=None)), "Statement[0].Action", "is missing"),
        (document(key_statement(Action=[])), "Statement[0].Action", "non-empty list"),
        (document(key_statement(Action=["kms:*", 3])), "Statement[0].Action[1]", "write a string"),
        (document(key_statement(Action=["kms:*", "ecs:*"])), "Statement[0].Action[1]", "kms:"),
        (document(key_statement(Action="*")), "Statement[0].Action", "kms:<action>"),
        (document(key_statement(Action="kms:En crypt")), "Statement[0].Action", "KMS action"),
        (document(key_statement(Resource=None)), "Statement[0].Resource", "is missing"),
        (
            document(key_statement(Resource=[f"acs:kms:cn-hangzhou:{OWNER}:key/key-1"])),
            "Statement[0].Resource[0]",
            'write "*"',
        ),
        (document(key_statement(Principal=None)), "Statement[0].Principal", "is missing"),
        (
            document(key_statement(Principal={"RAM": []})),
            "Statement[0].Principal.RAM",
            "non-empty list",
        ),
        (
            document(key_statement(Principal=f"acs:ram::{OWNER}:*")),
            "Statement[0].Principal",
            "single element RAM",
        ),
        (
            document(key_statement(Principal={"RAM": "*", "Service": "x"})),
            "Statement[0].Principal",
            "single element RAM",
        ),
        (
            document(key_statement(), key_statement(Principal={"RAM": ["x", "y"]})),
            "Statement[1].Principal.RAM[0]",
            "is not a principal",
        ),
        (
            document(key_statement(NotAction="kms:Encrypt")),
            "Statement[0].NotAction",
            "key policies do not support NotAction",
        ),
        (
            document(key_statement(NotPrincipal={"RAM": "x"})),
            "Statement[0].NotPrincipal",
            "do not support NotPrincipal",
        ),
        (document(key_statement(effect="Allow")), "Statement[0].effect", "write Effect"),
        (document(key_statement(Extra=1)), "Statement[0].Extra", "use only Sid"),
        (document(key_statement(Sid="")), "Statement[0].Sid", "1 to 128"),
        (document(key_statement(Sid="a" * 129)), "Statement[0].Sid", "1 to 128"),
        (document(key_statement(Sid="semi;colon")), "Statement[0].Sid", "not a valid Sid"),
        (document(key_statement(Sid=7)), "Statement[0].Sid", "not a valid Sid"),
        (
            document(
                key_statement(Sid="same"), key_statement(Sid="other"), key_statement(Sid="same")
            ),
            "Statement[2].Sid",
            "Statement[0]",
        ),
        (
            document(key_statement(Action="kms:" + "a" * 1_100)),
            "Statement[0].Action",
            "maximum is 1024",
        ),
    ],
)
def test_key_policy_errors(text: str, path: str, fragment: str) -> None:
    error = rejected(text)
    assert error.code == "InvalidParameter"
    assert error.path == path
    assert fragment in error.message
    if path:
        assert error.message.startswith(path)


@pytest.mark.parametrize(
    ("statement", "path", "fragment"),
    [
        (identity_statement(Principal={"RAM": "x"}), "Statement[0].Principal", "have no Principal"),
        (
            identity_statement(NotAction="kms:Encrypt"),
            "Statement[0].NotAction",
            "both Action and NotAction",
        ),
        (
            identity_statement(Action=None),
            "Statement[0].Action",
            "add Action or NotAction",
        ),
        (
            identity_statement(Resource=None),
            "Statement[0].Resource",
            "add Resource or NotResource",
        ),
        (identity_statement(Action="Encrypt"), "Statement[0].Action", "<service>:<action>"),
        (identity_statement(Action="KMS:Encrypt"), "Statement[0].Action", "not an action"),
        (identity_statement(Resource="key/abc"), "Statement[0].Resource", "acs:<service>"),
        (identity_statement(Resource="acs:kms:cn:acct:key/x"), "Statement[0].Resource", "ARN"),
        (identity_statement(Resource="acs:kms:cn:123:"), "Statement[0].Resource", "ARN"),
        (identity_statement(Resource=["*", ""]), "Statement[0].Resource[1]", "not a resource"),
    ],
)
def test_identity_policy_errors(statement: dict[str, Any], path: str, fragment: str) -> None:
    error = rejected(document(statement), PolicyKind.IDENTITY)
    assert error.code == "MalformedPolicyDocument"
    assert error.path == path
    assert fragment in error.message


def test_error_quotes_value_in_printable_ascii() -> None:
    error = rejected(document(key_statement(Effect="Al\u0000low\n" + "x" * 200)))
    assert "\x00" not in error.message
    assert "\n" not in error.message
    assert "..." in error.message


def test_non_str_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_policy(b"{}", PolicyKind.KEY)  # type: ignore[arg-type]


# --- Conditions: parsing ----------------------------------------------------------


def parse_condition_block(block: object) -> tuple[Condition, ...]:
    return parse_conditions(block, "Statement[0].Condition", "InvalidParameter")


def test_condition_keys_are_canonical() -> None:
    conditions = parse_condition_block(
        {
            "IpAddress": {"acs:sourceip": ["192.0.2.0/24", "2001:db8::/32"]},
            "Bool": {"ACS:SecureTransport": "TRUE"},
            "DateLessThan": {"acs:CurrentTime": "2026-12-31T00:00:00+08:00"},
            "StringEquals": {"KMS:tag/Env": "prod"},
            "NumericLessThan": {"kms:tag/tier": 3},
        }
    )
    keys = [condition.key for condition in conditions]
    assert keys == [
        "acs:SourceIp",
        "acs:SecureTransport",
        "acs:CurrentTime",
        "kms:tag/Env",
        "kms:tag/tier",
    ]
    assert conditions[0].values == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert conditions[1].values == (True,)
    assert conditions[2].values == (datetime(2026, 12, 31, tzinfo=timezone(timedelta(hours=8))),)
    assert conditions[4].values == (Decimal(3),)


@pytest.mark.parametrize(
    ("block", "path", "fragment"),
    [
        ({}, "Statement[0].Condition", "non-empty JSON object"),
        ([], "Statement[0].Condition", "non-empty JSON object"),
        ({"StringEqual": {"kms:tag/a": "b"}}, "Statement[0].Condition.StringEqual", "use one of"),
        (
            {"stringequals": {"kms:tag/a": "b"}},
            "Statement[0].Condition.stringequals",
            "write StringEquals",
        ),
        ({"StringEquals": {}}, "Statement[0].Condition.StringEquals", "non-empty JSON object"),
        ({"StringEquals": "x"}, "Statement[0].Condition.StringEquals", "non-empty JSON object"),
        (
            {"StringEquals": {"acs:UserAgent": "x"}},
            "Statement[0].Condition.StringEquals.acs:UserAgent",
            "not a supported condition key",
        ),
        (
            {"StringEquals": {"kms:tag/": "x"}},
            "Statement[0].Condition.StringEquals.kms:tag/",
            "tag key",
        ),
        (
            {"StringEquals": {"kms:tag/a;b": "x"}},
            "Statement[0].Condition.StringEquals.kms:tag/a;b",
            "tag key",
        ),
        (
            {"StringEquals": {"kms:tag/a": "x", "KMS:TAG/a": "y"}},
            "Statement[0].Condition.StringEquals.KMS:TAG/a",
            "merge the values",
        ),
        (
            {"IpAddress": {"acs:CurrentTime": "10.0.0.0/8"}},
            "Statement[0].Condition.IpAddress.acs:CurrentTime",
            "use a date operator",
        ),
        (
            {"StringEquals": {"acs:SourceIp": "10.0.0.1"}},
            "Statement[0].Condition.StringEquals.acs:SourceIp",
            "IP address operator",
        ),
        (
            {"DateEquals": {"kms:tag/a": "2026-01-01T00:00:00Z"}},
            "Statement[0].Condition.DateEquals.kms:tag/a",
            "number or string",
        ),
        (
            {"StringEquals": {"kms:tag/a": []}},
            "Statement[0].Condition.StringEquals.kms:tag/a",
            "empty list",
        ),
        (
            {"StringEquals": {"kms:tag/a": ["x", 1]}},
            "Statement[0].Condition.StringEquals.kms:tag/a[1]",
            "give a JSON string",
        ),
        (
            {"Bool": {"acs:SecureTransport": [True, False]}},
            "Statement[0].Condition.Bool.acs:SecureTransport",
            "Bool takes one",
        ),
        (
            {"Bool": {"acs:SecureTransport": "yes"}},
            "Statement[0].Condition.Bool.acs:SecureTransport",
            "true or false",
        ),
        (
            {"NumericEquals": {"kms:tag/a": "ten"}},
            "Statement[0].Condition.NumericEquals.kms:tag/a",
            "finite number",
        ),
        (
            {"NumericEquals": {"kms:tag/a": True}},
            "Statement[0].Condition.NumericEquals.kms:tag/a",
            "finite number",
        ),
        (
            {"NumericEquals": {"kms:tag/a": "Infinity"}},
            "Statement[0].Condition.NumericEquals.kms:tag/a",
            "finite number",
        ),
        (
            {"DateLessThan": {"acs:CurrentTime": "2026-01-01T00:00:00"}},
            "Statement[0].Condition.DateLessThan.acs:CurrentTime",
            "UTC offset",
        ),
        (
            {"DateLessThan": {"acs:CurrentTime": "2026-01-01"}},
            "Statement[0].Condition.DateLessThan.acs:CurrentTime",
            "UTC offset",
        ),
        (
            {"DateLessThan": {"acs:CurrentTime": 1_700_000_000}},
            "Statement[0].Condition.DateLessThan.acs:CurrentTime",
            "ISO 8601",
        ),
        (
            {"IpAddress": {"acs:SourceIp": "10.0.0.0/33"}},
            "Statement[0].Condition.IpAddress.acs:SourceIp",
            "CIDR block",
        ),
        (
            {"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8", "example.com"]}},
            "Statement[0].Condition.NotIpAddress.acs:SourceIp[1]",
            "CIDR block",
        ),
        (
            {"StringLike": {"kms:tag/a": ["x"] * 257}},
            "Statement[0].Condition.StringLike.kms:tag/a",
            "maximum is 256",
        ),
    ],
)
def test_condition_errors(block: object, path: str, fragment: str) -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_condition_block(block)
    assert info.value.path == path
    assert fragment in info.value.message
    assert info.value.code == "InvalidParameter"


def test_condition_error_path_inside_document() -> None:
    text = document(
        key_statement(),
        key_statement(Condition={"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "nope"]}}),
    )
    error = rejected(text)
    assert error.path == "Statement[1].Condition.IpAddress.acs:SourceIp[1]"


# --- Conditions: matching ---------------------------------------------------------


def context(**overrides: Any) -> ConditionContext:
    values: dict[str, Any] = {
        "current_time": NOW,
        "secure_transport": True,
        "source_ip": ipaddress.ip_address("192.0.2.10"),
        "tags": {"env": "prod", "tier": "2", "Owner": "Team-A"},
    }
    values.update(overrides)
    return ConditionContext(**values)


def holds(operator: str, key: str, value: object, ctx: ConditionContext | None = None) -> bool:
    (condition,) = parse_condition_block({operator: {key: value}})
    return condition.holds(ctx or context())


@pytest.mark.parametrize(
    ("operator", "key", "value", "expected"),
    [
        ("StringEquals", "kms:tag/env", "prod", True),
        ("StringEquals", "kms:tag/env", ["dev", "prod"], True),
        ("StringEquals", "kms:tag/env", "PROD", False),
        ("StringNotEquals", "kms:tag/env", "prod", False),
        ("StringNotEquals", "kms:tag/env", ["dev", "test"], True),
        ("StringEqualsIgnoreCase", "kms:tag/env", "PROD", True),
        ("StringNotEqualsIgnoreCase", "kms:tag/env", "PROD", False),
        ("StringLike", "kms:tag/Owner", "Team-*", True),
        ("StringLike", "kms:tag/Owner", "team-*", False),
        ("StringLike", "kms:tag/Owner", "Team-?", True),
        ("StringNotLike", "kms:tag/Owner", "Team-*", False),
        ("NumericEquals", "kms:tag/tier", 2, True),
        ("NumericEquals", "kms:tag/tier", "2.0", True),
        ("NumericNotEquals", "kms:tag/tier", 2, False),
        ("NumericLessThan", "kms:tag/tier", 3, True),
        ("NumericLessThan", "kms:tag/tier", 2, False),
        ("NumericLessThanEquals", "kms:tag/tier", 2, True),
        ("NumericGreaterThan", "kms:tag/tier", 1.5, True),
        ("NumericGreaterThanEquals", "kms:tag/tier", 3, False),
        ("NumericEquals", "kms:tag/env", 2, False),
        ("NumericNotEquals", "kms:tag/env", 2, True),
        ("DateLessThan", "acs:CurrentTime", "2026-05-20T06:34:22Z", True),
        ("DateLessThan", "acs:CurrentTime", "2026-05-20T14:34:21+08:00", False),
        ("DateLessThanEquals", "acs:CurrentTime", "2026-05-20T14:34:21+08:00", True),
        ("DateEquals", "acs:CurrentTime", "2026-05-20T06:34:21+00:00", True),
        ("DateNotEquals", "acs:CurrentTime", "2026-05-20T06:34:21+00:00", False),
        ("DateGreaterThan", "acs:CurrentTime", "2026-05-20T06:34:20Z", True),
        ("DateGreaterThanEquals", "acs:CurrentTime", "2026-05-21T00:00:00Z", False),
        ("Bool", "acs:SecureTransport", "true", True),
        ("Bool", "acs:SecureTransport", False, False),
        ("IpAddress", "acs:SourceIp", "192.0.2.0/24", True),
        ("IpAddress", "acs:SourceIp", "192.0.2.10", True),
        ("IpAddress", "acs:SourceIp", ["10.0.0.0/8", "198.51.100.0/24"], False),
        ("IpAddress", "acs:SourceIp", "::/0", False),
        ("NotIpAddress", "acs:SourceIp", "192.0.2.0/24", False),
        ("NotIpAddress", "acs:SourceIp", "10.0.0.0/8", True),
    ],
)
def test_condition_operators(operator: str, key: str, value: object, expected: bool) -> None:
    assert holds(operator, key, value) is expected


@pytest.mark.parametrize(
    ("operator", "key", "value", "expected"),
    [
        ("StringEquals", "kms:tag/missing", "x", False),
        ("StringNotEquals", "kms:tag/missing", "x", True),
        ("StringNotLike", "kms:tag/missing", "*", True),
        ("IpAddress", "acs:SourceIp", "0.0.0.0/0", False),
        ("NotIpAddress", "acs:SourceIp", "0.0.0.0/0", True),
        ("StringEquals", "acs:SourceVpc", "vpc-1", False),
        ("StringNotEquals", "acs:SourceVpc", "vpc-1", True),
        ("Bool", "acs:MFAPresent", True, False),
        ("StringEquals", "kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT", False),
    ],
)
def test_missing_context_key(operator: str, key: str, value: object, expected: bool) -> None:
    ctx = context(source_ip=None)
    assert holds(operator, key, value, ctx) is expected


def test_tag_keys_are_case_sensitive() -> None:
    assert holds("StringEquals", "kms:tag/owner", "Team-A") is False
    assert holds("StringEquals", "KMS:TAG/Owner", "Team-A") is True


def test_condition_block_needs_every_entry() -> None:
    conditions = parse_condition_block(
        {
            "StringEquals": {"kms:tag/env": "prod", "kms:tag/tier": "2"},
            "Bool": {"acs:SecureTransport": "true"},
        }
    )
    assert all(c.holds(context()) for c in conditions)
    assert not all(c.holds(context(secure_transport=False)) for c in conditions)


def test_context_needs_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ConditionContext(current_time=datetime(2026, 1, 1), secure_transport=True)


def test_operator_negation() -> None:
    negated = {op for op in ConditionOperator if op.negated}
    assert {op.value for op in negated} == {
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
        "StringNotLike",
        "NumericNotEquals",
        "DateNotEquals",
        "NotIpAddress",
    }


# --- Identities -------------------------------------------------------------------


def test_identity_arns() -> None:
    assert RamIdentity(OWNER, CallerKind.ROOT).arn == f"acs:ram::{OWNER}:root"
    assert RamIdentity(OWNER, CallerKind.USER, "alice").arn == f"acs:ram::{OWNER}:user/alice"
    assert RamIdentity(OWNER, CallerKind.ROLE, "app").arn == f"acs:ram::{OWNER}:role/app"


def test_identity_name_rules() -> None:
    with pytest.raises(ValueError, match="no name"):
        RamIdentity(OWNER, CallerKind.ROOT, "x")
    with pytest.raises(ValueError, match="no name"):
        RamIdentity(OWNER, CallerKind.USER)


@pytest.mark.parametrize(
    ("principal", "caller", "expected"),
    [
        (f"acs:ram::{OWNER}:*", RamIdentity(OWNER, CallerKind.ROOT), True),
        (f"acs:ram::{OWNER}:*", RamIdentity(OWNER, CallerKind.ROLE, "r"), True),
        (f"acs:ram::{OWNER}:*", RamIdentity(OTHER, CallerKind.ROOT), False),
        (f"acs:ram::{OWNER}:root", RamIdentity(OWNER, CallerKind.ROOT), True),
        (f"acs:ram::{OWNER}:root", RamIdentity(OWNER, CallerKind.USER, "root"), False),
        (f"acs:ram::{OWNER}:user/alice", RamIdentity(OWNER, CallerKind.USER, "alice"), True),
        (f"acs:ram::{OWNER}:user/alice", RamIdentity(OWNER, CallerKind.USER, "Alice"), False),
        (f"acs:ram::{OWNER}:user/alice", RamIdentity(OWNER, CallerKind.ROLE, "alice"), False),
        (f"acs:ram::{OWNER}:user/alice", RamIdentity(OTHER, CallerKind.USER, "alice"), False),
        (f"acs:ram::{OWNER}:role/app", RamIdentity(OWNER, CallerKind.ROLE, "app"), True),
        (f"acs:ram::{OWNER}:role/app", RamIdentity(OWNER, CallerKind.USER, "app"), False),
    ],
)
def test_principal_names_caller(principal: str, caller: RamIdentity, expected: bool) -> None:
    parsed = parse_principal(principal, code="InvalidParameter", path="p")
    assert parsed.names(caller) is expected


# --- Wildcards --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("kms:*", "kms:Encrypt", True),
        ("kms:List*", "kms:ListKeys", True),
        ("kms:List*", "kms:DescribeKey", False),
        ("kms:?ncrypt", "kms:Encrypt", True),
        ("kms:?ncrypt", "kms:ncrypt", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
        ("", "", True),
        ("", "a", False),
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("**", "x", True),
        ("[a]", "a", False),
        ("[a]", "[a]", True),
    ],
)
def test_wildcard_cases(pattern: str, text: str, expected: bool) -> None:
    assert wildcard_match(pattern, text) is expected


def test_wildcard_ignore_case() -> None:
    assert wildcard_match("KMS:encrypt", "kms:Encrypt", ignore_case=True)
    assert not wildcard_match("KMS:encrypt", "kms:Encrypt")


def test_wildcard_hostile_pattern_is_fast() -> None:
    pattern = "*a" * 500 + "b"
    assert not wildcard_match(pattern, "a" * 1_000)


def _regex_of(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="ab", max_size=10))
def test_wildcard_agrees_with_regex(pattern: str, text: str) -> None:
    expected = _regex_of(pattern).fullmatch(text) is not None
    assert wildcard_match(pattern, text) is expected
