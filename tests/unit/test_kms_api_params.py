"""Tests of hyok.kms.api.params: each getter's accepted values and its errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from hyok.kms.api.errors import (
    DuplicateTagKeyError,
    InvalidParameterError,
    InvalidTagKeyError,
    InvalidTagValueError,
    MissingParameterError,
)
from hyok.kms.api.params import Params

Getter = Callable[[Params], Any]

ACCEPTED: list[tuple[str, dict[str, str], Getter, Any]] = [
    ("required_str", {"KeyId": "key-1"}, lambda p: p.required_str("KeyId", max_length=8), "key-1"),
    (
        "required_str empty allowed",
        {"Description": ""},
        lambda p: p.required_str("Description", max_length=8, min_length=0),
        "",
    ),
    (
        "required_str at maximum",
        {"KeyId": "k" * 8},
        lambda p: p.required_str("KeyId", max_length=8),
        "k" * 8,
    ),
    ("optional_str present", {"A": "x"}, lambda p: p.optional_str("A", max_length=4), "x"),
    ("optional_str absent", {}, lambda p: p.optional_str("A", max_length=4), None),
    (
        "optional_str default",
        {},
        lambda p: p.optional_str("A", max_length=4, default="d"),
        "d",
    ),
    ("int low", {"N": "1"}, lambda p: p.int_in_range("N", 1, 100), 1),
    ("int high", {"N": "100"}, lambda p: p.int_in_range("N", 1, 100), 100),
    ("int negative", {"N": "-5"}, lambda p: p.int_in_range("N", -10, 10), -5),
    ("int default", {}, lambda p: p.int_in_range("N", 1, 100, default=10), 10),
    ("boolean True", {"B": "True"}, lambda p: p.boolean("B"), True),
    ("boolean false", {"B": "false"}, lambda p: p.boolean("B"), False),
    ("boolean TRUE", {"B": "TRUE"}, lambda p: p.boolean("B"), True),
    ("boolean default", {}, lambda p: p.boolean("B", default=False), False),
    ("enum", {"S": "AES_128"}, lambda p: p.enum("S", ("AES_128", "AES_256")), "AES_128"),
    ("enum default", {}, lambda p: p.enum("S", ("AES_128",), default="AES_128"), "AES_128"),
    ("json_object", {"J": '{"a":"b"}'}, lambda p: p.json_object("J"), {"a": "b"}),
    ("json_object absent", {}, lambda p: p.json_object("J"), None),
    ("json_array", {"J": "[1,2]"}, lambda p: p.json_array("J"), [1, 2]),
    ("json_array absent", {}, lambda p: p.json_array("J"), None),
    (
        "repeat_list ordered",
        {"ResourceId.2": "b", "ResourceId.1": "a", "ResourceId.10": "j"}
        | {f"ResourceId.{i}": str(i) for i in range(3, 10)},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        ["a", "b", "3", "4", "5", "6", "7", "8", "9", "j"],
    ),
    ("repeat_list absent", {}, lambda p: p.repeat_list("ResourceId", max_items=50), []),
    (
        "repeat_list ignores others",
        {"ResourceIdX.1": "a", "ResourceId": "b"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        [],
    ),
    (
        "object_list",
        {"Tag.1.Key": "k1", "Tag.1.Value": "v1", "Tag.2.Key": "k2"},
        lambda p: p.object_list("Tag", ("Key", "Value"), max_items=20),
        [{"Key": "k1", "Value": "v1"}, {"Key": "k2"}],
    ),
    (
        "tag_list",
        {"Tag.1.Key": "env", "Tag.1.Value": "prod", "Tag.2.Key": "team"},
        lambda p: p.tag_list(),
        [("env", "prod"), ("team", "")],
    ),
    (
        "tags_json",
        {"Tags": '[{"TagKey":"env","TagValue":"a/b:c@d"}]'},
        lambda p: p.tags_json("Tags"),
        [("env", "a/b:c@d")],
    ),
    ("tags_json absent", {}, lambda p: p.tags_json("Tags"), None),
    ("tags_json empty", {"Tags": "[]"}, lambda p: p.tags_json("Tags"), []),
    (
        "base64",
        {"Plaintext": base64.b64encode(b"hello").decode()},
        lambda p: p.base64("Plaintext", max_bytes=6144),
        b"hello",
    ),
    (
        "base64 at maximum",
        {"Plaintext": base64.b64encode(b"x" * 6144).decode()},
        lambda p: p.base64("Plaintext", max_bytes=6144),
        b"x" * 6144,
    ),
]


@pytest.mark.parametrize(
    ("mapping", "getter", "expected"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
def test_getter_accepts(mapping: dict[str, str], getter: Getter, expected: Any) -> None:
    assert getter(Params(mapping)) == expected


MISSING: list[tuple[str, dict[str, str], Getter, str]] = [
    ("required_str", {}, lambda p: p.required_str("KeyId", max_length=8), "KeyId"),
    ("int", {}, lambda p: p.int_in_range("N", 1, 2), "N"),
    ("boolean", {}, lambda p: p.boolean("B"), "B"),
    ("enum", {}, lambda p: p.enum("S", ("A",)), "S"),
    ("base64", {}, lambda p: p.base64("Plaintext", max_bytes=8), "Plaintext"),
    (
        "repeat_list required",
        {},
        lambda p: p.repeat_list("ResourceId", max_items=5, required=True),
        "ResourceId.1",
    ),
    (
        "object_list required",
        {},
        lambda p: p.object_list("Tag", ("Key",), max_items=5, required=True),
        "Tag.1",
    ),
    (
        "object_list required field",
        {"Tag.1.Value": "v"},
        lambda p: p.object_list("Tag", ("Key", "Value"), max_items=5, required_fields=("Key",)),
        "Tag.1.Key",
    ),
]


@pytest.mark.parametrize(
    ("mapping", "getter", "parameter"),
    [case[1:] for case in MISSING],
    ids=[case[0] for case in MISSING],
)
def test_getter_missing(mapping: dict[str, str], getter: Getter, parameter: str) -> None:
    with pytest.raises(MissingParameterError) as info:
        getter(Params(mapping))
    assert info.value.code == "MissingParameter"
    assert info.value.http_status == 400
    assert info.value.parameter == parameter
    assert f"required parameter {parameter} is missing" in info.value.message


# (case id, parameters, getter, parameter named, text the message must contain)
INVALID: list[tuple[str, dict[str, str], Getter, str, str]] = [
    (
        "required_str too long",
        {"KeyId": "k" * 9},
        lambda p: p.required_str("KeyId", max_length=8),
        "KeyId",
        "9 characters, above the maximum of 8",
    ),
    (
        "required_str empty",
        {"KeyId": ""},
        lambda p: p.required_str("KeyId", max_length=8),
        "KeyId",
        "is empty",
    ),
    (
        "required_str too short",
        {"AliasName": "ab"},
        lambda p: p.required_str("AliasName", max_length=8, min_length=3),
        "AliasName",
        "'ab': it must have 3 to 8 characters",
    ),
    (
        "optional_str too long",
        {"A": "xxxxx"},
        lambda p: p.optional_str("A", max_length=4),
        "A",
        "above the maximum of 4",
    ),
    ("int zero", {"N": "0"}, lambda p: p.int_in_range("N", 1, 100), "N", "'0'"),
    ("int above", {"N": "101"}, lambda p: p.int_in_range("N", 1, 100), "N", "from 1 to 100"),
    ("int text", {"N": "ten"}, lambda p: p.int_in_range("N", 1, 100), "N", "'ten'"),
    ("int empty", {"N": ""}, lambda p: p.int_in_range("N", 1, 100), "N", "''"),
    ("int spaces", {"N": " 5"}, lambda p: p.int_in_range("N", 1, 100), "N", "' 5'"),
    ("int underscore", {"N": "1_0"}, lambda p: p.int_in_range("N", 1, 100), "N", "'1_0'"),
    ("int unicode digit", {"N": "\u0665"}, lambda p: p.int_in_range("N", 1, 9), "N", "from 1"),
    ("int huge", {"N": "9" * 200}, lambda p: p.int_in_range("N", 1, 9), "N", "..."),
    ("boolean yes", {"B": "yes"}, lambda p: p.boolean("B"), "B", "'yes': it must be true or false"),
    ("boolean 1", {"B": "1"}, lambda p: p.boolean("B", default=False), "B", "'1'"),
    ("boolean empty", {"B": ""}, lambda p: p.boolean("B", default=False), "B", "''"),
    (
        "enum wrong case",
        {"Origin": "external"},
        lambda p: p.enum("Origin", ("Aliyun_KMS", "EXTERNAL")),
        "Origin",
        "one of: Aliyun_KMS, EXTERNAL",
    ),
    ("json_object syntax", {"J": "{"}, lambda p: p.json_object("J"), "J", "not valid JSON"),
    ("json_object array", {"J": "[]"}, lambda p: p.json_object("J"), "J", "not a JSON array"),
    (
        "json_object duplicate member",
        {"J": '{"a":1,"a":2}'},
        lambda p: p.json_object("J"),
        "J",
        "'a' appears more than once",
    ),
    ("json_object NaN", {"J": '{"a":NaN}'}, lambda p: p.json_object("J"), "J", "NaN"),
    (
        "json_object too large",
        {"J": '{"a":"' + "x" * 40 + '"}'},
        lambda p: p.json_object("J", max_bytes=32),
        "J",
        "above the maximum of 32 bytes",
    ),
    (
        "json_object nested too deeply",
        {"J": "[" * 100_000},
        lambda p: p.json_array("J", max_bytes=200_000),
        "J",
        "not valid JSON",
    ),
    ("json_array object", {"J": "{}"}, lambda p: p.json_array("J"), "J", "not a JSON object"),
    ("json_array string", {"J": '"a"'}, lambda p: p.json_array("J"), "J", "not a JSON string"),
    (
        "repeat_list gap",
        {"ResourceId.1": "a", "ResourceId.3": "c"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.2",
        "no item ResourceId.2",
    ),
    (
        "repeat_list starts at 2",
        {"ResourceId.2": "b"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.1",
        "no gaps",
    ),
    (
        "repeat_list zero index",
        {"ResourceId.0": "a"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.0",
        "counts from 1",
    ),
    (
        "repeat_list leading zero",
        {"ResourceId.1": "a", "ResourceId.01": "b"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.01",
        "no leading zeros",
    ),
    (
        "repeat_list too many",
        {f"ResourceId.{i}": "x" for i in range(1, 52)},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.51",
        "maximum of 50 items",
    ),
    (
        "repeat_list huge index",
        {"ResourceId.99999999999": "a"},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.99999999999",
        "invalid index",
    ),
    (
        "repeat_list empty value",
        {"ResourceId.1": ""},
        lambda p: p.repeat_list("ResourceId", max_items=50),
        "ResourceId.1",
        "is empty",
    ),
    (
        "object_list unknown field",
        {"Tag.1.Kee": "k"},
        lambda p: p.object_list("Tag", ("Key", "Value"), max_items=20),
        "Tag.1.Kee",
        "fields of Tag.N are Key, Value",
    ),
    (
        "object_list gap",
        {"Tag.1.Key": "a", "Tag.3.Key": "c"},
        lambda p: p.object_list("Tag", ("Key",), max_items=20),
        "Tag.2",
        "no item Tag.2",
    ),
    (
        "object_list too many",
        {"Tag.21.Key": "k"},
        lambda p: p.object_list("Tag", ("Key",), max_items=20),
        "Tag.21.Key",
        "maximum of 20 items",
    ),
    (
        "tags_json not array",
        {"Tags": '{"TagKey":"a","TagValue":"b"}'},
        lambda p: p.tags_json("Tags"),
        "Tags",
        "must be a JSON array",
    ),
    (
        "tags_json wrong member",
        {"Tags": '[{"Key":"a","Value":"b"}]'},
        lambda p: p.tags_json("Tags"),
        "Tags",
        "Tag 1 of the parameter Tags is invalid",
    ),
    (
        "tags_json number value",
        {"Tags": '[{"TagKey":"a","TagValue":1}]'},
        lambda p: p.tags_json("Tags"),
        "Tags",
        "string values",
    ),
    (
        "tags_json too many",
        {"Tags": json.dumps([{"TagKey": f"k{i}", "TagValue": "v"} for i in range(21)])},
        lambda p: p.tags_json("Tags"),
        "Tags",
        "21 tags, above the maximum of 20",
    ),
    (
        "base64 invalid characters",
        {"Plaintext": "aGVsbG8*"},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "not valid Base64",
    ),
    (
        "base64 no padding",
        {"Plaintext": "aGVsbG8"},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "= padding",
    ),
    (
        "base64 url-safe",
        {"Plaintext": "-_-_"},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "standard",
    ),
    (
        "base64 non-canonical",
        {"Plaintext": "aGVsbG9="},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "not valid Base64",
    ),
    (
        "base64 non-ascii",
        {"Plaintext": "aGVsbG8\u00e9"},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "not valid Base64",
    ),
    (
        "base64 too large",
        {"Plaintext": base64.b64encode(b"x" * 6145).decode()},
        lambda p: p.base64("Plaintext", max_bytes=6144),
        "Plaintext",
        "more than the maximum of 6144 bytes",
    ),
    (
        "base64 empty",
        {"Plaintext": ""},
        lambda p: p.base64("Plaintext", max_bytes=64),
        "Plaintext",
        "below the minimum of 1",
    ),
]


@pytest.mark.parametrize(
    ("mapping", "getter", "parameter", "text"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_getter_rejects(mapping: dict[str, str], getter: Getter, parameter: str, text: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        getter(Params(mapping))
    assert info.value.code == "InvalidParameter"
    assert info.value.http_status == 400
    assert info.value.parameter == parameter
    assert parameter in info.value.message
    assert text in info.value.message


# (case id, tag key, tag value, error class, text the message must contain)
BAD_TAGS: list[tuple[str, str, str, type[InvalidParameterError], str]] = [
    ("empty key", "", "v", InvalidTagKeyError, "1 to 128 characters"),
    ("long key", "k" * 129, "v", InvalidTagKeyError, "1 to 128 characters"),
    ("key charset", "a#b", "v", InvalidTagKeyError, "'a#b'"),
    ("key aliyun", "aliyun-x", "v", InvalidTagKeyError, "reserved"),
    ("key acs", "ACS:x", "v", InvalidTagKeyError, "reserved"),
    ("long value", "k", "v" * 129, InvalidTagValueError, "0 to 128 characters"),
    ("value charset", "k", "v#", InvalidTagValueError, "'v#'"),
]


@pytest.mark.parametrize(
    ("key", "value", "error", "text"),
    [case[1:] for case in BAD_TAGS],
    ids=[case[0] for case in BAD_TAGS],
)
def test_tags_json_rejects_tag(
    key: str, value: str, error: type[InvalidParameterError], text: str
) -> None:
    params = Params({"Tags": json.dumps([{"TagKey": key, "TagValue": value}])})
    with pytest.raises(error) as info:
        params.tags_json("Tags")
    assert info.value.code == error.code
    assert info.value.parameter == "Tags"
    assert text in info.value.message


@pytest.mark.parametrize(
    ("key", "value", "error", "text"),
    [case[1:] for case in BAD_TAGS],
    ids=[case[0] for case in BAD_TAGS],
)
def test_tag_list_rejects_tag(
    key: str, value: str, error: type[InvalidParameterError], text: str
) -> None:
    params = Params({"Tag.1.Key": "ok", "Tag.2.Key": key, "Tag.2.Value": value})
    with pytest.raises(error) as info:
        params.tag_list()
    expected = "Tag.2.Key" if error is InvalidTagKeyError else "Tag.2.Value"
    assert info.value.parameter == expected
    assert expected in info.value.message
    assert text in info.value.message


def test_tag_codes() -> None:
    assert InvalidTagKeyError.code == "InvalidParameter.TagKey"
    assert InvalidTagValueError.code == "InvalidParameter.TagValue"


def test_tags_json_duplicate_key() -> None:
    params = Params({"Tags": '[{"TagKey":"a","TagValue":"1"},{"TagKey":"a","TagValue":"2"}]'})
    with pytest.raises(DuplicateTagKeyError) as info:
        params.tags_json("Tags")
    assert info.value.code == "Duplicate.TagKey"
    assert info.value.http_status == 400
    assert "'a' appears more than once in Tags" in info.value.message


def test_tag_list_duplicate_key() -> None:
    params = Params({"Tag.1.Key": "a", "Tag.2.Key": "a"})
    with pytest.raises(DuplicateTagKeyError):
        params.tag_list()


def test_shown_value_is_shortened_and_printable() -> None:
    params = Params({"N": "\x00\n" + "9" * 1000})
    with pytest.raises(InvalidParameterError) as info:
        params.int_in_range("N", 1, 2)
    message = info.value.message
    assert "\x00" not in message
    assert "\n" not in message
    assert "\\x00\\n" in message
    assert len(message) < 300


def test_base64_message_hides_value() -> None:
    secret_text = base64.b64encode(b"top secret plaintext").decode() + "!"
    with pytest.raises(InvalidParameterError) as info:
        Params({"Plaintext": secret_text}).base64("Plaintext", max_bytes=64)
    assert secret_text[:10] not in info.value.message


def test_json_message_hides_value() -> None:
    with pytest.raises(InvalidParameterError) as info:
        Params({"Policy": '{"Statement": hidden-word}'}).json_object("Policy")
    assert "hidden-word" not in info.value.message
    assert "line 1 column 15" in info.value.message


def test_params_repr_hides_values() -> None:
    params = Params({"Plaintext": "c2VjcmV0LXZhbHVl", "KeyId": "k"})
    assert repr(params) == "Params(names=['KeyId', 'Plaintext'])"
    assert "Plaintext" in params
    assert "Other" not in params


def test_unknown_parameters_ignored() -> None:
    params = Params({"Action": "Encrypt", "SignatureNonce": "abc", "KeyId": "k"})
    assert params.required_str("KeyId", max_length=10) == "k"
